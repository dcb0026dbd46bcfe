"""Variables passed between the steps of a tagged-notebook pipeline, as files.

A step that defines a variable a later step uses ends with ``save_variable(NAME, dir, "NAME")``;
the later step starts with ``NAME = load_variable(path)``. The format follows the value:

* a pandas ``DataFrame`` -> ``NAME.parquet`` (when pyarrow is importable and the frame can be
  written: string column names, no mixed object columns), else pickle;
* a numpy array or an object with a ``fit`` method (an estimator) -> ``NAME.joblib`` (when
  joblib is importable), else pickle;
* anything else -> ``NAME.pkl`` (pickle protocol 5).

Library functions are called through their module attribute at call time (``pd.read_parquet``,
``pd.DataFrame.to_parquet``, ``joblib.dump``, ``pickle.dump``...) so that nbmlops capture, which
wraps those attributes, records each save and load as an artifact edge: a file saved by one
step and loaded by the next links the two runs' lineage.

The module imports neither pandas nor joblib until a value needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["save_variable", "load_variable", "find_saved", "SUFFIXES"]

#: file suffixes :func:`save_variable` writes, in the order :func:`find_saved` prefers them
SUFFIXES = (".parquet", ".joblib", ".pkl")
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith("."):
        raise ValueError(f"cannot save a variable as {name!r}: use a plain name such as 'model'")


def _is_dataframe(value: Any) -> bool:
    pd = sys.modules.get("pandas")  # a DataFrame cannot exist unless pandas is imported
    return pd is not None and type(value) is pd.DataFrame  # subclasses would lose their type


def _parquet_safe(frame: Any, pd: Any) -> bool:
    """Whether parquet gives back an equal frame: object columns (and an object index) must
    hold only strings/bytes/missing values (lists would come back as arrays, mixed types
    fail)."""
    infer = pd.api.types.infer_dtype
    series = [frame.iloc[:, i] for i, dtype in enumerate(frame.dtypes) if str(dtype) == "object"]
    if str(frame.index.dtype) == "object":
        series.append(frame.index)
    return all(infer(s, skipna=True) in ("string", "bytes", "empty") for s in series)


def _is_ndarray(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _has_fit(value: Any) -> bool:
    return not isinstance(value, type) and callable(getattr(value, "fit", None))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _save_pickle(value: Any, path: Path, name: str) -> None:
    try:
        with open(path, "wb") as f:
            pickle.dump(value, f, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        _remove(path)
        raise TypeError(
            f"cannot save variable {name!r} ({type(value).__name__}) for later steps: {exc}"
        ) from exc


def save_variable(value: Any, directory: str | os.PathLike[str] | None, name: str) -> str:
    """Write ``value`` into ``directory`` (created) as ``<name>.parquet``, ``<name>.joblib`` or
    ``<name>.pkl`` and return the file's absolute path. Files of the same name with another
    suffix (left by an earlier run) are removed, so :func:`find_saved` sees one file per name."""
    _check_name(name)
    if directory is None:
        raise ValueError(
            f"cannot save variable {name!r}: nbmlops_output_dir is not set "
            "(step notebooks are meant to be run by the pipeline runner)"
        )
    out_dir = Path(os.path.abspath(os.fspath(directory)))
    out_dir.mkdir(parents=True, exist_ok=True)

    path: Path | None = None
    if _is_dataframe(value) and _importable("pyarrow"):
        pd = importlib.import_module("pandas")
        candidate = out_dir / f"{name}.parquet"
        try:
            if _parquet_safe(value, pd):
                pd.DataFrame.to_parquet(value, candidate, engine="pyarrow")
                path = candidate
        except Exception:  # noqa: BLE001 - non-string or duplicate column names...
            _remove(candidate)
    if path is None and (_is_ndarray(value) or _has_fit(value)) and _importable("joblib"):
        joblib = importlib.import_module("joblib")
        candidate = out_dir / f"{name}.joblib"
        try:
            joblib.dump(value, candidate)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            _remove(candidate)
            raise TypeError(
                f"cannot save variable {name!r} ({type(value).__name__}) for later steps: {exc}"
            ) from exc
        path = candidate
    if path is None:
        path = out_dir / f"{name}.pkl"
        _save_pickle(value, path, name)

    for suffix in (*SUFFIXES, ".pickle"):
        other = out_dir / f"{name}{suffix}"
        if other != path:
            _remove(other)
    return str(path)


def load_variable(path: str | os.PathLike[str]) -> Any:
    """Read a value written by :func:`save_variable`; the format follows the file's suffix."""
    p = Path(os.fspath(path))
    name = p.stem
    suffix = p.suffix.lower()
    if suffix not in (*SUFFIXES, ".pickle"):
        raise ValueError(
            f"cannot load variable {name!r} from {p}: unknown file type {p.suffix!r} "
            f"(expected one of {', '.join(SUFFIXES)})"
        )
    if not p.is_file():
        raise FileNotFoundError(
            f"cannot load variable {name!r}: {p} does not exist "
            "(did the step that defines it run and save it?)"
        )
    if suffix == ".parquet":
        pd = importlib.import_module("pandas")
        return pd.read_parquet(p)
    if suffix == ".joblib":
        joblib = importlib.import_module("joblib")
        return joblib.load(p)
    with open(p, "rb") as f:
        return pickle.load(f)


def find_saved(directory: str | os.PathLike[str]) -> dict[str, str]:
    """``{name: absolute path}`` of the variables saved in ``directory`` ({} when it does not
    exist). Should a name have several files, the most recently written one wins."""
    d = Path(os.path.abspath(os.fspath(directory)))
    if not d.is_dir():
        return {}
    found: dict[str, tuple[float, int, str]] = {}
    order = (*SUFFIXES, ".pickle")
    for entry in sorted(d.iterdir()):
        suffix = entry.suffix.lower()
        if suffix not in order or not entry.is_file():
            continue
        rank = (entry.stat().st_mtime, -order.index(suffix), str(entry))
        if entry.stem not in found or rank > found[entry.stem]:
            found[entry.stem] = rank
    return {name: found[name][2] for name in sorted(found)}
