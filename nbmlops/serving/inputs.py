"""A predict request's body, checked against a version's signature before any model sees it.

Bodies are JSON records (``[{"col": v, ...}, ...]``) or columns (``{"col": [...], ...}``).
Every problem is collected (up to :data:`MAX_PROBLEMS`) and named by column and row, e.g.
``column 'alcohol': expected float64, got string 'abc' (row 3)``. Pure functions: no web
framework, no store.

Nullability: signatures carry column names and dtypes but not whether the training data had
missing values, so a ``null`` (or ``NaN``/``Infinity``, which Python's JSON reader accepts) in a
numeric column is refused; a signature column whose dtype is unknown accepts any scalar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BadRequest", "Columns", "parse_json", "to_columns", "check_columns", "ColumnSpec"]

MAX_PROBLEMS = 20

Columns = dict[str, list[Any]]


class BadRequest(Exception):
    """A request refused before prediction: HTTP ``status``, one-line ``error``, ``problems``."""

    def __init__(self, status: int, error: str, problems: Sequence[str] = ()) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = list(problems)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "problems": self.problems}


class ColumnSpec:
    """One input column of a signature: name, dtype text and the kind of value it takes."""

    __slots__ = ("name", "dtype", "kind")

    def __init__(self, name: str, dtype: str | None) -> None:
        self.name = name
        self.dtype = dtype
        d = (dtype or "").lower()
        if d.startswith(("float", "double")):
            self.kind = "float"
        elif d.startswith(("int", "uint")):
            self.kind = "int"
        elif d.startswith("bool"):
            self.kind = "bool"
        elif d in ("object", "string", "str", "category") or d.startswith(("string", "category")):
            self.kind = "str"
        else:
            self.kind = "any"


def parse_json(body: bytes) -> Any:
    """The decoded body; :class:`BadRequest` 400 naming line and column for malformed JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                         ) from None


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_columns(data: Any, max_rows: int) -> tuple[Columns, int]:
    """Records or columns -> ``({column: values}, rows)``; shape problems as :class:`BadRequest`."""
    if isinstance(data, list):
        if not data:
            raise BadRequest(422, "no rows to predict", ["the body is an empty list"])
        if len(data) > max_rows:
            raise BadRequest(422, f"too many rows: {len(data)} (at most {max_rows} per request)",
                             [f"{len(data)} rows sent, the bound is {max_rows}"])
        first = data[0]
        if not isinstance(first, dict):
            raise BadRequest(422, "records must be JSON objects",
                             [f"row 0 is a {type(first).__name__}, not an object"])
        names = list(first)
        cols: Columns = {n: [] for n in names}
        problems: list[str] = []
        key = set(names)
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                problems.append(f"row {i} is a {type(rec).__name__}, not an object")
            elif rec.keys() != key:
                missing = sorted(key - rec.keys())
                extra = sorted(rec.keys() - key)
                problems.append(f"row {i} has other columns than row 0"
                                + (f" (missing {', '.join(map(repr, missing))})" if missing else "")
                                + (f" (extra {', '.join(map(repr, extra))})" if extra else ""))
            else:
                for n in names:
                    cols[n].append(rec[n])
            if len(problems) >= MAX_PROBLEMS:
                break
        if problems:
            raise BadRequest(422, "the records do not all have the same columns", problems)
        return cols, len(data)
    if isinstance(data, dict):
        if not data:
            raise BadRequest(422, "no columns sent", ["the body is an empty object"])
        lengths: dict[int, list[str]] = {}
        for name, values in data.items():
            if not isinstance(values, list):
                raise BadRequest(422, "columns must be JSON lists",
                                 [f"column {name!r} is a {type(values).__name__}, not a list"])
            lengths.setdefault(len(values), []).append(name)
        if len(lengths) > 1:
            raise BadRequest(422, "columns have different lengths",
                             [f"{n} values in {', '.join(map(repr, names))}"
                              for n, names in sorted(lengths.items())])
        rows = next(iter(lengths))
        if rows == 0:
            raise BadRequest(422, "no rows to predict", ["the columns are empty"])
        if rows > max_rows:
            raise BadRequest(422, f"too many rows: {rows} (at most {max_rows} per request)",
                             [f"{rows} rows sent, the bound is {max_rows}"])
        return dict(data), rows
    raise BadRequest(422, "expected JSON records [{\"col\": value}, ...] or columns "
                     "{\"col\": [values]}", [f"the body is a JSON {type(data).__name__}"])


_NUMBER = (int, float)


def _check_values(spec: ColumnSpec, values: list[Any], problems: list[str]) -> None:
    kind = spec.kind
    types = set(map(type, values))
    if kind in ("float", "int"):
        if types <= {float, int}:
            if float in types:
                for i, v in enumerate(values):
                    if type(v) is float and not math.isfinite(v):
                        what = "NaN" if v != v else "an infinite value"
                        problems.append(f"column {spec.name!r}: {what} at row {i}, where the "
                                        "training data had none")
                        return
                    if kind == "int" and type(v) is float and not v.is_integer():
                        problems.append(f"column {spec.name!r}: expected {spec.dtype} (whole "
                                        f"numbers), got {v!r} at row {i}")
                        return
            return
        for i, v in enumerate(values):
            if v is None:
                problems.append(f"column {spec.name!r}: null at row {i}, where the training "
                                "data had none")
                return
            if not isinstance(v, _NUMBER) or isinstance(v, bool):
                problems.append(f"column {spec.name!r}: expected {spec.dtype}, got "
                                f"{_json_kind(v)} {_short(v)} at row {i}")
                return
        return
    if kind == "str":
        if types <= {str}:
            return
        for i, v in enumerate(values):
            if v is None:
                problems.append(f"column {spec.name!r}: null at row {i}, where the training "
                                "data had none")
                return
            if not isinstance(v, str):
                problems.append(f"column {spec.name!r}: expected {spec.dtype} (text), got "
                                f"{_json_kind(v)} {_short(v)} at row {i}")
                return
        return
    if kind == "bool":
        if types <= {bool}:
            return
        for i, v in enumerate(values):
            if not isinstance(v, bool):
                problems.append(f"column {spec.name!r}: expected bool, got {_json_kind(v)} "
                                f"{_short(v)} at row {i}")
                return
        return
    for i, v in enumerate(values):  # dtype unknown: any scalar, still no nulls
        if v is None or isinstance(v, (list, dict)) or (type(v) is float and not math.isfinite(v)):
            problems.append(f"column {spec.name!r}: expected a value, got {_short(v)} at row {i}")
            return


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def check_columns(cols: Mapping[str, list[Any]], specs: Sequence[ColumnSpec]) -> Columns:
    """The columns in signature order, every value checked; :class:`BadRequest` 422 listing
    missing and extra columns and the first bad value of each column."""
    problems: list[str] = []
    expected = [s.name for s in specs]
    known = set(expected)
    for name in expected:
        if name not in cols:
            problems.append(f"missing column {name!r}")
    for name in cols:
        if name not in known:
            problems.append(f"unexpected column {name!r} (the model takes "
                            f"{', '.join(map(repr, expected[:10]))}"
                            + (", ..." if len(expected) > 10 else "") + ")")
    for spec in specs:
        if spec.name in cols:
            _check_values(spec, cols[spec.name], problems)
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        n = len(problems)
        raise BadRequest(422, f"the input does not match the model's signature ({n} problem"
                         f"{'s' if n != 1 else ''})", problems[:MAX_PROBLEMS])
    return {name: cols[name] for name in expected}
