"""Notebook slicing: the cell executions a variable, file or artifact of a run depends on.

:func:`slice_run` starts from the cell execution that last defined the target (or wrote the
file / artifact) and follows the run's recorded lineage backwards: variable edges of both kinds
(data, and code: imports, functions, classes) and, for a file the run read, the cell execution
of the same run that wrote that version of it. Files that came from outside the run end the
walk (the cell that reads them stays). Variables taken from a parameters cell become the
parameters of the slice instead of cells. :func:`write_notebook` turns the result into a
notebook that runs headless (papermill, ``nbmlops run``) and reproduces the target;
:func:`export_notebook` does both for the current run of the kernel.

Core module: it reads the store through :class:`~nbmlops.store.Store` methods only and imports
no UI (no IPython, ipywidgets or click).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import os
import re
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, NotFoundError
from .redact import REDACTED, environment_advice, looks_secret, secrets_in

if TYPE_CHECKING:
    from .store import Store
    from .store.entities import CellExecution, Run

__all__ = [
    "SlicedCell",
    "SliceParam",
    "SliceResult",
    "slice_run",
    "notebook_for",
    "write_notebook",
    "export_notebook",
]

#: tag that lets nbclient/papermill go on after a cell that raised in the original run too
RAISES_TAG = "raises-exception"
PARAMETERS_TAG = "parameters"
_DEFAULT_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlicedCell:
    """One cell execution of the slice."""

    cell_execution_id: int
    seq: int
    execution_count: int | None
    #: the notebook cell id the execution came from (JupyterLab's), if known
    cell_id: str | None
    #: the source written to the exported notebook (parameter assignments moved out, if any)
    source: str
    #: the source as the run executed it
    recorded_source: str
    status: str
    #: variables (and file names) later cells of the slice, or the target, take from it
    needed_for: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        """The cell number users saw (``In [n]``); the sequence number when there was none."""
        return self.execution_count if self.execution_count is not None else self.seq


@dataclass(frozen=True)
class SliceParam:
    """A parameter the slice uses, as one line of the exported ``parameters`` cell."""

    name: str
    #: Python source of the value (the literal written in the run's parameters cell if any)
    literal: str
    #: the value the store recorded (text; ``None`` when none was)
    recorded: str | None
    #: False when ``literal`` may not be exactly the run's value (``note`` says why)
    exact: bool
    note: str | None
    #: sequence number of the cell execution that set it
    seq: int

    def line(self) -> str:
        return f"{self.name} = {self.literal}" + (f"  # {self.note}" if self.note else "")


@dataclass(frozen=True)
class SliceResult:
    """What :func:`slice_run` found: the cells and parameters TARGET depends on."""

    run: Run
    target: str
    #: ``variable``, ``file``, ``artifact`` or ``cell``
    target_kind: str
    #: human description of the target, e.g. ``variable model (cell [6])``
    description: str
    cells: tuple[SlicedCell, ...]
    params: tuple[SliceParam, ...]
    #: number of cell executions the run recorded
    total_cells: int
    #: files the slice reads that came from outside the run (they must exist when it runs)
    external_reads: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def numbers(self) -> list[int]:
        return [c.number for c in self.cells]

    def summary(self, path: str | os.PathLike[str]) -> str:
        """``wrote NB: 4 of 11 cells (cells 1, 2, 5, 7), params: alpha``."""
        listed = f" (cells {', '.join(map(str, self.numbers))})" if self.cells else ""
        params = ", ".join(p.name for p in self.params) or "none"
        return (
            f"wrote {os.fspath(path)}: {len(self.cells)} of {self.total_cells} cells{listed}, "
            f"params: {params}"
        )


# -- source helpers -----------------------------------------------------------------------------

_MAGIC_LINE = re.compile(r"^(\s*)[%!]")


@functools.lru_cache(maxsize=512)
def _parse(source: str) -> ast.Module | None:
    """The cell's AST; IPython magic/shell lines count as ``pass`` (same line numbers)."""
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    lines = [
        _MAGIC_LINE.sub(r"\1pass  #", line) if _MAGIC_LINE.match(line) else line
        for line in source.splitlines()
    ]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _assigned_name(stmt: ast.stmt) -> list[str] | None:
    """Names a simple top-level ``a = b = value`` / ``a: T = value`` binds; None otherwise."""
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return None


