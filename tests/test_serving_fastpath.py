"""The forest fast path of `nbmlops serve` (nbmlops/serving/fastpath.py): the same predictions
and probabilities as scikit-learn's own methods, for the estimators it knows, and nothing used
on faith: a model it does not know, or one whose own methods disagree, keeps its own predict."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_diabetes, load_wine  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from nbmlops.serving.fastpath import fast_predictor  # noqa: E402


@pytest.fixture(scope="module")
def wine():  # type: ignore[no-untyped-def]
    return load_wine(return_X_y=True, as_frame=True)


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=30, random_state=0),
    lambda: ExtraTreesClassifier(n_estimators=30, max_depth=4, random_state=0),
    lambda: make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, random_state=0)),
], ids=["random-forest", "extra-trees", "pipeline"])
def test_classifiers_give_the_same_labels_and_probabilities(wine, make) -> None:  # type: ignore[no-untyped-def]
    X, y = wine
    model = make().fit(X, y)
    fast = fast_predictor(model, list(X.columns))
    assert fast is not None
    # columns in another order are put back in the fitted order, like scikit-learn does
    shuffled = X[list(reversed(X.columns))]
    labels, proba = fast.predict_both(shuffled if fast.transform is None else X, proba=True)
    assert np.array_equal(labels, model.predict(X))
    assert proba is not None and np.allclose(proba, model.predict_proba(X), rtol=0, atol=1e-12)
    assert np.array_equal(fast.predict(X.iloc[:1]), model.predict(X.iloc[:1]))
    # the service's path: request columns straight to a float32 matrix (no DataFrame)
    cols = {name: X[name].tolist() for name in reversed(X.columns)}
    matrix = fast.matrix(cols, list(X.columns))
    if fast.transform is not None:
        assert matrix is None  # a Pipeline's steps need the DataFrame
    else:
        assert matrix is not None
        m_labels, m_proba = fast.predict_matrix(matrix, proba=True)
        assert np.array_equal(m_labels, model.predict(X))
        assert np.allclose(m_proba, model.predict_proba(X), rtol=0, atol=1e-12)
        assert fast.matrix({"alcohol": ["x"]}, ["alcohol"]) is None


@pytest.mark.parametrize("cls", [RandomForestRegressor, ExtraTreesRegressor])
def test_regressors_give_the_same_values(cls) -> None:  # type: ignore[no-untyped-def]
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = cls(n_estimators=20, random_state=0).fit(X, y)
    fast = fast_predictor(model, list(X.columns))
    assert fast is not None
    assert np.allclose(fast.predict(X), model.predict(X), rtol=0, atol=1e-9)


def test_unknown_estimators_and_multi_output_keep_their_own_predict(wine) -> None:  # type: ignore[no-untyped-def]
    X, y = wine
    assert fast_predictor(GradientBoostingClassifier(n_estimators=5).fit(X, y)) is None

    class MyForest(RandomForestClassifier):  # a subclass may predict differently
        pass

    assert fast_predictor(MyForest(n_estimators=5, random_state=0).fit(X, y)) is None
    two = np.column_stack([y, y])
    assert fast_predictor(RandomForestClassifier(n_estimators=5).fit(X, two)) is None


def test_a_model_whose_own_predict_disagrees_is_not_sped_up(wine, caplog) -> None:  # type: ignore[no-untyped-def]
    X, y = wine
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    model.predict = lambda X: np.zeros(len(X), dtype=int)  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="nbmlops.serving.fastpath"):
        assert fast_predictor(model, list(X.columns)) is None
    assert "predictions differ from the model's own" in caplog.text
