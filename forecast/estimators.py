"""The two fitted estimators of the power model, kept as plain numpy arrays.

scikit-learn fits them (in the nightly training process); the service only predicts, and holding
the arrays instead of the scikit-learn objects keeps scikit-learn out of the service process:
about 26 MB less resident memory on a board that has little. The arrays are scikit-learn's own
fitted numbers, and the tests check that the predictions equal scikit-learn's.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: 60 trees at a learning rate of 0.15: the walk-forward backtests on the shipped meters score as
#: 200 at 0.05 did (hourly year 14.71 % CV(RMSE) both; 1-minute 19.65 % against 19.8 %, the bound's
#: coverage within 0.3 points) in a third of the time, each night on a Pi and a year's backtest
TREES = 60
LEARNING_RATE = 0.15


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted regression trees, every tree's nodes in one flat table.

    A leaf points to itself, so walking `depth` steps from each root ends on every row's leaf."""
    feature: np.ndarray       # int: the feature an inner node splits on
    threshold: np.ndarray     # float: go left when the value is <= threshold
    missing_left: np.ndarray  # bool: where a missing value (NaN) goes
    left: np.ndarray          # int: index of the left child in this table
    right: np.ndarray
    value: np.ndarray         # float: a leaf's contribution, kW
    roots: np.ndarray         # int: each tree's root
    baseline_kw: float
    depth: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """kW for each row of x (n_rows, n_features); all trees are walked together."""
        node = np.repeat(self.roots[None, :], len(x), axis=0)
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            value = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return self.baseline_kw + self.value[node].sum(axis=1)


@dataclass(frozen=True)
class LinearModel:
    """Median imputation, standard scaling and ridge coefficients in one affine map."""
    fill: np.ndarray   # each feature's training median, for missing values
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept_kw: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(x), self.fill, x)
        return ((filled - self.mean) / self.scale) @ self.coef + self.intercept_kw


#: the libraries whose thread pools the power model's fit uses (scikit-learn's trees: OpenMP)
FIT_LIBRARIES = ("sklearn.ensemble",)


@contextmanager
def one_core(libraries: Iterable[str] = FIT_LIBRARIES) -> Iterator[None]:
    """Fitting on one thread, as the service trains: on a small board BACnet keeps the other cores,
    and on a busy machine OpenMP's threads spin against other processes and run slower than one.
    threadpoolctl limits only the libraries loaded when the limit starts, and scikit-learn and SciPy
    are imported late (only a fit pays for them): `libraries` are imported first, or their
    threads would go unlimited."""
    from threadpoolctl import threadpool_limits

    for library in libraries:
        importlib.import_module(library)
    with threadpool_limits(1):
        yield


def fit_trees(x: np.ndarray, y: np.ndarray) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingRegressor  # here: only training pays for the import

    # a feature no row has yet (the 4-week profile in a history of days) is a constant to the trees:
    # they never split on it (scikit-learn refuses a column that is all NaN)
    x = np.where(np.isnan(x).all(axis=0), 0.0, x)
    fitted = HistGradientBoostingRegressor(max_iter=TREES, learning_rate=LEARNING_RATE, early_stopping=False,
                                           random_state=0).fit(x, y)
    tables = [predictor.nodes for (predictor,) in fitted._predictors]  # one tree per iteration (regression)
    offsets = np.cumsum([0] + [len(t) for t in tables[:-1]])
    nodes = np.concatenate(tables)
    index = np.arange(len(nodes))
    children = {side: np.concatenate([t[side].astype(np.intp) + o for t, o in zip(tables, offsets, strict=True)])
                for side in ("left", "right")}
    leaf = nodes["is_leaf"].astype(bool)
    if nodes["is_categorical"].any():
        raise ValueError("categorical splits are not supported")  # esus's features are all numeric
    return TreeEnsemble(
        feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp),
        threshold=nodes["num_threshold"].astype(float),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=np.where(leaf, index, children["left"]), right=np.where(leaf, index, children["right"]),
        value=np.where(leaf, nodes["value"], 0.0), roots=offsets.astype(np.intp),
        baseline_kw=float(np.ravel(fitted._baseline_prediction)[0]), depth=int(nodes["depth"].max()))


def fit_linear(x: np.ndarray, y: np.ndarray, alpha: float = 10.0) -> LinearModel:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
    filled = imputer.transform(x)
    scaler = StandardScaler().fit(filled)
    ridge = Ridge(alpha=alpha).fit(scaler.transform(filled), y)
    return LinearModel(fill=imputer.statistics_.astype(float), mean=scaler.mean_, scale=scaler.scale_,
                       coef=ridge.coef_.astype(float), intercept_kw=float(ridge.intercept_))