def _last_assignment(tree: ast.Module | None, name: str) -> ast.stmt | None:
    found = None
    if tree is not None:
        for stmt in tree.body:
            names = _assigned_name(stmt)
            if names and name in names:
                found = stmt
    return found


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _strip_assignments(source: str, names: set[str]) -> tuple[str, set[str]]:
    """Remove the top-level statements that only assign ``names``; returns (source, removed).

    A statement sharing a line with another one is left alone.
    """
    tree = _parse(source)
    if tree is None or not names:
        return source, set()
    lines = source.splitlines(keepends=True)
    occupied: dict[int, int] = defaultdict(int)
    for stmt in tree.body:
        for ln in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
            occupied[ln] += 1
    drop: set[int] = set()
    removed: set[str] = set()
    for stmt in tree.body:
        assigned = _assigned_name(stmt)
        if not assigned or not set(assigned) <= names:
            continue
        span = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
        if all(occupied[ln] == 1 for ln in span):
            drop.update(span)
            removed.update(assigned)
    kept = "".join(line for i, line in enumerate(lines, start=1) if i not in drop)
    return kept.strip("\n"), removed


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it contains."""
    text = " ".join(text.split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _shown_path(uri: str) -> str:
    """A recorded file as users type it: relative to the working directory when below it."""
    try:
        rel = os.path.relpath(uri)
    except ValueError:  # another drive (Windows)
        return uri
    return uri if rel.startswith("..") else rel


def _basename(uri: str) -> str:
    return os.path.basename(uri.rstrip("/")) or uri


# -- resolving the target -----------------------------------------------------------------------


@dataclass
class _Root:
    cell: CellExecution
    kind: str
    description: str
    #: set when the target is a variable the root cell sets as a parameter
    param: str | None = None


def _cell_label(c: CellExecution) -> str:
    n = c.execution_count if c.execution_count is not None else c.seq
    return f"cell [{n}]"


def _path_candidates(target: str) -> set[str]:
    expanded = os.path.expanduser(target)
    return {target, expanded, os.path.abspath(expanded), os.path.realpath(expanded)}


def _resolve(target: str, run: Run, cells: Sequence[CellExecution], pcells: _ParameterCells) -> _Root:
    short = run.id[:8]
    kind, _, rest = target.partition(":")
    if kind in ("artifact", "cell") and rest.isdigit():
        num = int(rest)
        if kind == "cell":
            for c in cells:
                if c.id == num:
                    return _Root(c, "cell", f"{_cell_label(c)}")
            raise NotFoundError(f"cell execution {num} is not part of run {short}")
        writer = next((c for c in reversed(cells) if any(a.id == num for a in c.writes)), None)
        if writer is not None:
            art = next(a for a in writer.writes if a.id == num)
            return _Root(writer, "artifact",
                         f"artifact {num} ({_basename(art.uri)}, written by {_cell_label(writer)})")
        reader = next((c for c in reversed(cells) if any(a.id == num for a in c.reads)), None)
        if reader is not None:
            art = next(a for a in reader.reads if a.id == num)
            return _Root(reader, "artifact",
                         f"artifact {num} ({_basename(art.uri)}, read by {_cell_label(reader)})")
        raise NotFoundError(f"artifact {num} was neither read nor written by run {short}")

    candidates = _path_candidates(target)
    writer = next((c for c in reversed(cells) if any(a.uri in candidates for a in c.writes)), None)
    if writer is not None:
        return _Root(writer, "file", f"file {target} (written by {_cell_label(writer)})")
    reader = next((c for c in reversed(cells) if any(a.uri in candidates for a in c.reads)), None)
    if reader is not None:
        return _Root(reader, "file", f"file {target} (read by {_cell_label(reader)}; "
                                     "it came from outside the run)")

    if target.isidentifier():
        definer = next((c for c in reversed(cells) if target in c.vars_defined), None)
        if definer is not None:
            param = target if pcells.sets(definer, target) else None
            return _Root(definer, "variable", f"variable {target} ({_cell_label(definer)})", param)
        user = next((c for c in cells if target in c.vars_used), None)
        if user is not None:
            raise NotFoundError(
                f"variable {target!r} was used by {_cell_label(user)} of run {short} but never "
                "defined in it (it was defined before the run started, or by a cell that was "
                "not recorded): run the cell that defines it, then export"
            )
    raise NotFoundError(_unknown_target_message(target, run, cells))


def _unknown_target_message(target: str, run: Run, cells: Sequence[CellExecution]) -> str:
    variables = sorted({v for c in cells for v in c.vars_defined})
    files = sorted({a.uri for c in cells for a in (*c.reads, *c.writes)})
    looked = ["a variable"] if target.isidentifier() else []
    looked.append(f"a file path ({os.path.abspath(os.path.expanduser(target))})")
    message = (
        f"nothing named {target!r} in run {run.id[:8]}: looked it up as {' and as '.join(looked)}"
    )
    close = difflib.get_close_matches(target, variables, n=5, cutoff=0.6)
    by_name: dict[str, str] = {}
    for uri in files:
        by_name.setdefault(_basename(uri), uri)
    close_files = [
        by_name[n] for n in difflib.get_close_matches(_basename(target), list(by_name), n=3, cutoff=0.6)
    ]
    if close or close_files:
        message += "; nearest recorded: " + ", ".join([*close, *map(_shown_path, close_files)])
    elif variables:
        shown = variables[:12]
        more = f" (and {len(variables) - len(shown)} more)" if len(variables) > len(shown) else ""
        message += f"; variables recorded in the run: {', '.join(shown)}{more}"
    else:
        message += "; the run recorded no variables"
    return message


# -- parameters ---------------------------------------------------------------------------------


class _ParameterCells:
    """Which cell executions of a run are parameters cells, and which names they set.

    Capture records a parameter with the cell execution that set it, but the store keeps one
    value per run and key: re-running the parameters cell moves a key to the latest execution.
    So an execution counts as a parameters cell when it set parameters by assignment itself or
    is an execution of the same notebook cell (cell id or source) as one that did.
    """

    def __init__(self, run: Run, cells: Sequence[CellExecution]) -> None:
        self.keys = set(run.params)
        setters = [c for c in cells if any(k in c.vars_defined for k in c.params)]
        ids = {c.cell_id for c in setters if c.cell_id}
        hashes = {c.source_hash for c in setters}
        self.cells = {c.id for c in cells if c.cell_id in ids or c.source_hash in hashes}

    def sets(self, c: CellExecution, name: str) -> bool:
        """``c`` is a parameters cell that sets ``name`` with a plain top-level assignment."""
        return (
            c.id in self.cells
            and name in self.keys
            and name in c.vars_defined
            and _last_assignment(_parse(c.source), name) is not None
        )


def _param(c: CellExecution, name: str) -> SliceParam:
    recorded = c.params.get(name)
    if looks_secret(name) or recorded == REDACTED:
        return SliceParam(name, "None", recorded, False,
                          "secret-looking name: value not exported, pass it with -p", c.seq)
    stmt = _last_assignment(_parse(c.source), name)
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.expr) and _is_literal(value):
        segment = ast.get_source_segment(c.source, value)
        if segment is None:  # the source needed magic lines replaced: unparse the literal
            segment = ast.unparse(value)
        return SliceParam(name, segment, recorded, True, None, c.seq)
    computed = ast.unparse(value) if isinstance(value, ast.expr) else None
    how = f"; the run computed it as: {computed}" if computed else ""
    if recorded is None:
        return SliceParam(name, "None", None, False, f"no value recorded{how}", c.seq)
    try:
        parsed = ast.parse(recorded, mode="eval").body
        literal = ast.get_source_segment(recorded, parsed) if _is_literal(parsed) else None
    except SyntaxError:
        literal = None
    if literal is None:
        literal = repr(recorded)
    note = f"recorded as text {recorded!r}{how}"
    if len(note) > 200:
        note = note[:197] + "..."
    return SliceParam(name, literal.replace("\n", " "), recorded, False, note, c.seq)


# -- slicing ------------------------------------------------------------------------------------


@dataclass
class _Walk:
    selected: set[int] = field(default_factory=set)
    #: cell id -> its inputs: ("cell", src id, variable|file), ("param", name, src id),
    #: ("outside", artifact id, uri)
    inputs: dict[int, set[tuple[str, Any, Any]]] = field(default_factory=lambda: defaultdict(set))
    #: parameter name -> ids of the cells it was taken from
    param_sources: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    needed_for: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    outside: dict[str, None] = field(default_factory=dict)


def _walk(
    roots: Iterable[int],
    by_id: dict[int, CellExecution],
    var_in: dict[int, list[tuple[int, str]]],
    writers: dict[int, list[CellExecution]],
    pcells: _ParameterCells,
    forced: set[int],
) -> _Walk:
    w = _Walk()
    stack = list(roots)
    while stack:
        cid = stack.pop()
        if cid in w.selected:
            continue
        w.selected.add(cid)
        cell = by_id[cid]
        for src, var in var_in.get(cid, ()):
            source = by_id[src]
            if src not in forced and pcells.sets(source, var):
                w.param_sources[var].add(src)
                w.inputs[cid].add(("param", var, src))
                continue
            w.inputs[cid].add(("cell", src, var))
            w.needed_for[src].add(var)
            stack.append(src)
        for art in cell.reads:
            earlier = [c for c in writers.get(art.id, ()) if c.seq < cell.seq]
            if earlier:
                writer = earlier[-1]
                w.inputs[cid].add(("cell", writer.id, f"file:{art.uri}"))
                w.needed_for[writer.id].add(_basename(art.uri))
                stack.append(writer.id)
            else:
                w.inputs[cid].add(("outside", art.id, art.uri))
                w.outside.setdefault(art.uri, None)
    return w


def _variable_edges(store: Store, root: CellExecution, by_id: dict[int, CellExecution]
                    ) -> dict[int, list[tuple[int, str]]]:
    """Incoming variable edges (data and code) of the run's cells upstream of ``root``."""
    graph = store.lineage(f"cell:{root.id}", direction="upstream", include_code=True,
                          max_depth=1_000_000)
    var_in: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for e in graph.edges:
        if e.source.startswith("cell:") and e.target.startswith("cell:"):
            src, dst = int(e.source[5:]), int(e.target[5:])
            if src in by_id and dst in by_id:
                var_in[dst].append((src, e.label))
    for edges in var_in.values():
        edges.sort(key=lambda t: (by_id[t[0]].seq, t[1]))
    return var_in


