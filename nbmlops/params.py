"""Notebook parameters: what a notebook declares, and checking/coercing what a user passes.

A notebook declares its parameters in the cell tagged ``parameters`` (the papermill convention):
top-level assignments, with an optional annotation and a trailing ``# help`` comment, read the
way papermill's translator reads them (Python cells are parsed here with :mod:`ast`; other
languages go through papermill's translators). A value
passed from the command line is a string: it is converted to the type of the declared default
(``alpha = 0.5`` makes ``-p alpha 1`` the float ``1.0``; ``n: int = 3`` rejects ``-p n 2.5``).
Values from a YAML file or a pipeline definition are already typed and are checked the same way.
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, ParameterError

__all__ = [
    "ParamInfo",
    "declared_parameters",
    "check_parameters",
    "coerce_value",
    "load_params_file",
    "PARAMETER_TAGS",
    "read_notebook_light",
]

PARAMETER_TAGS = frozenset({"parameters"})
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class ParamInfo:
    name: str
    #: the default as written in the notebook (source text)
    default: str
    #: ``int``, ``float``, ``bool``, ``str``, ``list``, ``dict``, ``tuple``, ``NoneType`` or
    #: None when it cannot be told from the source
    type_name: str | None
    help: str = ""


class _LightNotebook:
    """The parts of a notebook that parameters and cache keys need: ``cells`` (dicts, sources
    as strings) and ``metadata``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.metadata: dict[str, Any] = data.get("metadata") or {}
        self.cells: list[dict[str, Any]] = []
        for cell in data.get("cells") or []:
            source = cell.get("source", "")
            self.cells.append({**cell, "source": "".join(source) if isinstance(source, list) else source})


def read_notebook_light(path: str | os.PathLike[str]) -> Any:
    """Read a notebook's JSON without nbformat (whose import costs up to a second where
    jsonschema's format checkers are installed): enough to inspect parameters and hash code."""
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read notebook {p}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InvalidArgumentError(f"{p} is not a valid notebook: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise InvalidArgumentError(f"{p} is not a valid notebook: no list of cells")
    return _LightNotebook(data)


def _parameters_cell(nb: Any) -> Any | None:
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and PARAMETER_TAGS & set(
            cell.get("metadata", {}).get("tags", [])
        ):
            return cell
    return None


def declared_parameters(notebook: Any) -> dict[str, ParamInfo] | None:
    """The parameters ``notebook`` (a path or an nbformat node) declares, in order; None when it
    has no ``parameters`` cell."""
    if isinstance(notebook, (str, os.PathLike)):
        nb = read_notebook_light(notebook)
    else:
        nb = notebook
    cell = _parameters_cell(nb)
    if cell is None:
        return None
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get(
        "language_info", {}
    ).get("name", "python")
    if language == "python":
        found = _inspect_python(cell.get("source", ""))
        if found is not None:
            return found
    return _inspect_with_papermill(cell, kernel, language)


def _inspect_python(source: str) -> dict[str, ParamInfo] | None:
    """Top-level ``name = default`` / ``name: type = default`` lines of a Python parameters cell,
    with a trailing ``# comment`` as help — what papermill's Python translator finds, without
    importing papermill (this runs before every pipeline step, cached or not)."""
    import io
    import tokenize

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    out: dict[str, ParamInfo] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, annotation = node.target.id, node.value, node.annotation
        else:
            continue
        default = ast.get_source_segment(source, value) or ""
        type_name: str | None = None
        if annotation is not None:
            ann = ast.get_source_segment(source, annotation) or ""
            type_name = ann.split("[", 1)[0].strip() or None
        else:
            try:
                type_name = type(ast.literal_eval(value)).__name__
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                type_name = None
        out[name] = ParamInfo(name, default, type_name, comments.get(node.end_lineno or node.lineno, ""))
    return out


def _inspect_with_papermill(cell: Any, kernel: str, language: str) -> dict[str, ParamInfo]:
    from papermill.translators import papermill_translators

    try:
        translator = papermill_translators.find_translator(kernel, language)
        found = translator.inspect(cell)
    except Exception:  # papermill raises for languages it cannot inspect
        found = []
    out: dict[str, ParamInfo] = {}
    for p in found:
        type_name = p.inferred_type_name if p.inferred_type_name not in (None, "None") else None
        if type_name is None:
            try:
                type_name = type(ast.literal_eval(p.default)).__name__
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                type_name = None
        out[p.name] = ParamInfo(p.name, p.default, type_name, p.help or "")
    return out


def coerce_value(name: str, value: Any, info: ParamInfo | None) -> Any:
    """``value`` as the declared type of parameter ``name``; strings are parsed, typed values
    checked. Raises :class:`ParameterError` when the value cannot take that type."""
    type_name = info.type_name if info else None
    if not isinstance(value, str):
        return _check_typed(name, value, type_name)
    text = value.strip()
    try:
        if type_name == "str":
            return value
        if type_name == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true/false, yes/no, on/off or 1/0")
        if type_name == "int":
            return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
        if type_name == "float":
            return float(text)
        if type_name in ("list", "dict", "tuple"):
            parsed = _parse_literal(text)
            want = {"list": (list, tuple), "tuple": (list, tuple), "dict": (dict,)}[type_name]
            if not isinstance(parsed, want):
                raise ValueError(f"expected a {type_name} (a JSON or Python literal)")
            return tuple(parsed) if type_name == "tuple" else list(parsed) if type_name == "list" else parsed
    except ValueError as exc:
        raise ParameterError(
            f"parameter {name!r}: cannot use {value!r} as {type_name} "
            f"(the notebook declares {name} = {info.default if info else '?'}): {exc}",
            param=name,
        ) from None
    # NoneType or unknown: best guess from the text (numbers, booleans, null, lists), else str
    parsed = _parse_literal(text)
    return value if parsed is _UNPARSED else parsed


_UNPARSED = object()


def _parse_literal(text: str) -> Any:
    """A Python literal (``1.5``, ``[1, 2]``, ``None``, ``True``) or JSON (``true``, ``null``,
    ``{"a": 1}``); anything else is not parsed. Not YAML: YAML 1.1 reads ``01234`` as octal,
    ``1:30`` as 90 and ``2024-01-01`` as a date, which a notebook would never expect."""
    import json

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return _UNPARSED


def _check_typed(name: str, value: Any, type_name: str | None) -> Any:
    if type_name is None or type_name == "NoneType" or value is None:
        return value
    if type_name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, (list, tuple)),
        "tuple": lambda v: isinstance(v, (list, tuple)),
        "dict": lambda v: isinstance(v, dict),
    }.get(type_name)
    if ok is not None and not ok(value):
        raise ParameterError(
            f"parameter {name!r}: {value!r} is {_a(type(value).__name__)}, the notebook declares "
            f"{_a(type_name)}",
            param=name,
        )
    return value


