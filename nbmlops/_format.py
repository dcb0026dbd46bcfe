"""Plain-text and JSON renderings of store entities, shared by the CLI and the magics.

Pure functions over the entities of :mod:`nbmlops.store.entities` (used duck-typed, so importing
this module pulls in neither SQLAlchemy, click nor IPython). Every function returns a string; the
caller decides where it goes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.entities import Comparison, LineageEdge, LineageGraph, LineageNode, Run

__all__ = [
    "SHORT_ID_LEN",
    "short_id",
    "format_duration",
    "format_timestamp",
    "format_value",
    "format_size",
    "truncate",
    "render_table",
    "pick_metric_keys",
    "runs_table",
    "environment_summary",
    "run_details",
    "comparison_table",
    "lineage_tree",
    "json_safe",
    "to_json",
]

SHORT_ID_LEN = 8
EMPTY = "-"


# -- scalars ------------------------------------------------------------------------------------


def short_id(run_id: str | None, length: int = SHORT_ID_LEN) -> str:
    """The first ``length`` characters of a run id (what users type back as a prefix)."""
    return run_id[:length] if run_id else EMPTY


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``4.2s``, ``42s``, ``3m 05s``, ``2h 03m``, ``1d 02h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return EMPTY
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def format_timestamp(ts: float | None) -> str:
    """Epoch seconds as local time to the second (``2026-11-25 15:04:05``); ``-`` when unset."""
    if ts is None:
        return EMPTY
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def format_value(value: Any) -> str:
    """A param, metric or tag value for a table cell: floats to 6 significant digits."""
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def format_size(size: int | None) -> str:
    """Bytes as ``812 B``, ``1.2 KB``, ``3.4 MB``..."""
    if size is None:
        return EMPTY
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - loop always returns


def truncate(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, marking the cut with an ellipsis."""
    text = " ".join(text.split()) if "\n" in text or "\t" in text else text
    if width <= 0 or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


# -- tables -------------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    max_width: int = 40,
    right_align: Sequence[bool] | None = None,
) -> str:
    """An aligned plain-text table; numeric columns are right-aligned unless told otherwise.

    Cells are stringified with :func:`format_value` and cut to ``max_width`` characters.
    """
    body = [[truncate(format_value(c), max_width) for c in row] for row in rows]
    ncols = len(headers)
    for row in body:
        if len(row) != ncols:
            raise ValueError(f"row has {len(row)} cells, expected {ncols}")
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if right_align is None:
        right_align = [
            bool(body) and all(c == EMPTY or _is_number(c) for c in (row[i] for row in body))
            for i in range(ncols)
        ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if right_align[i] else c.ljust(widths[i])
            for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in body)])


def pick_metric_keys(runs: Sequence[Run], limit: int = 3) -> list[str]:
    """The ``limit`` metric keys most runs have (ties by name): the columns worth showing."""
    counts = Counter(k for r in runs for k in r.metrics)
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def runs_table(
    runs: Sequence[Run],
    *,
    metric_keys: Sequence[str] | None = None,
    max_metrics: int = 3,
) -> str:
    """Runs as a compact table: short id, name, status, source, start, duration, cells, metrics."""
    keys = list(metric_keys) if metric_keys is not None else pick_metric_keys(runs, max_metrics)
    headers = ["ID", "NAME", "STATUS", "SOURCE", "START", "DURATION", "CELLS", *keys]
    rows = [
        [
            short_id(r.id),
            r.name,
            r.status,
            r.source,
            format_timestamp(r.start_time),
            format_duration(r.duration),
            r.cell_count,
            *(r.metrics.get(k) for k in keys),
        ]
        for r in runs
    ]
    align = [False] * 5 + [True, True] + [True] * len(keys)
    return render_table(headers, rows, max_width=32, right_align=align)


# -- one run ------------------------------------------------------------------------------------