def _dedupe(order: list[int], by_id: dict[int, CellExecution], walk: _Walk) -> dict[int, int]:
    """Later identical re-executions that add nothing: ``{dropped id: kept id}``.

    A re-execution is dropped when an earlier kept execution has the same source, status ok,
    the same inputs (from the same cells, files and parameters) and defines the same names, and
    no kept cell in between redefined or changed a name either of them touches.
    """
    replaced: dict[int, int] = {}
    kept: list[int] = []
    inputs: dict[int, frozenset[tuple[str, Any, Any]]] = {}

    def remap(item: tuple[str, Any, Any]) -> tuple[str, Any, Any]:
        if item[0] == "cell":
            return ("cell", replaced.get(item[1], item[1]), item[2])
        return item

    for cid in order:
        cell = by_id[cid]
        mine = frozenset(remap(i) for i in walk.inputs.get(cid, ()))
        twin = next((k for k in reversed(kept) if by_id[k].source_hash == cell.source_hash), None)
        if twin is not None:
            first = by_id[twin]
            touched = set(first.vars_defined) | set(first.vars_used)
            between = kept[kept.index(twin) + 1:]
            if (
                cell.status == first.status == "ok"
                and mine == inputs[twin]
                and set(cell.vars_defined) == set(first.vars_defined)
                and not any(touched & set(by_id[b].vars_defined) for b in between)
            ):
                replaced[cid] = twin
                continue
        kept.append(cid)
        inputs[cid] = mine
    return replaced


