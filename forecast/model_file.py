"""The power model's file: data, never code.

A model is saved as one numpy `.npz` archive (a zip of `.npy` arrays) and read back with
`allow_pickle=False`, so a file in a writable state directory cannot run anything as the service,
and an upgrade of scikit-learn (which only fits) cannot break a model already trained. Members:

- `meta`: a JSON text: `format` ("esus-power-model"), `format_version`, the model's `step_s`,
  `horizon_s`, calendar (`country`, `worked`), the bound's `residuals` and `level`, the `info`
  (`forecast.model.ModelInfo`, whose `version` is the model's), and each blend's scalars
  (`baseline_kw`, `depth`, `intercept_kw`);
- `bound.margins_kw`: the 90 % bound's margins, kW, by (working day, hour of day);
- for each blend, `power.` (always) and `temperature.` (when the model has one): the trees'
  `feature`, `threshold`, `missing_left`, `left`, `right`, `value`, `roots` (see
  `forecast.estimators.TreeEnsemble`) and the linear map's `fill`, `mean`, `scale`, `coef`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forecast.calendar import WorkCalendar
from forecast.calibration import UpperBound
from forecast.estimators import LinearModel, TreeEnsemble

if TYPE_CHECKING:
    from forecast.model import Blend, PowerModel

FORMAT, FORMAT_VERSION = "esus-power-model", 1
TREE_ARRAYS = ("feature", "threshold", "missing_left", "left", "right", "value", "roots")
LINEAR_ARRAYS = ("fill", "mean", "scale", "coef")


class ModelFileError(Exception):
    """A saved model cannot be used (missing, damaged, or from another version); `damaged` when
    the file itself is broken (it cannot be read back as a model), not merely old."""

    def __init__(self, message: str, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


def write_model(model: PowerModel, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    arrays: dict[str, np.ndarray] = {"bound.margins_kw": np.asarray(model.bound.margins_kw, dtype=float)}
    blends: dict[str, Any] = {}
    for name, blend in (("power", model.blend), ("temperature", model.with_temperature)):
        if blend is None:
            continue
        arrays |= {f"{name}.{a}": getattr(blend.trees, a) for a in TREE_ARRAYS}
        arrays |= {f"{name}.{a}": getattr(blend.linear, a) for a in LINEAR_ARRAYS}
        blends[name] = {"baseline_kw": blend.trees.baseline_kw, "depth": blend.trees.depth,
                        "intercept_kw": blend.linear.intercept_kw}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "step_s": model.step_s, "horizon_s": model.horizon_s,
            "calendar": {"country": model.calendar.country, "worked": list(model.calendar.worked)},
            "bound": {"residuals": model.bound.residuals, "level": model.bound.level},
            "info": asdict(model.info), "blends": blends}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)   # type: ignore[arg-type]  # the stub types one keyword (allow_pickle) for all
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def read_model(path: Path, model_version: int) -> PowerModel:
    """The model saved at `path`; ModelFileError (one line) for a file that is missing, not such a
    model, damaged, or of another version. Nothing in the file is ever executed."""
    from forecast.model import Blend, ModelInfo, PowerModel

    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ModelFileError(f"no model at {path}") from None
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise ModelFileError(f"{path} is not an esus model file (a numpy archive): {exc}", damaged=True) from None
        raise ModelFileError(f"{path} holds pickled objects, which esus never loads (they could run code): it is "
                             "not an esus model file", damaged=True) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path} is not an esus model file (a numpy archive): {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}", damaged=True) from None
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path} is a numpy archive but not an esus power model", damaged=True)
        info = ModelInfo(**{f.name: meta["info"][f.name] for f in fields(ModelInfo) if f.name in meta["info"]})
        if meta["format_version"] != FORMAT_VERSION or info.version != model_version:
            raise ModelFileError(f"{path} is not a version-{model_version} esus power model (format "
                                 f"{meta['format_version']}, model {info.version})")
        info.features = tuple(info.features)
        calendar = WorkCalendar(meta["calendar"]["country"], tuple(meta["calendar"]["worked"]))
        model = PowerModel(int(meta["step_s"]), int(meta["horizon_s"]), calendar)
        model.bound = UpperBound(arrays["bound.margins_kw"], int(meta["bound"]["residuals"]),
                                 float(meta["bound"]["level"]))
        model.blend = _blend(arrays, "power", meta["blends"]["power"], Blend)
        temperature = meta["blends"].get("temperature")
        model.with_temperature = None if temperature is None else _blend(arrays, "temperature", temperature, Blend)
        model.info = info
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:   # a member missing or of the wrong kind
        raise ModelFileError(f"{path} is damaged: {type(exc).__name__}: {exc}", damaged=True) from None
    return model


def _blend(arrays: dict[str, np.ndarray], name: str, scalars: dict[str, Any], kind: type[Blend]) -> Blend:
    tree = {a: arrays[f"{name}.{a}"] for a in TREE_ARRAYS}
    n = len(tree["feature"])
    if any(len(v) != n for a, v in tree.items() if a != "roots") or (tree["roots"] >= n).any() \
            or (tree["left"] >= n).any() or (tree["right"] >= n).any():
        raise ValueError(f"the {name} trees' tables do not agree")
    return kind(TreeEnsemble(**tree, baseline_kw=float(scalars["baseline_kw"]), depth=int(scalars["depth"])),
                LinearModel(**{a: arrays[f"{name}.{a}"] for a in LINEAR_ARRAYS},
                            intercept_kw=float(scalars["intercept_kw"])))
