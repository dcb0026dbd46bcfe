"""Schemas inferred from a reference dataset, and the checks of a dataset against one.

A :class:`Schema` holds, per column: dtype and its family, nullability and the reference's null
share, numeric range, the category set of low-cardinality columns, and a drift baseline
(quantile bins with their shares for numbers, category shares for categories). It is plain
JSON (``save``/``load``), so a schema saved once validates later data without the reference.

The checks are vectorized pandas/numpy (one pass per column; drift on a sample of
:data:`~nbmlops.validation.drift.DRIFT_SAMPLE` values), not pandera: on 1,000,000 rows x 20
columns pandera's ``validate`` alone takes about as long as ``df.describe()`` (the whole budget
of a validation) and its import adds ~0.3 s and pydantic/typeguard; these checks take a fifth.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from . import drift

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Schema", "infer_schema", "check_frame", "Thresholds", "DEFAULT_THRESHOLDS",
           "MAX_CATEGORIES", "SCHEMA_FORMAT"]

#: the ``format`` field of a saved schema file
SCHEMA_FORMAT = "nbmlops.schema/1"
#: object/string/category/bool columns with at most this many distinct values get a category set
MAX_CATEGORIES = 50

#: threshold -> default. ``psi``: drift above it is a violation (None: no drift check);
#: ``chi2_pvalue``: a categorical column whose chi-square p-value falls below it is a violation
#: (None: not tested); ``range_tolerance``: numbers may exceed the reference's [min, max] by this
#: share of its span; ``null_tolerance``: a nullable column's null share may grow by this much.
DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "psi": 0.2,
    "chi2_pvalue": None,
    "range_tolerance": 0.1,
    "null_tolerance": 0.05,
}


class Thresholds:
    """Defaults, overridden for all columns and per column (``{"columns": {"age": {...}}}``)."""

    def __init__(self, given: Mapping[str, Any] | None = None) -> None:
        given = dict(given or {})
        per_column = given.pop("columns", None) or {}
        if not isinstance(per_column, Mapping):
            raise InvalidArgumentError("thresholds: 'columns' must map column names to thresholds")
        self.base = {**DEFAULT_THRESHOLDS, **_checked(given, "thresholds")}
        self.columns = {str(c): _checked(v, f"thresholds for column {c!r}")
                        for c, v in per_column.items()}

    def get(self, column: str, key: str) -> float | None:
        own = self.columns.get(column, {})
        return own[key] if key in own else self.base[key]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.base)
        if self.columns:
            out["columns"] = self.columns
        return out


def _checked(values: Any, what: str) -> dict[str, float | None]:
    if not isinstance(values, Mapping):
        raise InvalidArgumentError(f"{what} must be a mapping of name -> number")
    out: dict[str, float | None] = {}
    for key, value in values.items():
        if key not in DEFAULT_THRESHOLDS:
            raise InvalidArgumentError(
                f"{what}: unknown threshold {key!r} (known: {', '.join(DEFAULT_THRESHOLDS)})")
        if value is None:
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 \
                or not math.isfinite(value):
            raise InvalidArgumentError(f"{what}: {key} must be a number >= 0, got {value!r}")
        out[key] = float(value)
    return out


# -- dtypes --------------------------------------------------------------------------------------


def dtype_family(dtype: Any) -> str:
    """``bool``, ``integer``, ``float``, ``datetime``, ``timedelta``, ``category``, ``string``
    or ``other``."""
    from pandas.api import types as t

    if t.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, t.CategoricalDtype):
        return "category"
    if t.is_integer_dtype(dtype):
        return "integer"
    if t.is_float_dtype(dtype):
        return "float"
    if t.is_datetime64_any_dtype(dtype):
        return "datetime"
    if t.is_timedelta64_dtype(dtype):
        return "timedelta"
    if t.is_string_dtype(dtype) or t.is_object_dtype(dtype):
        return "string"
    return "other"


def _compatible(reference: str, observed: str) -> bool:
    if reference == observed:
        return True
    if reference == "float" and observed == "integer":
        return True  # whole numbers where decimals were: still numbers in range
    return {reference, observed} == {"category", "string"}


def _whole_floats(s: pd.Series, reference: str, observed: str) -> bool:
    """Integers that became floats because of a missing value (pandas does that) still match."""
    if reference != "integer" or observed != "float":
        return False
    values = _numbers(s)
    return bool(np.all(values == np.round(values)))


def _plain(value: Any) -> Any:
    """A category value as JSON keeps it (numpy scalars to Python ones)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _numbers(s: pd.Series) -> np.ndarray:
    """A numeric column's non-null values as float64."""
    if s.dtype == np.float64:
        arr = s.to_numpy()
    else:
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(arr)
    return arr[~nan] if nan.any() else arr


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# -- the schema ----------------------------------------------------------------------------------