def slice_run(store: Store, run_id: str, target: str) -> SliceResult:
    """The cell executions and parameters of run ``run_id`` that ``target`` depends on.

    ``target``: a variable of the run (the cell execution that last defined it), a file path
    the run wrote (the last cell execution that wrote it) or only read (the cell that read it),
    ``artifact:ID`` or ``cell:ID``. Raises :class:`~nbmlops.errors.NotFoundError` naming what
    was looked up when the run has no such target.
    """
    target = target.strip()
    if not target:
        raise InvalidArgumentError("empty export target: name a variable, a file or artifact:ID")
    run = store.get_run(run_id)
    cells = store.cell_executions(run.id)
    if not cells:
        raise NotFoundError(f"run {run.id[:8]} has recorded no cells yet: nothing to export")
    by_id = {c.id: c for c in cells}
    pcells = _ParameterCells(run, cells)
    root = _resolve(target, run, cells, pcells)

    if root.param is not None:
        # the target is a parameter itself: the slice is its parameters cell line
        param = _param(root.cell, root.param)
        return SliceResult(run, target, root.kind, root.description, (), (param,), len(cells))

    writers: dict[int, list[CellExecution]] = defaultdict(list)
    for c in cells:
        for art in c.writes:
            writers[art.id].append(c)
    var_in = _variable_edges(store, root.cell, by_id)
    warnings: list[str] = []

    # Parameters move to a parameters cell at the top. Where that would change what a cell
    # saw, the assignment stays a cell where it ran instead: a parameters cell that set a
    # value different from the first one the slice uses, or that ran after a kept cell which
    # assigned the same name (hoisted, it would be overwritten by that cell).
    forced: set[int] = set()
    reasons: dict[int, set[str]] = defaultdict(set)

    def strippable(walk: _Walk, c: CellExecution, name: str) -> bool:
        """A kept parameters cell whose assignment of ``name`` the parameters cell replaces:
        the slice uses no other value of it from this cell."""
        if c.id in forced or not pcells.sets(c, name):
            return False
        sources = walk.param_sources.get(name, set())
        if c.id not in sources:
            return True
        first = min(sources, key=lambda i: by_id[i].seq)
        return _param(c, name).literal == _param(by_id[first], name).literal

    while True:
        walk = _walk([root.cell.id, *sorted(forced)], by_id, var_in, writers, pcells, forced)
        more: dict[int, set[str]] = defaultdict(set)
        for name, ids in walk.param_sources.items():
            sources = sorted(ids, key=lambda i: by_id[i].seq)
            definers = [by_id[b].seq for b in walk.selected
                        if name in by_id[b].vars_defined and not strippable(walk, by_id[b], name)]
            for i in sources:
                if any(seq < by_id[i].seq for seq in definers):
                    more[i].add(name)
            live = [i for i in sources if i not in more]
            if live:
                first = _param(by_id[live[0]], name).literal
                for i in live[1:]:
                    if _param(by_id[i], name).literal != first:
                        more[i].add(name)
        if not more:
            break
        forced |= set(more)
        for i, why in more.items():
            reasons[i] |= why
    params: dict[str, SliceParam] = {}
    order: dict[str, tuple[int, int]] = {}
    for name, ids in walk.param_sources.items():
        cell = min((by_id[i] for i in ids), key=lambda c: c.seq)
        params[name] = _param(cell, name)
        stmt = _last_assignment(_parse(cell.source), name)
        order[name] = (cell.seq, stmt.lineno if stmt is not None else 0)
    for cid in sorted(forced, key=lambda i: by_id[i].seq):
        c = by_id[cid]
        warnings.append(
            f"{_cell_label(c)} sets {', '.join(sorted(reasons[cid]))} again, to a value other "
            "than the parameters cell's: it stays a cell where it ran, so later cells see its value"
        )
    walk.needed_for[root.cell.id].add(target)

    ordered = sorted(walk.selected, key=lambda i: by_id[i].seq)
    replaced = _dedupe(ordered, by_id, walk)
    for dropped, twin in replaced.items():
        walk.needed_for[twin] |= walk.needed_for.pop(dropped, set())

    sliced: list[SlicedCell] = []
    for cid in ordered:
        if cid in replaced:
            continue
        c = by_id[cid]
        source = c.source
        # the parameters cell now sets these: drop the assignments from the cell
        wanted = {n for n in params if strippable(walk, c, n)}
        source, removed = _strip_assignments(source, wanted)
        if wanted - removed:
            warnings.append(
                f"could not move the assignment of {', '.join(sorted(wanted - removed))} out of "
                f"{_cell_label(c)} (it shares a line): that cell sets it again"
            )
        if c.status != "ok":
            warnings.append(
                f"{_cell_label(c)} raised {c.error_name or 'an error'} in the run; it is tagged "
                f"{RAISES_TAG!r} so that the exported notebook goes on after it"
            )
        if not source.strip():
            continue
        secrets = secrets_in(source)
        if secrets:
            warnings.append(
                f"{_cell_label(c)} held a secret, exported as its redaction marker: "
                f"{environment_advice(secrets)}"
            )
        sliced.append(SlicedCell(
            cell_execution_id=c.id,
            seq=c.seq,
            execution_count=c.execution_count,
            cell_id=c.cell_id,
            source=source,
            recorded_source=c.source,
            status=c.status,
            needed_for=tuple(sorted(walk.needed_for.get(cid, ()))),
        ))
    exported = tuple(params[n] for n in sorted(params, key=lambda n: order[n]))
    for p in exported:
        if not p.exact:
            warnings.append(f"parameter {p.name}: {p.note}")
        if secrets_in(p.literal):
            warnings.append(f"parameter {p.name} held a secret, exported as its redaction marker: "
                            f"{environment_advice(secrets_in(p.literal))}")
    return SliceResult(
        run=run,
        target=target,
        target_kind=root.kind,
        description=root.description,
        cells=tuple(sliced),
        params=exported,
        total_cells=len(cells),
        external_reads=tuple(walk.outside),
        warnings=tuple(warnings),
    )