def environment_summary(env: Mapping[str, Any] | None) -> dict[str, Any]:
    """Python version and number of installed packages from a run's ``environment`` record.

    Tolerates the shapes capture may write: ``python``/``python_version`` as a string (or a
    mapping with ``version``), ``packages`` as a mapping or list, or a ``package_count``.
    """
    out: dict[str, Any] = {"python": None, "packages": None}
    if not env:
        return out
    py = env.get("python_version", env.get("python"))
    if isinstance(py, Mapping):
        py = py.get("version")
    if py is not None:
        out["python"] = str(py).split()[0]
    packages = env.get("packages")
    if isinstance(packages, (Mapping, list, tuple)):
        out["packages"] = len(packages)
    elif isinstance(env.get("package_count"), int):
        out["packages"] = env["package_count"]
    return out


def _git_text(commit: str | None, dirty: bool | None) -> str:
    if not commit:
        return EMPTY
    text = commit[:12]
    if dirty:
        text += " (dirty)"
    elif dirty is False:
        text += " (clean)"
    return text


def _key_values(title: str, values: Mapping[str, Any]) -> list[str]:
    lines = [f"{title}:"]
    if not values:
        return [*lines, "  (none)"]
    width = max(len(k) for k in values)
    lines.extend(f"  {k.ljust(width)}  {format_value(values[k])}" for k in sorted(values))
    return lines


def run_details(run: Run) -> str:
    """Everything about one run a person wants at a glance, as aligned ``field  value`` lines."""
    env = environment_summary(run.environment)
    fields: list[tuple[str, Any]] = [
        ("id", run.id),
        ("name", run.name),
        ("experiment", run.experiment),
        ("status", run.status),
        ("source", run.source),
        ("notebook", run.notebook_path),
        ("start", format_timestamp(run.start_time)),
        ("end", format_timestamp(run.end_time)),
        ("duration", format_duration(run.duration)),
        ("parent", run.parent_run_id),
        ("git", _git_text(run.git_commit, run.git_dirty)),
        ("python", env["python"]),
        ("packages", env["packages"]),
        ("cells", run.cell_count),
    ]
    width = max(len(k) for k, _ in fields)
    lines = [f"{k.ljust(width)}  {format_value(v)}" for k, v in fields]
    for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        lines.append("")
        lines.extend(_key_values(title, values))
    return "\n".join(lines)


# -- several runs -------------------------------------------------------------------------------


def comparison_table(comparison: Comparison, *, max_width: int = 24) -> str:
    """Params and metrics of several runs side by side; differing params marked with ``*``."""
    runs = comparison.runs
    headers = ["", "", *(short_id(r.id) for r in runs)]
    rows: list[list[Any]] = [["", "name", *(r.name for r in runs)]]
    rows.append(["", "status", *(r.status for r in runs)])
    differ = set(comparison.params_differ)
    rows.append(["", "params:", *([""] * len(runs))])
    if not comparison.params:
        rows.append(["", "  (none)", *([""] * len(runs))])
    for key in sorted(comparison.params):
        rows.append(["*" if key in differ else "", f"  {key}", *comparison.params[key]])
    rows.append(["", "metrics:", *([""] * len(runs))])
    if not comparison.metrics:
        rows.append(["", "  (none)", *([""] * len(runs))])
    for key in sorted(comparison.metrics):
        rows.append(["", f"  {key}", *comparison.metrics[key]])
    table = render_table(
        headers,
        rows,
        max_width=max_width,
        right_align=[False, False, *([False] * len(runs))],
    )
    note = f"* {len(differ)} param(s) differ" if differ else "params are identical"
    return f"{table}\n\n{note}"


# -- lineage ------------------------------------------------------------------------------------

#: How an edge reads when walking towards its source (upstream) or its target (downstream).
_UPSTREAM_VERBS = {"wrote": "written by", "read": "reads", "fitted": "fitted", "defined": "defined by",
                   "used": "used by", "validated against": "validated against",
                   "validated against (failed)": "validated against (FAILED)"}
_DOWNSTREAM_VERBS = {"wrote": "writes", "read": "read by", "fitted": "fitted", "defined": "defines",
                     "used": "used by", "validated against": "validates",
                     "validated against (failed)": "validates (FAILED)"}
_VARIABLE_EDGE = {"upstream": "uses {} from", "downstream": "passes {} to"}


