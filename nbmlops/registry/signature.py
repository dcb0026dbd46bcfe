"""A model's signature: the input columns and dtypes, and the kind of output, inferred from the
data it was fitted on.

In a live kernel the data is the namespace value of the variables the estimator was fitted on
(found the way capture finds them: the ``.fit(...)`` calls of the kernel's cell history, parsed,
never executed), checked against the estimator's own ``feature_names_in_``/``n_features_in_``.
Outside a kernel the signature comes from lineage: the recorded schema of the data the fitting
cell's upstream read. Pure functions; nothing here touches the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["infer_signature", "fitted_on_from_sources", "signature_from_schema"]

_MAX_COLUMNS = 500
_MAX_CLASSES = 100


def fitted_on_from_sources(sources: Iterable[str], variable: str) -> list[str] | None:
    """The variables of the last ``variable.fit(...)`` call in ``sources`` (newest first)."""
    from ..capture.analysis import analyze_cell

    for source in sources:
        if not source or ".fit" not in source:
            continue
        try:
            fits = analyze_cell(source).fits
        except Exception:  # noqa: BLE001 - a cell that does not parse fitted nothing we can see
            continue
        for name, args in reversed(fits):
            if name == variable:
                return list(args)
    return None


def _inputs_of(X: Any) -> dict[str, Any] | None:
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items") and hasattr(X, "columns"):
        cols = [{"name": str(n), "dtype": str(t)} for n, t in list(dtypes.items())[:_MAX_COLUMNS]]
        out: dict[str, Any] = {"type": "dataframe", "columns": cols, "n_features": len(X.columns)}
        if len(X.columns) > _MAX_COLUMNS:
            out["columns_truncated"] = len(X.columns) - _MAX_COLUMNS
        return out
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is not None and dtype is not None:
        n = int(shape[1]) if len(shape) > 1 else 1
        return {"type": type(X).__name__, "dtype": str(dtype), "n_features": n, "columns": None}
    return None


def _output_of(model: Any, y: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    classes = getattr(model, "classes_", None)
    kind = getattr(model, "_estimator_type", None)
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            kind = "classifier"
        elif is_regressor(model):
            kind = "regressor"
    except Exception:  # noqa: BLE001 - no sklearn, or an odd object
        pass
    if classes is not None and kind in (None, "classifier"):
        kind = "classifier"
    if kind == "classifier":
        out["kind"] = "classification"
        if classes is not None:
            values = list(getattr(classes, "tolist", lambda: list(classes))())
            out["classes"] = [v if isinstance(v, (int, float, str, bool)) else str(v)
                              for v in values[:_MAX_CLASSES]]
    elif kind == "regressor":
        out["kind"] = "regression"
    elif kind == "clusterer":
        out["kind"] = "clustering"
    elif hasattr(model, "transform") and not hasattr(model, "predict"):
        out["kind"] = "transform"
    else:
        out["kind"] = "unknown"
    out["proba"] = hasattr(model, "predict_proba")
    if y is not None:
        dtype = getattr(y, "dtype", None)
        if dtype is not None:
            out["dtype"] = str(dtype)
        shape = getattr(y, "shape", None)
        if shape is not None and len(shape) > 1:
            out["n_outputs"] = int(shape[1])
        name = getattr(y, "name", None)
        if isinstance(name, str):
            out["name"] = name
    return out


def infer_signature(model: Any, X: Any = None, y: Any = None,
                    fitted_on: list[str] | None = None) -> dict[str, Any]:
    """Input columns/dtypes and output kind of a fitted ``model`` (``X``/``y``: the data it was
    fitted on, when known). Where ``X`` disagrees with what the model saw at fit time (it was
    reassigned since), the model's own ``feature_names_in_``/``n_features_in_`` win."""
    names = getattr(model, "feature_names_in_", None)
    n_in = getattr(model, "n_features_in_", None)
    inputs = _inputs_of(X) if X is not None else None
    source = "data" if inputs is not None else "model"
    if inputs is not None:
        cols = inputs.get("columns")
        if names is not None and cols is not None and [c["name"] for c in cols] != [str(n) for n in names]:
            inputs, source = None, "model"
        elif n_in is not None and inputs.get("n_features") != int(n_in):
            inputs, source = None, "model"
    if inputs is None:
        if names is not None:
            inputs = {"type": "dataframe", "columns": [{"name": str(n), "dtype": None} for n in names],
                      "n_features": len(names)}
        elif n_in is not None:
            inputs = {"type": "array", "columns": None, "n_features": int(n_in)}
    sig: dict[str, Any] = {"inputs": inputs, "output": _output_of(model, y), "source": source}
    if fitted_on:
        sig["fitted_on"] = list(fitted_on)
    return sig


def signature_from_schema(schema: Mapping[str, Any] | None, *, class_name: str | None,
                          fitted_on: list[str] | None) -> dict[str, Any]:
    """A signature from lineage only: the recorded schema of the data the model was fitted on."""
    inputs = None
    if schema and schema.get("columns"):
        cols = [{"name": c.get("name"), "dtype": c.get("dtype")} for c in schema["columns"]]
        inputs = {"type": "dataframe", "columns": cols, "n_features": len(cols)}
    kind = "unknown"
    if class_name:
        if class_name.endswith(("Classifier", "LogisticRegression", "SVC", "NB")):
            kind = "classification"
        elif class_name.endswith(("Regressor", "Regression", "SVR")) or class_name in ("Ridge", "Lasso"):
            kind = "regression"
    sig: dict[str, Any] = {"inputs": inputs, "output": {"kind": kind}, "source": "lineage"}
    if fitted_on:
        sig["fitted_on"] = list(fitted_on)
    return sig