# -- writing the notebook -----------------------------------------------------------------------


def _intro(result: SliceResult, exported_at: datetime) -> str:
    run = result.run
    lines = [f"# Export of {_code_span(result.target)} from run {_code_span(run.name)}", ""]
    origin = f"run {_code_span(run.id)}"
    if run.notebook_path:
        origin += f" of {_code_span(run.notebook_path)}"
    if run.git_commit:
        origin += f" (git {_code_span(run.git_commit[:12])}{', uncommitted changes' if run.git_dirty else ''})"
    numbers = ", ".join(f"[{n}]" for n in result.numbers) or "none"
    lines += [
        f"Exported by nbmlops (`%mlops export`) on {exported_at:%Y-%m-%d %H:%M UTC} from {origin}.",
        "",
        f"Target: {result.description}. It depends on {len(result.cells)} of the run's "
        f"{result.total_cells} cell executions (cells {numbers}), kept here in execution order "
        "with the source each execution ran.",
    ]
    if result.params:
        names = ", ".join(_code_span(p.name) for p in result.params)
        lines += ["", f"Parameters (cell tagged `parameters`, papermill style): {names}."]
    if result.external_reads:
        files = ", ".join(_code_span(u) for u in result.external_reads)
        lines += ["", f"Reads files from outside the run, which must be there when it runs: {files}."]
    secrets = [s for c in result.cells for s in secrets_in(c.source)]
    secrets += [s for p in result.params for s in secrets_in(p.literal)]
    if secrets:
        lines += ["", "Secrets written in the run's cells were not stored: they appear as "
                  "`<redacted:...>` markers. Before running, " + environment_advice(list(dict.fromkeys(secrets)))
                  + ", and replace each marker by that read."]
    rerun = "Run it headless: `nbmlops run NOTEBOOK`, or `papermill NOTEBOOK OUT.ipynb`"
    if result.params:
        rerun += f" (`-p {result.params[0].name} VALUE` changes a parameter)"
    lines += ["", rerun + "."]
    return "\n".join(lines)


