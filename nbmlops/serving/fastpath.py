"""Prediction of fitted scikit-learn forests without scikit-learn's per-tree dispatch.

``RandomForestClassifier.predict`` on one row spends most of its time around the trees, not in
them: each of the 100 trees goes through joblib's ``delayed`` wrapper, a configuration context,
warning filters and a fitted check (about 9 ms of CPU for one row, of which the trees' own
``tree_.predict`` is 0.6 ms, measured in ``benchmarks/serving.py``). A service predicting small
batches pays that on every call. :func:`fast_predictor` returns a predictor that does what
scikit-learn's forest code does (input as C-contiguous float32, the trees' leaf values summed
and divided by the number of trees, the class with the largest probability) in one loop, for
the exact estimator classes it knows, single output only, optionally behind the transforming
steps of a ``Pipeline``.

Nothing is trusted on faith: the predictor is compared with the model's own ``predict`` and
``predict_proba`` on probe rows spread over the trees' split thresholds when the version is
loaded, and any difference (or any error) leaves the model's own methods in use, with the
reason logged. ``nbmlops serve --no-fast-path`` turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["FastPredictor", "fast_predictor"]

_CLASSIFIERS = ("RandomForestClassifier", "ExtraTreesClassifier")
_REGRESSORS = ("RandomForestRegressor", "ExtraTreesRegressor")
_PROBES = 64


class FastPredictor:
    """``predict(X)`` / ``predict_proba(X)`` of a forest (after ``transform`` steps)."""

    def __init__(self, forest: Any, transform: Callable[[Any], Any] | None,
                 columns: list[str] | None) -> None:
        self.forest = forest
        self.trees = [e.tree_ for e in forest.estimators_]
        self.transform = transform
        self.columns = columns
        self.classifier = type(forest).__name__ in _CLASSIFIERS
        self.classes = getattr(forest, "classes_", None)
        self.n_classes = int(forest.n_classes_) if self.classifier else 0

    def _matrix(self, X: Any) -> np.ndarray:
        if self.transform is not None:
            X = self.transform(X)
        elif self.columns is not None and hasattr(X, "columns"):
            X = X[self.columns]  # the order the forest was fitted with
        return np.ascontiguousarray(np.asarray(X, dtype=np.float32))

    def matrix(self, cols: Any, names: list[str]) -> np.ndarray | None:
        """The float32 input matrix straight from checked request columns (no DataFrame), in
        the fitted column order; None when a transform needs a DataFrame or a value is not a
        number (then the caller builds the DataFrame as usual)."""
        if self.transform is not None:
            return None
        order = self.columns or names
        try:
            return np.ascontiguousarray(
                np.array([cols[name] for name in order], dtype=np.float32).T)
        except (KeyError, TypeError, ValueError):
            return None

    def predict_matrix(self, X: np.ndarray, *, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_both` of a matrix made by :meth:`matrix`."""
        return self._finish(self._sum(X), proba)

    def _sum(self, X: np.ndarray) -> np.ndarray:
        total = self.trees[0].predict(X)
        for tree in self.trees[1:]:
            total = total + tree.predict(X)
        return total / len(self.trees)

    def predict_proba(self, X: Any) -> np.ndarray:
        if not self.classifier:
            raise AttributeError("predict_proba: not a classifier")
        return self._sum(self._matrix(X))[:, : self.n_classes]

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_both(X, proba=False)[0]

    def predict_both(self, X: Any, *, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions, and class probabilities when ``proba`` (one pass over the trees)."""
        return self._finish(self._sum(self._matrix(X)), proba)

    def _finish(self, summed: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        # single output: a tree's predict is (rows, classes) of leaf fractions, or (rows, 1)
        if not self.classifier:
            return summed[:, 0], None
        p = summed[:, : self.n_classes]
        assert self.classes is not None
        return self.classes.take(np.argmax(p, axis=1), axis=0), (p if proba else None)


def _unwrap(model: Any) -> tuple[Any, Callable[[Any], Any] | None] | None:
    name = type(model).__name__
    module = type(model).__module__
    if module.startswith("sklearn.ensemble") and name in (*_CLASSIFIERS, *_REGRESSORS):
        return model, None
    if module.startswith("sklearn.pipeline") and name == "Pipeline" and len(model.steps) > 1:
        last = model.steps[-1][1]
        inner = _unwrap(last)
        if inner is not None and inner[1] is None:
            head = model[:-1]
            return last, head.transform
    return None


def _probes(forest: Any, n_features: int, rows: Any | None) -> np.ndarray:
    """Rows on both sides of the trees' thresholds, plus the reference rows given."""
    rng = np.random.default_rng(0)
    lo = np.full(n_features, np.inf)
    hi = np.full(n_features, -np.inf)
    for est in forest.estimators_:
        t = est.tree_
        used = t.feature >= 0
        for f, th in zip(t.feature[used], t.threshold[used], strict=True):
            lo[f] = min(lo[f], th)
            hi[f] = max(hi[f], th)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 1.0)
    span = np.maximum(hi - lo, 1e-6)
    return rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=(_PROBES, n_features))


def fast_predictor(model: Any, columns: list[str] | None = None) -> FastPredictor | None:
    """A checked fast predictor for ``model``, or ``None`` (not a supported forest, or it does
    not agree with the model's own methods on the probe rows: then the reason is logged)."""
    unwrapped = _unwrap(model)
    if unwrapped is None:
        return None
    forest, transform = unwrapped
    try:
        if getattr(forest, "n_outputs_", 1) != 1 or not hasattr(forest, "estimators_"):
            return None
        names = getattr(model, "feature_names_in_", None)
        names = [str(n) for n in names] if names is not None else None
        fast = FastPredictor(forest, transform, names)
        n_in = int(getattr(model, "n_features_in_", getattr(forest, "n_features_in_", 0)))
        if transform is not None or n_in <= 0:
            return None if n_in <= 0 else _checked(model, fast, None, n_in, names)
        return _checked(model, fast, forest, n_in, names)
    except Exception as exc:  # noqa: BLE001 - the model's own predict is always there
        log.info("fast path off for %s: %s", type(model).__name__, exc)
        return None


def _checked(model: Any, fast: FastPredictor, forest: Any | None, n_in: int,
             names: list[str] | None) -> FastPredictor | None:
    import pandas as pd

    if forest is not None:
        raw = _probes(forest, n_in, None)
    else:  # behind a transform the thresholds live in another space: spread-out values
        raw = np.random.default_rng(0).normal(0.0, 3.0, size=(_PROBES, n_in))
    X = pd.DataFrame(raw, columns=names) if names is not None else raw
    ours, ours_p = fast.predict_both(X, proba=fast.classifier)
    theirs = model.predict(X)
    if not np.array_equal(np.asarray(ours), np.asarray(theirs)):
        log.warning("fast path off for %s: predictions differ from the model's own",
                    type(model).__name__)
        return None
    if fast.classifier:
        theirs_p = model.predict_proba(X)
        if ours_p is None or not np.allclose(ours_p, theirs_p, rtol=0.0, atol=1e-12):
            log.warning("fast path off for %s: probabilities differ from the model's own",
                        type(model).__name__)
            return None
    return fast
