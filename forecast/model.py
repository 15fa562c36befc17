"""The forecast model: gradient boosting and a ridge regression on the same features, blended.

Chosen by the walk-forward backtest on the open-dsm meters (`bench/forecast_backtest.py`): on the 1-minute
data the 0.7/0.3 blend with ridge scores 20.6 % CV(RMSE) from power alone, 19.8 % with the outdoor
temperature (persistence 44.7 %, last week 32.1 %);
gradient boosting alone, other blend weights, and more, fewer or regularised trees scored worse or
within noise. Trees handle the regimes (equipment on/off, weekends); the linear part extrapolates
levels the trees have not seen. The 90 % upper bound adds a margin calibrated by regime on
out-of-sample errors (`forecast.calibration`).

Where the site has an outdoor temperature, a second blend learns from the same features and the
temperature known at issue time; it forecasts where the temperature is known and the first blend
everywhere else, so a sensor or a weather source that drops out changes the method, never the
sense of the forecast.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from forecast.calendar import WorkCalendar
from forecast.calibration import UpperBound
from forecast.estimators import LinearModel, TreeEnsemble, fit_linear, fit_trees
from forecast.features import (
    DAY_S,
    HORIZON_S,
    Horizon,
    WindowMeans,
    feature_matrix,
    feature_names,
    target,
    temperature_known,
)
from forecast.model_file import ModelFileError, read_model, write_model
from forecast.series import Grid

#: 2: weekday-profile features; 3: estimators kept as arrays; 4: analog (now-plus-change) features;
#: 5: the upper bound calibrated by regime, and a work calendar; 6: the blends as objects (one with the
#: outdoor temperature), holidays worked, the bound's level (a version-5 file has neither blend)
MODEL_VERSION = 6
TREE_WEIGHT = 0.7
#: Issue times used for training, at most one per this many seconds (neighbours are near copies).
TRAIN_STRIDE_S = 300
#: The temperature blend is trained only on this many days of rows with a known temperature.
MIN_TEMPERATURE_DAYS = 5
#: Fits remembered, newest last: a backtest's nights of two weeks, each with and without temperature
RECENT_FITS_KEPT = 64
RECENT_FITS: dict[bytes, Blend] = {}


@dataclass(frozen=True)
class Blend:
    trees: TreeEnsemble
    linear: LinearModel

    @staticmethod
    def fit(x: np.ndarray, y: np.ndarray) -> Blend:
        """Fitted to the rows; the same rows again (a backtest's calibration stand-in is the model of
        CALIBRATION_DAYS - 1 nights before, to the bit) are answered from a small memory of the
        last fits, since the fit is deterministic."""
        key = hashlib.blake2b(x.tobytes() + y.tobytes() + repr(x.shape).encode(), digest_size=16).digest()
        blend = RECENT_FITS.pop(key, None) or Blend(fit_trees(x, y), fit_linear(x, y))
        RECENT_FITS[key] = blend
        while len(RECENT_FITS) > RECENT_FITS_KEPT:
            RECENT_FITS.pop(next(iter(RECENT_FITS)))
        return blend

    def predict(self, x: np.ndarray) -> np.ndarray:
        return TREE_WEIGHT * self.trees.predict(x) + (1 - TREE_WEIGHT) * self.linear.predict(x)


@dataclass
class ModelInfo:
    version: int
    trained_at: str
    rows: int
    interval_s: int
    train_seconds: float
    rmse_kw: float | None = None
    persistence_rmse_kw: float | None = None
    calibration_residuals: int = 0   # out-of-sample errors the upper bound was calibrated on
    features: tuple[str, ...] = ()
    temperature_rows: int = 0        # rows the temperature blend was trained on (0: none)
    #: how the temperature blend did against the power-only one out of sample: RMSE change in
    #: percent on the calibration days (negative is better); None when not compared
    temperature_gain_pct: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class PowerModel:
    def __init__(self, step_s: int, horizon_s: int = HORIZON_S, calendar: WorkCalendar | None = None) -> None:
        self.step_s, self.horizon_s = step_s, horizon_s
        self.calendar = calendar or WorkCalendar()
        #: no margin until calibrated (`forecast.training.train_validated` does)
        self.bound = UpperBound.flat(0.0)
        # set by `fit` (a model is used only once fitted, or loaded from a fitted one's file)
        self.blend: Blend
        self.with_temperature: Blend | None = None
        self.info: ModelInfo

    def fit(self, grid: Grid, issue: np.ndarray) -> PowerModel:
        """Train on issue slots whose target window has ended within the grid."""
        if grid.step_s != self.step_s:
            raise ValueError("grid interval differs from the model's")
        started = time.process_time()
        means = WindowMeans(grid.values)
        stride = max(1, TRAIN_STRIDE_S // grid.step_s)
        issue = np.asarray(issue)[::stride]
        y = target(grid, issue, means, self.horizon_s)
        x = feature_matrix(grid, issue, means, self.horizon_s, self.calendar)
        usable = np.isfinite(y) & np.isfinite(x[:, 0])
        if usable.sum() < 100:
            raise ValueError(f"only {int(usable.sum())} usable training rows; need at least 100")
        power_only = len(feature_names(grid.step_s))
        self.blend = Blend.fit(x[usable, :power_only], y[usable])
        warm = usable & temperature_known(grid, issue)
        days = warm.sum() * stride * grid.step_s / DAY_S
        self.with_temperature = Blend.fit(x[warm], y[warm]) if days >= MIN_TEMPERATURE_DAYS else None
        self.info = ModelInfo(MODEL_VERSION, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), int(usable.sum()),
                              grid.step_s, time.process_time() - started,
                              features=tuple(feature_names(grid.step_s, self.with_temperature is not None)),
                              temperature_rows=int(warm.sum()) if self.with_temperature is not None else 0)
        return self

    def predict(self, grid: Grid, issue: np.ndarray, means: WindowMeans | None = None,
                temperature: bool = True) -> np.ndarray:
        """Mean kW of the target window for each issue slot (NaN where there is no recent data):
        the temperature blend where the grid's temperature is known (unless `temperature` is False),
        the power-only blend elsewhere."""
        x = feature_matrix(grid, np.asarray(issue), means, self.horizon_s, self.calendar)
        out = np.full(len(x), np.nan)
        ok = np.isfinite(x[:, 0])
        if ok.any():
            out[ok] = self.blend.predict(x[ok, :len(feature_names(self.step_s))])
        warm = ok & self.uses_temperature(grid, issue)
        if temperature and self.with_temperature is not None and warm.any():
            out[warm] = self.with_temperature.predict(x[warm])
        return out

    def uses_temperature(self, grid: Grid, issue: np.ndarray) -> np.ndarray:
        """Issue slots this model forecasts with the outdoor temperature."""
        if self.with_temperature is None:
            return np.zeros(np.asarray(issue).size, dtype=bool)
        return temperature_known(grid, issue)

    def drop_temperature(self) -> None:
        """Forecast from power alone (the temperature blend did worse out of sample)."""
        self.with_temperature = None
        self.info.features = tuple(feature_names(self.step_s))
        self.info.temperature_rows = 0

    def regimes(self, grid: Grid, issue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Working day (bool) and hour of day of each issue slot's target interval."""
        local = grid.local_times_s(np.asarray(issue) + Horizon(self.step_s, self.horizon_s).ahead)
        return self.calendar.working_at(local), (local % DAY_S) // 3600

    def upper(self, grid: Grid, issue: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """The 90 % upper bound, kW, for forecasts `predicted` at the issue slots."""
        return predicted + self.bound.margin_kw(*self.regimes(grid, issue))

    def save(self, path: Path) -> None:
        """Write atomically, as data (`forecast.model_file`): a crash leaves the old file or the new one."""
        write_model(self, path)

    @staticmethod
    def load(path: Path) -> PowerModel:
        """Read back what `save` wrote; ModelFileError for any file that is not such a model now."""
        model = read_model(path, MODEL_VERSION)
        expected = tuple(feature_names(model.step_s, model.with_temperature is not None))
        if model.info.features != expected:
            differ = sorted(set(model.info.features) ^ set(expected)) or ["their order"]
            raise ModelFileError(f"{path} was trained on other features than this esus computes "
                                 f"(differing: {', '.join(differ[:5])})")
        return model