def notebook_for(result: SliceResult, *, kernelspec: dict[str, str] | None = None,
                 exported_at: datetime | None = None) -> Any:
    """The exported notebook (an nbformat v4 node): intro, ``parameters`` cell, the cells."""
    import nbformat

    when = exported_at or datetime.now(timezone.utc)
    cells = [nbformat.v4.new_markdown_cell(_intro(result, when))]
    if result.params:
        cells.append(nbformat.v4.new_code_cell(
            "\n".join(p.line() for p in result.params),
            metadata={"tags": [PARAMETERS_TAG]},
        ))
    for c in result.cells:
        meta: dict[str, Any] = {
            "nbmlops": {
                "run_id": result.run.id,
                "cell_execution_id": c.cell_execution_id,
                "seq": c.seq,
                "execution_count": c.execution_count,
                "cell_id": c.cell_id,
                "needed_for": list(c.needed_for),
            }
        }
        if c.status != "ok":
            meta["tags"] = [RAISES_TAG]
        cells.append(nbformat.v4.new_code_cell(c.source, metadata=meta))
    for cell in cells:
        cell["id"] = uuid.uuid4().hex[:8]
    return nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": dict(kernelspec or _DEFAULT_KERNELSPEC),
            "language_info": {"name": "python"},
            "nbmlops": {
                "exported_from": {
                    "run_id": result.run.id,
                    "target": result.target,
                    "cells": [c.seq for c in result.cells],
                    "exported_at": when.isoformat(timespec="seconds"),
                }
            },
        },
    )


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def write_notebook(
    result: SliceResult,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    protected: Iterable[str | os.PathLike[str] | None] = (),
    kernelspec: dict[str, str] | None = None,
) -> Path:
    """Write the exported notebook to ``path`` (atomically) and return it.

    Refuses (:class:`~nbmlops.errors.InvalidArgumentError`, nothing written) to overwrite an
    existing file unless ``force``, and always refuses the run's own notebook and the
    ``protected`` paths (the notebook running in the kernel).
    """
    out = Path(os.path.expanduser(os.fspath(path)))
    for guard in (result.run.notebook_path, *protected):
        if guard and _same_file(out, guard):
            raise InvalidArgumentError(
                f"{os.fspath(path)} is the notebook the run came from: refusing to overwrite it "
                "(choose another output path)"
            )
    if out.is_dir():
        raise InvalidArgumentError(f"{os.fspath(path)} is a directory: name the notebook file to write")
    if out.exists() and not force:
        raise InvalidArgumentError(
            f"{os.fspath(path)} already exists: choose another path, or overwrite it with --force "
            "(force=True)"
        )
    import nbformat

    nb = notebook_for(result, kernelspec=kernelspec)
    nbformat.validate(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            nbformat.write(nb, fh)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out


# -- the service --------------------------------------------------------------------------------


def _settled_store(run_id: str | None, timeout: float) -> tuple[Store, str | None]:
    """The store with this kernel's pending records written (as far as ``timeout`` allows).

    Returns the store and a warning when cells of the current run are still missing from it.
    """
    from .capture.session import active_session
    from .query import default_store

    session = active_session()
    if session is None or session.run_id is None:
        return default_store(), None
    session.flush(timeout)
    store = session.store()
    current = session.run_id
    if run_id is not None and not current.startswith(run_id):
        return store, None
    expected = session.cells_recorded - int(session.status().get("dropped_records") or 0)
    deadline = time.monotonic() + timeout
    have = 0
    while True:
        try:
            have = (store.get_run(current).cell_count or 0) if store.run_exists(current) else 0
        except NotFoundError:
            have = 0
        if have >= expected or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if have < expected:
        return store, (
            f"{expected - have} recent cell execution(s) of the run are not in the store yet; "
            "the export may miss them (see %mlops status)"
        )
    return store, None


def export_notebook(
    target: str,
    output: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    force: bool = False,
    store: Store | None = None,
    protected: Sequence[str | os.PathLike[str] | None] = (),
    timeout: float = 10.0,
) -> SliceResult:
    """Write a minimal notebook that reproduces ``target`` of a run; return what it holds.

    ``run_id`` defaults to the run the kernel is recording (whose pending records are written
    first). See :func:`slice_run` for the targets and :func:`write_notebook` for the refusals;
    on any error nothing is written.
    """
    if run_id is None:
        from .capture.session import active_session

        session = active_session()
        run_id = session.run_id if session is not None else None
        if run_id is None:
            raise InvalidArgumentError(
                "no run is being recorded in this kernel: name the run (run_id=..., --run RUN)"
            )
    warning = None
    if store is None:
        store, warning = _settled_store(run_id, timeout)
    result = slice_run(store, run_id, target)
    if warning:
        result = replace(result, warnings=(*result.warnings, warning))
    write_notebook(result, output, force=force, protected=protected)
    return result