def _node_text(node: LineageNode | None, node_id: str) -> str:
    if node is None:
        return node_id
    attrs = node.attrs or {}
    if node.type == "artifact":
        extra = [str(attrs.get("kind") or "file")]
        if attrs.get("size") is not None:
            extra.append(format_size(attrs["size"]))
        uri = attrs.get("uri")
        where = f"  {uri}" if uri and uri != node.label else ""
        return f"{node.label} ({', '.join(extra)}){where}  [{node_id}]"
    if node.type == "cell":
        status = attrs.get("status")
        flag = f" ({status})" if status and status != "ok" else ""
        run = short_id(attrs.get("run_id")) if attrs.get("run_id") else ""
        return f"{node.label}{flag}  [{node_id}{' run ' + run if run else ''}]"
    if node.type == "variable":
        return f"variable {node.label}"
    if node.type == "estimator":
        return f"model {node.label}"
    return f"{node.label}  [{node_id}]"


def lineage_tree(graph: LineageGraph, *, direction: str = "upstream") -> str:
    """The graph as an indented tree from its root, one line per node.

    Upstream trees follow edges back to where things came from; downstream trees follow them to
    what came of them (``both``: one tree of each). Models fitted in a cell are listed under that cell either way. A node
    reached a second time is printed once more with ``(see above)`` and not expanded again.
    """
    if direction == "both":
        up = lineage_tree(graph, direction="upstream")
        down = lineage_tree(graph, direction="downstream")
        return f"upstream:\n{up}\n\ndownstream:\n{down}"
    if direction not in ("upstream", "downstream"):
        raise ValueError("direction must be upstream, downstream or both")
    nodes = {n.id: n for n in graph.nodes}
    incoming: dict[str, list[LineageEdge]] = {}
    outgoing: dict[str, list[LineageEdge]] = {}
    for e in graph.edges:
        incoming.setdefault(e.target, []).append(e)
        outgoing.setdefault(e.source, []).append(e)

    def verb(edge: LineageEdge) -> str:
        table = _UPSTREAM_VERBS if direction == "upstream" else _DOWNSTREAM_VERBS
        if edge.label in table:
            return table[edge.label]
        return _VARIABLE_EDGE[direction].format(edge.label)

    def children(node_id: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if direction == "upstream" and node_id.startswith("estimator:"):
            return out  # listed under the cell that fitted it
        if direction == "upstream":
            out.extend((verb(e), e.source) for e in incoming.get(node_id, []))
            # models fitted in a cell are downstream of it, but belong in its description
            out.extend((verb(e), e.target) for e in outgoing.get(node_id, []) if e.label == "fitted")
        else:
            out.extend((verb(e), e.target) for e in outgoing.get(node_id, []))
        return sorted(out, key=lambda c: (_sort_key(c[1]), c[0]))

    lines = [_node_text(nodes.get(graph.root), graph.root)]
    expanded = {graph.root}

    def visit(node_id: str, prefix: str) -> None:
        kids = children(node_id)
        for i, (how, child) in enumerate(kids):
            last = i == len(kids) - 1
            branch = "└─ " if last else "├─ "
            seen = child in expanded
            text = f"{how}: {_node_text(nodes.get(child), child)}"
            lines.append(f"{prefix}{branch}{text}{'  (see above)' if seen and children(child) else ''}")
            if not seen:
                expanded.add(child)
                visit(child, prefix + ("   " if last else "│  "))

    visit(graph.root, "")
    if len(lines) == 1:
        lines.append(f"  (no {direction} lineage recorded)")
    return "\n".join(lines)


def _sort_key(node_id: str) -> tuple[str, int, str]:
    kind, _, rest = node_id.partition(":")
    num = rest.split(":")[0]
    return (kind, int(num) if num.isdigit() else 0, rest)


# -- JSON ---------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, ±inf) replaced by ``None`` so it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(value: Any, *, default: Callable[[Any], Any] = str) -> str:
    """Strict, deterministic JSON (sorted keys, 2-space indent) of an entity dict or list."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.dumps(json_safe(value), indent=2, sort_keys=True, ensure_ascii=False,
                      allow_nan=False, default=default)
