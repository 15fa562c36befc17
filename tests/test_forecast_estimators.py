"""The power model's estimators, kept as arrays, predict what scikit-learn's fitted objects predict."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from forecast.estimators import LEARNING_RATE, TREES, fit_linear, fit_trees


def _data(seed: int, rows: int, missing: float, empty_feature: bool = False
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 4, (rows, 6))
    y = 2 * x[:, 0] + np.where(x[:, 1] > 10, 5.0, 0.0) + np.sin(x[:, 2]) + rng.normal(0, 0.5, rows)
    x[rng.random(x.shape) < missing] = np.nan
    if empty_feature:
        x[:, 5] = np.nan  # scikit-learn's trees refuse such a column; the imputer keeps it (as zeros)
    probe = rng.normal(10, 6, (300, 6))
    probe[rng.random(probe.shape) < 0.2] = np.nan           # NaNs also where training had none
    return x, y, probe


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(120, 600), missing=st.sampled_from([0.0, 0.05, 0.4]))
def test_the_trees_as_arrays_predict_what_scikit_learn_predicts(seed: int, rows: int, missing: float) -> None:
    x, y, probe = _data(seed, rows, missing)
    reference = HistGradientBoostingRegressor(max_iter=TREES, learning_rate=LEARNING_RATE, early_stopping=False,
                                              random_state=0).fit(x, y)
    np.testing.assert_allclose(fit_trees(x, y).predict(probe), reference.predict(probe), rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(120, 600), missing=st.sampled_from([0.0, 0.05, 0.4]))
def test_the_linear_model_as_arrays_predicts_what_scikit_learn_predicts(seed: int, rows: int,
                                                                        missing: float) -> None:
    x, y, probe = _data(seed, rows, missing, empty_feature=missing > 0.3)
    reference = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                              Ridge(alpha=10.0)).fit(x, y)
    np.testing.assert_allclose(fit_linear(x, y).predict(probe), reference.predict(probe), rtol=1e-9, atol=1e-9)


def test_the_service_forecasts_without_importing_scikit_learn(tmp_path) -> None:
    """The saved model loads and forecasts in a process that never imports scikit-learn (memory)."""
    from forecast.model import PowerModel
    from tests.synthetic import office_power

    grid = office_power(days=10, step_s=300)
    v = grid.values
    model = PowerModel(300).fit(grid, np.arange(len(v) - 300))
    model.save(tmp_path / "model.npz")
    expected = model.predict(grid, np.array([len(v) - 1]))[0]
    np.save(tmp_path / "values.npy", v)
    code = (
        "import sys, numpy as np\n"
        "import esus.service\n"
        "from forecast.model import PowerModel\n"
        "from forecast.series import Grid\n"
        f"model = PowerModel.load(__import__('pathlib').Path({str(tmp_path / 'model.npz')!r}))\n"
        f"v = np.load({str(tmp_path / 'values.npy')!r})\n"
        f"print(model.predict(Grid({grid.t0_s}, 300, v), np.array([len(v) - 1]))[0])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert np.isfinite(expected) and float(out[0]) == expected
    assert out[1] == "[]"


def test_a_fit_of_the_same_rows_is_remembered_and_the_memory_is_bounded(monkeypatch) -> None:
    """A backtest's calibration stand-in is, to the bit, the model of 13 nights before: the same rows
    are answered from memory (the same fit, so the figures cannot change), other rows are fitted."""
    from forecast import model as fm

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=300)
    monkeypatch.setattr(fm, "RECENT_FITS", {})
    monkeypatch.setattr(fm, "RECENT_FITS_KEPT", 2)
    first = fm.Blend.fit(x, y)
    assert fm.Blend.fit(x.copy(), y.copy()) is first
    other = fm.Blend.fit(x, y + 1.0)
    assert other is not first and fm.Blend.fit(x[:, :3], y) is not first
    assert len(fm.RECENT_FITS) == 2 and fm.Blend.fit(x, y) is not first   # the oldest was let go


ONE_CORE = """
from forecast.estimators import FIT_LIBRARIES, one_core
from esus.parts.room_learning import ROOM_FIT_LIBRARIES
import sys
assert "sklearn" not in sys.modules   # imported late, by the first fit, as in training
with one_core(FIT_LIBRARIES + ROOM_FIT_LIBRARIES):
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    from threadpoolctl import threadpool_info
    print(_openmp_effective_n_threads(), sorted({pool["num_threads"] for pool in threadpool_info()}))
"""


def test_a_fit_runs_on_one_thread_even_when_its_libraries_load_late() -> None:
    """threadpoolctl limits only what is loaded when it starts: scikit-learn's OpenMP, imported by
    the first fit, ran on every core until the fit's libraries were loaded before the limit."""
    out = subprocess.run([sys.executable, "-c", ONE_CORE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "[1]"], out