def _a(type_name: str) -> str:
    return f"{'an' if type_name[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {type_name}"


def check_parameters(
    notebook: Any, params: Mapping[str, Any], *, label: str | None = None,
    extra_names: Iterable[str] = (),
) -> dict[str, Any]:
    """Check ``params`` against the notebook's ``parameters`` cell and coerce them.

    Raises :class:`ParameterError` for a notebook without a ``parameters`` cell given any
    parameter, and for an unknown name (listing the declared ones). ``extra_names`` are accepted
    without being declared (nbmlops' own injected parameters)."""
    label = label or (Path(notebook).name if isinstance(notebook, (str, os.PathLike)) else "notebook")
    params = dict(params)
    extra = set(extra_names)
    user = {k: v for k, v in params.items() if k not in extra}
    if not user:
        return params
    declared = declared_parameters(notebook)
    if declared is None:
        raise ParameterError(
            f"{label} has no cell tagged 'parameters', so it takes no parameters "
            f"(given: {', '.join(sorted(user))}); tag the cell that sets the defaults 'parameters'"
        )
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in extra:
            out[key] = value
            continue
        if key not in declared:
            hint = difflib.get_close_matches(key, list(declared), n=1)
            known = ", ".join(declared) or "none"
            raise ParameterError(
                f"{label} has no parameter {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; its parameters: {known}",
                param=key,
            )
        out[key] = coerce_value(key, value, declared[key])
    return out


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) file holding one mapping."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read parameters file {p}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidArgumentError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            f"{p}: parameters file must hold a mapping of name: value, not a {type(data).__name__}"
        )
    return {str(k): _plain(v) for k, v in data.items()}


def _plain(value: Any) -> Any:
    """YAML dates and times as ISO text: a notebook parameter must be a Python literal."""
    import datetime as dt

    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