class Schema:
    """Columns of a reference dataset and what their values looked like."""

    def __init__(self, columns: dict[str, dict[str, Any]], *, rows: int | None = None,
                 source: Mapping[str, Any] | None = None) -> None:
        self.columns = columns
        self.rows = rows
        self.source = dict(source or {})

    def to_dict(self) -> dict[str, Any]:
        return {"format": SCHEMA_FORMAT, "rows": self.rows, "source": self.source,
                "columns": self.columns}

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys): equal schemas store as one artifact."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the schema as JSON; ``nbmlops.validate(df, against=path)`` reads it back."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), sort_keys=True, indent=1, allow_nan=False) + "\n",
                     encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, data: Any, where: str = "schema") -> Schema:
        if not isinstance(data, dict) or data.get("format") != SCHEMA_FORMAT or \
                not isinstance(data.get("columns"), dict):
            raise InvalidArgumentError(
                f"{where}: not an nbmlops schema (expected JSON with \"format\": "
                f"\"{SCHEMA_FORMAT}\", as written by nbmlops.validation.infer_schema(df).save())")
        return cls(data["columns"], rows=data.get("rows"), source=data.get("source"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schema:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgumentError(f"{path}: cannot read schema: {exc}") from None
        return cls.from_dict(data, str(path))

    def __repr__(self) -> str:
        return f"Schema({len(self.columns)} columns, rows={self.rows})"


def _profile(s: pd.Series, max_categories: int) -> dict[str, Any]:
    n = len(s)
    family = dtype_family(s.dtype)
    nulls = int(s.isna().sum())
    col: dict[str, Any] = {"dtype": str(s.dtype), "family": family, "nullable": nulls > 0,
                           "null_fraction": nulls / n if n else 0.0}
    if nulls == n:
        col["kind"] = "empty"
        return col
    if family in ("integer", "float"):
        values = _numbers(s)
        base = drift.sample(values)
        edges = drift.quantile_edges(base)
        col.update(kind="numeric", min=float(values.min()), max=float(values.max()),
                   bins=edges, expected=drift.bin_fractions(base, edges))
    elif family == "datetime":
        col.update(kind="datetime", min=str(s.min()), max=str(s.max()))
    elif family in ("bool", "category", "string"):
        counts = s.value_counts(dropna=True)
        if len(counts) <= max_categories:
            total = float(counts.sum())
            col.update(kind="categorical",
                       categories=[[_plain(v), float(c) / total] for v, c in counts.items()])
        else:
            col.update(kind="text", distinct_at_least=len(counts))
    else:
        col["kind"] = "other"
    return col


def infer_schema(df: pd.DataFrame, *, max_categories: int = MAX_CATEGORIES,
                 source: Mapping[str, Any] | None = None) -> Schema:
    """The schema of a reference DataFrame: one pass over each column (drift baselines from
    a sample of at most :data:`~nbmlops.validation.drift.DRIFT_SAMPLE` values)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise InvalidArgumentError(f"expected a pandas DataFrame, got {type(df).__name__}")
    columns = {str(name): _profile(df[name], max_categories) for name in df.columns}
    return Schema(columns, rows=len(df), source=source)


# -- checks --------------------------------------------------------------------------------------


def _violation(column: str, check: str, expected: str, observed: str) -> dict[str, str]:
    return {"column": column, "check": check, "expected": expected, "observed": observed}


def check_frame(df: pd.DataFrame, schema: Schema, thresholds: Thresholds, *,
                allow_extra_columns: bool = True) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Violations of ``df`` against ``schema`` and per-column statistics (null share, PSI...)."""
    violations: list[dict[str, str]] = []
    stats: dict[str, dict[str, Any]] = {}
    names = {str(c): c for c in df.columns}
    for name, ref in schema.columns.items():
        if name not in names:
            violations.append(_violation(name, "missing_column", f"column of dtype {ref['dtype']}",
                                         "missing"))
            continue
        stats[name] = _check_column(df[names[name]], name, {**ref, "_rows": schema.rows},
                                    thresholds, violations)
    extra = [c for c in names if c not in schema.columns]
    if extra and not allow_extra_columns:
        for name in extra:
            violations.append(_violation(name, "unexpected_column", "no such column",
                                         f"column of dtype {df[names[name]].dtype}"))
    summary: dict[str, Any] = {"columns": stats, "thresholds": thresholds.to_dict(),
                               "drift_sample": drift.DRIFT_SAMPLE}
    if extra:
        summary["extra_columns"] = extra
    return violations, summary


def _check_column(s: pd.Series, name: str, ref: dict[str, Any], th: Thresholds,
                  out: list[dict[str, str]]) -> dict[str, Any]:
    n = len(s)
    family = dtype_family(s.dtype)
    stat: dict[str, Any] = {"dtype": str(s.dtype)}
    nulls = int(s.isna().sum())
    share = nulls / n if n else 0.0
    stat["null_fraction"] = share
    if n and nulls == n and ref.get("kind") != "empty":
        # before the dtype: a column of nothing but nulls has lost its dtype (float, object)
        out.append(_violation(name, "all_null",
                              f"values (reference {ref['null_fraction']:.1%} null)",
                              f"all {n} values null"))
        return stat
    if not _compatible(ref["family"], family) and not _whole_floats(s, ref["family"], family):
        out.append(_violation(name, "dtype", f"{ref['dtype']} ({ref['family']})",
                              f"{s.dtype} ({family})"))
        return stat
    if nulls and not ref["nullable"]:
        out.append(_violation(name, "nullable", "no nulls", f"{nulls} nulls ({share:.2%})"))
    elif nulls and share > ref["null_fraction"] + (th.get(name, "null_tolerance") or 0.0):
        out.append(_violation(name, "null_fraction",
                              f"<= {ref['null_fraction'] + (th.get(name, 'null_tolerance') or 0):.2%}"
                              " null", f"{share:.2%} null ({nulls})"))
    kind = ref.get("kind")
    if kind == "numeric":
        _check_numeric(s, name, ref, th, out, stat)
    elif kind == "categorical":
        _check_categorical(s, name, ref, th, out, stat)
    return stat


def _check_numeric(s: pd.Series, name: str, ref: dict[str, Any], th: Thresholds,
                   out: list[dict[str, str]], stat: dict[str, Any]) -> None:
    values = _numbers(s)
    if not len(values):
        return
    lo, hi = float(ref["min"]), float(ref["max"])
    tol = th.get(name, "range_tolerance") or 0.0
    span = hi - lo
    pad = tol * (span if span > 0 else max(abs(hi), 1.0))
    low, high = lo - pad, hi + pad
    vmin, vmax = float(values.min()), float(values.max())
    stat.update(min=vmin, max=vmax)
    if vmin < low or vmax > high:
        outside = int(np.count_nonzero((values < low) | (values > high)))
        out.append(_violation(name, "range", f"[{_fmt(low)}, {_fmt(high)}]",
                              f"{outside} values outside (min {_fmt(vmin)}, max {_fmt(vmax)})"))
    limit = th.get(name, "psi")
    if limit is not None:
        sampled = drift.sample(values)
        actual = drift.bin_fractions(sampled, ref["bins"])
        _judge_psi(name, ref, limit, actual, len(sampled), out, stat)


def _judge_psi(name: str, ref: dict[str, Any], limit: float, actual: list[float], n: int,
               out: list[dict[str, str]], stat: dict[str, Any], *,
               expected: list[float] | None = None) -> None:
    """PSI of ``actual`` against the reference's shares; drift is what exceeds ``limit`` beyond
    the PSI that samples of these sizes show by chance (:func:`drift.psi_noise`), so a small
    batch is not flagged for its own noise while large ones are judged on PSI itself."""
    shares = ref["expected"] if expected is None else expected
    value = drift.psi(shares, actual, n_actual=min(n, drift.DRIFT_SAMPLE))
    rows = ref.get("_rows")
    noise = drift.psi_noise(len(shares), min(n, drift.DRIFT_SAMPLE),
                            min(rows, drift.DRIFT_SAMPLE) if rows else None)
    stat["psi"] = round(value, 6)
    stat["psi_noise"] = round(noise, 6)
    if value - noise > limit:
        observed = f"PSI {value:.3f}" + (f" ({value - noise:.3f} beyond the {noise:.3f} "
                                         f"expected by chance for {n} rows)" if noise >= 0.01 else "")
        out.append(_violation(name, "drift", f"PSI <= {limit:g}", observed))


def _check_categorical(s: pd.Series, name: str, ref: dict[str, Any], th: Thresholds,
                       out: list[dict[str, str]], stat: dict[str, Any]) -> None:
    known = {(_plain(v)): share for v, share in ref["categories"]}
    counts = s.value_counts(dropna=True)
    new: dict[Any, int] = {}
    observed = dict.fromkeys(known, 0)
    for value, count in counts.items():
        key = _plain(value)
        if key in observed:
            observed[key] += int(count)
        else:
            new[key] = int(count)
    if new:
        shown = ", ".join(repr(v) for v in sorted(new, key=lambda v: -new[v])[:5])
        more = f" (+{len(new) - 5} more)" if len(new) > 5 else ""
        expected = ", ".join(repr(v) for v in list(known)[:10]) + \
            (f" (+{len(known) - 10} more)" if len(known) > 10 else "")
        out.append(_violation(name, "categories", f"one of {expected}",
                              f"{sum(new.values())} values in {len(new)} new categories: "
                              f"{shown}{more}"))
    total = sum(observed.values()) + sum(new.values())
    if not total:
        return
    expected_shares = [*known.values(), 0.0]
    actual_counts = [*observed.values(), sum(new.values())]
    limit = th.get(name, "psi")
    if limit is not None:
        _judge_psi(name, ref, limit, [c / total for c in actual_counts], total, out, stat,
                   expected=expected_shares)
    pmin = th.get(name, "chi2_pvalue")
    if pmin is not None:
        # over the reference's categories (new ones are their own violation), on at most a
        # sample's worth of rows: on millions of rows any difference is "significant"
        known_total = sum(observed.values())
        scale = min(1.0, drift.DRIFT_SAMPLE / known_total) if known_total else 1.0
        test = drift.chi_square(list(known.values()),
                                [c * scale for c in observed.values()])
        stat["chi2"] = test
        if test["p_value"] < pmin:
            out.append(_violation(name, "drift", f"chi-square p >= {pmin:g}",
                                  f"p {test['p_value']:.3g} (statistic {test['statistic']:.1f})"))
