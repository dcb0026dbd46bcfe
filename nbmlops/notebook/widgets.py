"""The views ``%mlops`` returns: runs, one run, comparisons, cell history, lineage graphs, status.

Each view is a small object that renders itself three ways: ``_repr_html_`` (an HTML table or an
inline SVG drawing), ``_repr_pretty_``/``__repr__`` (plain text, for terminal IPython and
papermill outputs) and, for the runs table only, an ipywidgets box whose column headers sort the
table (:meth:`RunsView.widget`). The renderings are pure functions of store entities so they can
be tested without a kernel; ipywidgets is imported only when a widget is built.

Every piece of text that comes from the store (run names, cell sources, file names, parameter
values...) is HTML-escaped on the way out. Markup is only ever built here, from escaped text.
"""

from __future__ import annotations

import functools
import hashlib
import html
import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._format import (
    comparison_table,
    environment_summary,
    format_duration,
    format_size,
    format_timestamp,
    format_value,
    lineage_tree,
    pick_metric_keys,
    render_table,
    run_details,
    runs_table,
    short_id,
    truncate,
)

if TYPE_CHECKING:
    import ipywidgets

    from ..store.entities import CellExecution, Comparison, LineageGraph, LineageNode, Run

__all__ = [
    "Markup",
    "View",
    "StatusView",
    "RunsView",
    "RunView",
    "ComparisonView",
    "HistoryView",
    "LineageView",
    "status_text",
    "status_html",
    "runs_html",
    "run_html",
    "comparison_html",
    "metric_bars_svg",
    "history_text",
    "history_html",
    "lineage_layers",
    "lineage_svg",
    "lineage_html",
]

EMPTY = "-"
FONT = "var(--jp-ui-font-family, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif)"
MONO = "var(--jp-code-font-family, SFMono-Regular, Menlo, Consolas, monospace)"
BORDER = "var(--jp-border-color2, #d0d7de)"
MUTED = "var(--jp-ui-font-color2, #6b7280)"
#: One colour per run in comparisons (Tableau 10).
RUN_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
STATUS_COLOURS = {
    "running": "#2563eb", "finished": "#16a34a", "ok": "#16a34a", "failed": "#dc2626",
    "error": "#dc2626", "cancelled": "#6b7280", "abandoned": "#b45309",
}


# -- markup helpers -----------------------------------------------------------------------------


class Markup(str):
    """A string of HTML built here from escaped parts; everything else gets escaped."""


def esc(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute (``Markup`` passes unchanged)."""
    if isinstance(value, Markup):
        return value
    return html.escape(value if isinstance(value, str) else format_value(value), quote=True)


def _attrs(**attrs: Any) -> str:
    return "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None
    )


def tag(name: str, content: Any = "", **attrs: Any) -> Markup:
    """``<name attrs>content</name>``; ``content`` is escaped unless it is :class:`Markup`."""
    return Markup(f"<{name}{_attrs(**attrs)}>{esc(content)}</{name}>")


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(esc(sep).join(esc(p) for p in parts))


def _value(value: Any) -> str:
    return EMPTY if value is None else format_value(value)


def _pill(text: str) -> Markup:
    colour = STATUS_COLOURS.get(text, "#6b7280")
    return tag("span", text, style=(
        f"display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;color:#fff;"
        f"background:{colour};line-height:16px"
    ))


def _wrap(kind: str, body: Markup) -> str:
    return str(tag("div", body, class_=f"nbmlops-view nbmlops-{kind}",
                   style=f"font-family:{FONT};font-size:13px;line-height:1.4;max-width:100%;overflow-x:auto"))


def _title(text: str, note: str = "") -> Markup:
    extra = tag("span", note, style=f"font-weight:normal;color:{MUTED};margin-left:8px") if note else ""
    return tag("div", join([text, extra]), style="font-weight:600;margin:2px 0 6px 0;font-size:14px")


_TH = f"text-align:left;padding:3px 8px;border-bottom:1px solid {BORDER};font-weight:600;white-space:nowrap"
_TD = f"text-align:left;padding:3px 8px;border-bottom:1px solid {BORDER};vertical-align:top"


def html_table(
    headers: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[bool] | None = None,
    row_styles: Sequence[str] | None = None,
    extra_style: str = "",
    with_header: bool = True,
) -> Markup:
    """A table; cells are escaped unless they are :class:`Markup`."""
    ncols = len(headers)
    num = list(numeric) if numeric is not None else [False] * ncols

    def style(i: int, base: str) -> str:
        return base + (";text-align:right;font-variant-numeric:tabular-nums" if num[i] else "")

    head = tag("thead", tag("tr", join(tag("th", h, style=style(i, _TH)) for i, h in enumerate(headers))))
    body_rows = []
    for r, row in enumerate(rows):
        extra = row_styles[r] if row_styles is not None and r < len(row_styles) else ""
        body_rows.append(tag("tr", join(tag("td", c, style=style(i, _TD)) for i, c in enumerate(row)),
                             style=extra or None))
    return tag("table", join([head if with_header else "", tag("tbody", join(body_rows))]),
               style="border-collapse:collapse;margin:0;font-size:12px;" + extra_style)


def _code(text: str, width: int = 60, title: str | None = None) -> Markup:
    return tag("code", truncate(text, width), title=title,
               style=f"font-family:{MONO};font-size:12px;white-space:pre;background:none")


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    return source.strip().splitlines()[0] if source.strip() else "(empty cell)"


class View:
    """Base of the views: plain text for terminals and papermill, HTML for notebooks."""

    kind = "view"

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def __repr__(self) -> str:
        return self.text()

    __str__ = __repr__


# -- status -------------------------------------------------------------------------------------


def _status_parts(status: Mapping[str, Any] | None) -> tuple[str, list[tuple[str, Any]]]:
    """The headline and the ``(field, value)`` rows of a status report."""
    status = status or {}
    state = status.get("state")
    run = f"run {status.get('run_name')!r} ({short_id(status.get('run_id'))})"
    if state == "recording":
        head = f"nbmlops: recording {run}"
    elif state == "paused":
        head = f"nbmlops: paused {run}; %mlops resume continues recording"
    elif state in ("stopped", None) and "cells_recorded" in status:
        head = "nbmlops: not recording (no active run; %mlops start begins one)"
    else:
        head = "nbmlops: not recording: capture is not loaded in this kernel (%load_ext nbmlops)"
    fields: list[tuple[str, Any]] = []
    if status.get("run_id"):
        fields += [("run id", status["run_id"]), ("experiment", status.get("experiment") or "Default"),
                   ("cells recorded", status.get("cells_recorded"))]
        if status.get("cells_recorded") and status.get("capture_ms_per_cell") is not None:
            fields.append(("capture cost", f"{status['capture_ms_per_cell']:.2f} ms per cell"))
    if status.get("store"):
        fields.append(("store", status["store"]))
    for key in ("pending_writes", "store_problem", "dropped_records", "internal_errors"):
        if status.get(key):
            fields.append((key.replace("_", " "), status[key]))
    return head, fields


def status_text(status: Mapping[str, Any] | None) -> str:
    """A headline plus ``field  value`` lines from :meth:`CaptureSession.status` (or ``None``)."""
    head, fields = _status_parts(status)
    width = max((len(k) for k, _ in fields), default=0)
    return "\n".join([head, *(f"  {k.ljust(width)}  {_value(v)}" for k, v in fields)])


def status_html(status: Mapping[str, Any] | None) -> str:
    head, fields = _status_parts(status)
    state = (status or {}).get("state")
    colour = {"recording": "#dc2626", "paused": "#d97706"}.get(str(state), "#6b7280")
    dot = tag("span", "●", style=f"color:{colour};margin-right:6px")
    title = tag("div", join([dot, head]), style="font-weight:600;margin-bottom:4px")
    rows = [[tag("span", k, style=f"color:{MUTED}"), _value(v)] for k, v in fields]
    return _wrap("status", join([title, html_table(["", ""], rows, with_header=False)]))


class StatusView(View):
    kind = "status"

    def __init__(self, status: Mapping[str, Any] | None) -> None:
        self.status = dict(status) if status is not None else None

    def text(self) -> str:
        return status_text(self.status)

    def html(self) -> str:
        return status_html(self.status)


# -- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of the runs table: its header, a cell renderer and a sort key."""

    key: str
    header: str
    cell: Callable[[Run], Any]
    sort: Callable[[Run], Any]
    numeric: bool = False
    width: int = 100  # px in the sortable widget


def run_columns(metric_keys: Sequence[str], current_run_id: str | None = None) -> list[Column]:
    def name_cell(r: Run) -> Any:
        if r.id == current_run_id:
            return join([r.name, tag("span", " (this kernel)", style=f"color:{MUTED}")])
        return r.name

    cols = [
        Column("id", "ID", lambda r: tag("code", short_id(r.id), title=r.id), lambda r: r.id, width=80),
        Column("name", "Name", name_cell, lambda r: r.name.lower(), width=180),
        Column("experiment", "Experiment", lambda r: r.experiment, lambda r: r.experiment.lower(), width=110),
        Column("status", "Status", lambda r: _pill(r.status), lambda r: r.status, width=90),
        Column("source", "Source", lambda r: r.source, lambda r: r.source, width=90),
        Column("start", "Started", lambda r: format_timestamp(r.start_time), lambda r: r.start_time, width=150),
        Column("duration", "Duration", lambda r: format_duration(r.duration), lambda r: r.duration,
               numeric=True, width=80),
        Column("cells", "Cells", lambda r: _value(r.cell_count), lambda r: r.cell_count, numeric=True, width=60),
    ]
    cols.extend(_metric_column(k) for k in metric_keys)
    return cols


def _metric_column(key: str) -> Column:
    def value(r: Run) -> float | None:
        return r.metrics.get(key)

    return Column(f"metric:{key}", key, lambda r: _value(value(r)), value, numeric=True,
                  width=max(80, 8 * len(key) + 24))


def sort_runs(runs: Sequence[Run], column: Column, descending: bool = False) -> list[Run]:
    """Runs ordered by a column; runs without a value always come last."""
    present = [r for r in runs if column.sort(r) is not None]
    missing = [r for r in runs if column.sort(r) is None]
    return sorted(present, key=column.sort, reverse=descending) + missing


def runs_html(
    runs: Sequence[Run],
    *,
    metric_keys: Sequence[str] | None = None,
    current_run_id: str | None = None,
    total: int | None = None,
    with_header: bool = True,
    fixed_widths: bool = False,
) -> str:
    """The runs as an HTML table: id, name, experiment, status, source, start, duration, metrics."""
    keys = list(metric_keys) if metric_keys is not None else pick_metric_keys(runs, 4)
    cols = run_columns(keys, current_run_id)
    table = html_table(
        [c.header for c in cols],
        [[c.cell(r) for c in cols] for r in runs],
        numeric=[c.numeric for c in cols],
        with_header=with_header,
        extra_style=f"table-layout:fixed;width:{sum(c.width for c in cols)}px" if fixed_widths else "",
    )
    if fixed_widths:
        colgroup = join(tag("col", style=f"width:{c.width}px") for c in cols)
        table = Markup(table.replace("<thead>", f"<colgroup>{colgroup}</colgroup><thead>", 1))
    parts: list[Any] = []
    if with_header:
        parts.append(_title("Runs", _count_note(len(runs), total, "run")))
    parts.append(table if runs else tag("div", "no runs recorded yet", style=f"color:{MUTED}"))
    return _wrap("runs", join(parts))


def _count_note(shown: int, total: int | None, noun: str) -> str:
    if total is not None and total > shown:
        return f"{shown} of {total} {noun}s (newest first; --limit N shows more)"
    return f"{shown} {noun}{'' if shown == 1 else 's'}"


class RunsView(View):
    """A table of runs; :meth:`widget` makes its column headers sort it."""

    kind = "runs"

    def __init__(
        self,
        runs: Sequence[Run],
        *,
        total: int | None = None,
        current_run_id: str | None = None,
        metric_keys: Sequence[str] | None = None,
    ) -> None:
        self.runs = list(runs)
        self.total = total
        self.current_run_id = current_run_id
        self.metric_keys = list(metric_keys) if metric_keys is not None else pick_metric_keys(self.runs, 4)

    def columns(self) -> list[Column]:
        return run_columns(self.metric_keys, self.current_run_id)

    def text(self) -> str:
        if not self.runs:
            return "no runs recorded yet"
        table = runs_table(self.runs, metric_keys=self.metric_keys)
        return f"{table}\n\n{_count_note(len(self.runs), self.total, 'run')}"

    def html(self) -> str:
        return runs_html(self.runs, metric_keys=self.metric_keys, current_run_id=self.current_run_id,
                         total=self.total)

    def widget(self) -> ipywidgets.VBox:
        """A ``VBox`` of header buttons over the HTML table; a click sorts by that column.

        Numbers and dates sort largest first; a second click on a header reverses the order.
        """
        import ipywidgets as w

        cols = self.columns()
        body = w.HTML()
        title = w.HTML(str(_title("Runs", _count_note(len(self.runs), self.total, "run"))))
        state: dict[str, Any] = {"key": None, "descending": False}
        buttons: list[w.Button] = []

        def render() -> None:
            col = next((c for c in cols if c.key == state["key"]), None)
            rows = sort_runs(self.runs, col, state["descending"]) if col else self.runs
            body.value = runs_html(rows, metric_keys=self.metric_keys, current_run_id=self.current_run_id,
                                   with_header=False, fixed_widths=True)
            for c, b in zip(cols, buttons, strict=True):
                arrow = (" ▼" if state["descending"] else " ▲") if c.key == state["key"] else ""
                b.description = c.header + arrow

        def sort_by(key: str) -> None:
            if state["key"] == key:
                state["descending"] = not state["descending"]
            else:  # numbers and dates: largest/newest first
                col = next(c for c in cols if c.key == key)
                state["key"], state["descending"] = key, col.numeric or key == "start"
            render()

        for c in cols:
            b = w.Button(description=c.header, tooltip=f"sort by {c.header}",
                         layout=w.Layout(width=f"{c.width}px", margin="0", padding="0 4px"))
            b.on_click(lambda _button, key=c.key: sort_by(key))
            buttons.append(b)
        render()
        header = w.HBox(buttons, layout=w.Layout(overflow="visible", grid_gap="0"))
        box = _fallback_vbox()([title, header, body])
        box.nbmlops_view = self
        return box


@functools.cache
def _fallback_vbox() -> type:
    """A ``VBox`` whose display data also carries the view's HTML and text.

    Front ends that can render widgets show the widget; saved notebooks, nbconvert, papermill
    outputs viewed elsewhere and GitHub fall back to the HTML or the plain text.
    """
    import ipywidgets as w

    class ViewBox(w.VBox):  # type: ignore[misc]
        nbmlops_view: View | None = None

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            data = super()._repr_mimebundle_(**kwargs)
            view = self.nbmlops_view
            if view is not None and isinstance(data, dict):
                data["text/plain"] = view.text()
                data["text/html"] = view.html()
            return data

    return ViewBox


# -- one run ------------------------------------------------------------------------------------


def _kv_table(title: str, values: Mapping[str, Any]) -> Markup:
    rows = [[tag("code", k, style=f"font-family:{MONO}"), _value(values[k])] for k in sorted(values)]
    content = (html_table(["", ""], rows, with_header=False) if rows
               else tag("div", "(none)", style=f"color:{MUTED}"))
    return tag("div", join([tag("div", title, style="font-weight:600;margin-bottom:2px"), content]),
               style="margin-right:24px;margin-bottom:8px")


def run_html(run: Run) -> str:
    """One run: its fields, then its params, metrics and tags side by side."""
    env = environment_summary(run.environment)
    git = EMPTY
    if run.git_commit:
        git = run.git_commit[:12] + (" (dirty)" if run.git_dirty else "")
    fields: list[tuple[str, Any]] = [
        ("id", tag("code", run.id)), ("experiment", run.experiment), ("source", run.source),
        ("notebook", run.notebook_path), ("started", format_timestamp(run.start_time)),
        ("ended", format_timestamp(run.end_time)), ("duration", format_duration(run.duration)),
        ("cells", run.cell_count), ("parent run", run.parent_run_id), ("git", git),
        ("python", env["python"]), ("packages", env["packages"]),
    ]
    info = html_table(["", ""], [[tag("span", k, style=f"color:{MUTED}"), v if isinstance(v, Markup)
                                  else _value(v)] for k, v in fields], with_header=False)
    head = tag("div", join([run.name, " ", _pill(run.status)]),
               style="font-weight:600;font-size:14px;margin-bottom:6px")
    sections = tag("div", join([_kv_table("Params", run.params), _kv_table("Metrics", run.metrics),
                                _kv_table("Tags", run.tags)]),
                   style="display:flex;flex-wrap:wrap;margin-top:10px")
    return _wrap("run", join([head, info, sections]))


class RunView(View):
    kind = "run"

    def __init__(self, run: Run) -> None:
        self.run = run

    def text(self) -> str:
        return run_details(self.run)

    def html(self) -> str:
        return run_html(self.run)


# -- comparison ---------------------------------------------------------------------------------


def _run_header(run: Run, colour: str) -> Markup:
    swatch = tag("span", "", style=f"display:inline-block;width:10px;height:10px;background:{colour};"
                 "border-radius:2px;margin-right:5px")
    return join([swatch, truncate(run.name, 28), tag("div", short_id(run.id),
                                                     style=f"font-weight:normal;color:{MUTED};font-family:{MONO}")])


def metric_bars_svg(comparison: Comparison, *, max_metrics: int = 12, bar_width: int = 280) -> str:
    """Horizontal bars, one group per metric and one bar per run (coloured as in the table)."""
    metrics = [k for k in sorted(comparison.metrics)
               if any(v is not None and math.isfinite(v) for v in comparison.metrics[k])][:max_metrics]
    runs = comparison.runs
    if not metrics:
        return ""
    label_w, value_w, row_h, title_h, gap = 150, 90, 18, 20, 10
    x0 = label_w
    width = label_w + bar_width + value_w
    height = sum(title_h + row_h * len(runs) + gap for _ in metrics)
    parts: list[str] = []
    y = 0
    for key in metrics:
        values = comparison.metrics[key]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        lo, hi = min(0.0, *finite), max(0.0, *finite)
        span = (hi - lo) or 1.0
        zero = x0 + (0 - lo) / span * bar_width
        parts.append(f'<text x="0" y="{y + 14}" font-weight="600" fill="currentColor">{esc(key)}</text>')
        y += title_h
        for i, (run, v) in enumerate(zip(runs, values, strict=True)):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            cy = y + row_h / 2
            parts.append(f'<text x="{x0 - 8}" y="{cy + 4:.1f}" text-anchor="end" fill="currentColor">'
                         f'{esc(truncate(run.name, 20))}</text>')
            if v is None or not math.isfinite(v):
                parts.append(f'<text x="{x0 + 4}" y="{cy + 4:.1f}" fill="#9ca3af">no value</text>')
            else:
                vx = x0 + (v - lo) / span * bar_width
                left, w = min(zero, vx), max(abs(vx - zero), 1.0)
                parts.append(f'<rect x="{left:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                             f'rx="2" fill="{colour}"><title>{esc(run.name)}: {esc(key)} = '
                             f'{esc(format_value(v))}</title></rect>')
                parts.append(f'<text x="{x0 + bar_width + 8}" y="{cy + 4:.1f}" fill="currentColor" '
                             f'font-variant-numeric="tabular-nums">{esc(format_value(v))}</text>')
            y += row_h
        parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{y - row_h * len(runs)}" y2="{y}" '
                     'stroke="currentColor" stroke-opacity="0.4"/>')
        y += gap
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-size="12" font-family="sans-serif" '
            f'role="img" aria-label="metrics by run">{"".join(parts)}</svg>')


def comparison_html(comparison: Comparison) -> str:
    """Params side by side (differing ones highlighted), metrics, and a bar chart of the metrics."""
    runs = comparison.runs
    colours = [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(len(runs))]
    differ = set(comparison.params_differ)
    headers = ["", *(_run_header(r, c) for r, c in zip(runs, colours, strict=True))]
    rows: list[list[Any]] = []
    styles: list[str] = []
    section = "font-weight:600;background:var(--jp-layout-color2, #f3f4f6)"

    def heading(text: str) -> None:
        rows.append([text, *([""] * len(runs))])
        styles.append(section)

    heading(f"Params ({len(differ)} of {len(comparison.params)} differ)")
    for key in sorted(comparison.params, key=lambda k: (k not in differ, k)):
        values = comparison.params[key]
        if key in differ:
            name = join([tag("span", "≠ ", style="color:#b45309;font-weight:700", title="differs"),
                         tag("code", key, style=f"font-family:{MONO}")])
            rows.append([name, *(tag("b", _value(v)) for v in values)])
            styles.append("background:rgba(250,204,21,0.25)")
        else:
            rows.append([tag("code", key, style=f"font-family:{MONO};color:{MUTED}"),
                         *(tag("span", _value(v), style=f"color:{MUTED}") for v in values)])
            styles.append("")
    heading("Metrics")
    for key in sorted(comparison.metrics):
        rows.append([tag("code", key, style=f"font-family:{MONO}"), *(_value(v) for v in comparison.metrics[key])])
        styles.append("")
    table = html_table(headers, rows, row_styles=styles)
    chart = metric_bars_svg(comparison)
    parts: list[Any] = [_title(f"Comparing {len(runs)} runs"), table]
    if chart:
        parts += [tag("div", "Metrics", style="font-weight:600;margin:12px 0 4px 0"), Markup(chart)]
    return _wrap("compare", join(parts))


class ComparisonView(View):
    kind = "compare"

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison

    def text(self) -> str:
        return comparison_table(self.comparison)

    def html(self) -> str:
        return comparison_html(self.comparison)


# -- history ------------------------------------------------------------------------------------


def _names(items: Sequence[str], limit: int = 6) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:limit])
    return shown + (f" +{len(items) - limit}" if len(items) > limit else "")


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def _history_row(c: CellExecution) -> dict[str, Any]:
    return {
        "seq": c.seq,
        "in": c.execution_count,
        "status": c.status if c.status != "error" else f"error: {c.error_name or ''}".rstrip(": "),
        "duration": format_duration(c.duration),
        "source": _first_line(c.source),
        "defined": _names(c.vars_defined),
        "used": _names(c.vars_used),
        "reads": _names([_basename(a.uri) for a in c.reads]),
        "writes": _names([_basename(a.uri) for a in c.writes]),
        "models": _names([f"{e.variable}: {e.class_name}" for e in c.estimators], 3),
        "metrics": _names([f"{m.key}={format_value(m.value)}" for m in c.metrics], 4),
    }


_HISTORY_HEADERS = ["#", "In", "Status", "Duration", "Source", "Defined", "Used", "Reads", "Writes",
                    "Models", "Metrics"]


def history_text(cells: Sequence[CellExecution], *, run: Run | None = None, total: int | None = None) -> str:
    """The cell executions of a run as an aligned table (source cut to its first line)."""
    head = f"history of run {run.name!r} ({short_id(run.id)})" if run is not None else "cell history"
    if not cells:
        return f"{head}: no cells recorded yet"
    rows = [list(_history_row(c).values()) for c in cells]
    table = render_table(_HISTORY_HEADERS, rows, max_width=36,
                         right_align=[True, True] + [False] * (len(_HISTORY_HEADERS) - 2))
    return f"{head}: {_count_note(len(cells), total, 'cell')}\n\n{table}"


def history_html(cells: Sequence[CellExecution], *, run: Run | None = None, total: int | None = None) -> str:
    rows: list[list[Any]] = []
    styles: list[str] = []
    for c in cells:
        r = _history_row(c)
        error = f"{c.error_name}: {c.error_value}" if c.status == "error" else None
        reads = join((tag("span", _basename(a.uri), title=a.uri) for a in c.reads), ", ")
        writes = join((tag("span", _basename(a.uri), title=a.uri) for a in c.writes), ", ")
        rows.append([
            r["seq"], _value(r["in"]), tag("span", r["status"], title=error,
                                           style=f"color:{STATUS_COLOURS.get(c.status, 'inherit')}"),
            r["duration"], _code(r["source"], 50, title=c.source), r["defined"], r["used"], reads, writes,
            r["models"], r["metrics"],
        ])
        styles.append("background:rgba(220,38,38,0.08)" if c.status == "error" else "")
    head = (f"History of {run.name}" if run is not None else "Cell history")
    note = _count_note(len(cells), total, "cell") + (f" · run {short_id(run.id)}" if run is not None else "")
    body: Any = (html_table(_HISTORY_HEADERS, rows, numeric=[True, True] + [False] * 9, row_styles=styles)
                 if cells else tag("div", "no cells recorded yet", style=f"color:{MUTED}"))
    return _wrap("history", join([_title(head, note), body]))


class HistoryView(View):
    kind = "history"

    def __init__(self, cells: Sequence[CellExecution], *, run: Run | None = None,
                 total: int | None = None) -> None:
        self.cells = list(cells)
        self.run = run
        self.total = total

    def text(self) -> str:
        return history_text(self.cells, run=self.run, total=self.total)

    def html(self) -> str:
        return history_html(self.cells, run=self.run, total=self.total)


# -- lineage ------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Layers of node ids (virtual ``\\x00``-prefixed ids stand for long edges passing through),
    the DAG edges kept, and the chain of virtual ids each long edge passes through."""

    layers: list[list[str]]
    edges: list[tuple[str, str]]
    chains: dict[tuple[str, str], list[str]]


def _is_virtual(node_id: str) -> bool:
    return node_id.startswith("\x00")


def _layout(graph: LineageGraph) -> _Layout:
    ids = [n.id for n in graph.nodes]
    known = set(ids)
    for e in graph.edges:
        for nid in (e.source, e.target):
            if nid not in known:
                known.add(nid)
                ids.append(nid)
    index = {nid: i for i, nid in enumerate(ids)}
    succ: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        if e.source != e.target and e.target not in succ[e.source]:
            succ[e.source].append(e.target)
    # break cycles: drop the edges that lead back to a node on the DFS stack
    dag: dict[str, list[str]] = defaultdict(list)
    state: dict[str, int] = {}
    for start in ids:
        if start in state:
            continue
        state[start] = 1
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack[-1]
            kids = succ.get(node, [])
            if i == len(kids):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            child = kids[i]
            if state.get(child) == 1:
                continue
            dag[node].append(child)
            if child not in state:
                state[child] = 1
                stack.append((child, 0))
    pred: dict[str, list[str]] = defaultdict(list)
    for u, vs in dag.items():
        for v in vs:
            pred[v].append(u)
    # longest path from the sources, in topological order
    indeg = {nid: len(pred[nid]) for nid in ids}
    queue = deque(nid for nid in ids if indeg[nid] == 0)
    layer = dict.fromkeys(ids, 0)
    while queue:
        node = queue.popleft()
        for v in dag.get(node, []):
            layer[v] = max(layer[v], layer[node] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    for node in ids:  # pull each source next to its first consumer
        if not pred[node] and dag.get(node):
            layer[node] = max(0, min(layer[v] for v in dag[node]) - 1)
    depth = max(layer.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for nid in ids:
        layers[layer[nid]].append(nid)
    # long edges pass through one virtual node per layer they cross
    before: dict[str, list[str]] = defaultdict(list)
    after: dict[str, list[str]] = defaultdict(list)
    chains: dict[tuple[str, str], list[str]] = {}
    edges = [(u, v) for u in ids for v in dag.get(u, [])]
    for u, v in edges:
        chain = [f"\x00{u}>{v}#{k}" for k in range(layer[u] + 1, layer[v])]
        for k, vid in zip(range(layer[u] + 1, layer[v]), chain, strict=True):
            layers[k].append(vid)
            index[vid] = len(index)
        chains[(u, v)] = chain
        path = [u, *chain, v]
        for a, b in zip(path, path[1:], strict=False):
            after[a].append(b)
            before[b].append(a)
    # order within layers by the mean position of neighbours (barycentre sweeps)
    for _ in range(4):
        for i in range(1, depth):
            _order_layer(layers[i], layers[i - 1], before, index)
        for i in range(depth - 2, -1, -1):
            _order_layer(layers[i], layers[i + 1], after, index)
    return _Layout(layers, edges, chains)


def lineage_layers(graph: LineageGraph) -> list[list[str]]:
    """Node ids in layers, left to right: every edge points to a later layer (cycles broken).

    Longest-path layering from the sources; a source is then pulled right next to its first
    consumer so an input file sits beside the cell that reads it. Within a layer nodes are
    ordered by the mean position of their neighbours (a few barycentre sweeps, with long edges
    represented in every layer they cross) to keep edges from crossing.
    """
    return [[n for n in layer if not _is_virtual(n)] for layer in _layout(graph).layers]


def _order_layer(nodes: list[str], fixed: list[str], neighbours: Mapping[str, list[str]],
                 index: Mapping[str, int]) -> None:
    pos = {nid: i for i, nid in enumerate(fixed)}
    current = {nid: i for i, nid in enumerate(nodes)}

    def key(nid: str) -> tuple[float, int]:
        near = [pos[n] for n in neighbours.get(nid, []) if n in pos]
        return (sum(near) / len(near) if near else float(current[nid]), index[nid])

    nodes.sort(key=key)


#: (fill, stroke, caption) per node type; artifacts by kind.
NODE_STYLES: dict[str, tuple[str, str, str]] = {
    "dataset": ("#dbeafe", "#2563eb", "dataset"),
    "model": ("#ede9fe", "#7c3aed", "model file"),
    "file": ("#e0f2fe", "#0284c7", "file"),
    "cell": ("#fef3c7", "#d97706", "cell"),
    "estimator": ("#dcfce7", "#16a34a", "fitted model"),
    "variable": ("#fce7f3", "#db2777", "variable"),
    "other": ("#f3f4f6", "#6b7280", "node"),
}


def _node_style_key(node: LineageNode | None) -> str:
    if node is None:
        return "other"
    if node.type == "artifact":
        kind = str((node.attrs or {}).get("kind") or "file")
        return kind if kind in ("dataset", "model") else "file"
    return node.type if node.type in NODE_STYLES else "other"


def _node_lines(node: LineageNode | None, node_id: str) -> tuple[str, str]:
    """(caption, main line) drawn in a node's box."""
    if node is None:
        return ("", node_id)
    attrs = node.attrs or {}
    caption = NODE_STYLES[_node_style_key(node)][2]
    if node.type == "artifact":
        size = attrs.get("size")
        return (f"{caption} · {format_size(size)}" if size is not None else caption, node.label)
    if node.type == "cell" and "source" in attrs:
        count = attrs.get("execution_count")
        count = attrs.get("seq") if count is None else count
        caption = f"cell [{_value(count)}] · {attrs.get('run_name') or ''}".rstrip(" ·")
        if attrs.get("status") not in (None, "ok"):
            caption += f" · {attrs['status']}"
        return (caption, _first_line(str(attrs["source"])))
    return (caption, node.label)


def _node_tooltip(node: LineageNode | None, node_id: str) -> str:
    if node is None:
        return node_id
    attrs = node.attrs or {}
    lines = [node.label, node_id]
    if node.type == "artifact" and attrs.get("uri"):
        lines.append(str(attrs["uri"]))
    if node.type == "cell" and attrs.get("source"):
        lines.append(str(attrs["source"])[:800])
    if node.type == "estimator" and attrs.get("params"):
        lines.append(", ".join(f"{k}={v}" for k, v in sorted(attrs["params"].items()))[:800])
    return "\n".join(lines)


_BOX_H, _VIRTUAL_H, _V_GAP, _H_GAP, _PAD, _CHAR_W = 42, 6, 16, 96, 12, 7.0
_LABEL_CHAR_W = 5.6


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    """A cubic segment leaving and entering horizontally."""
    dx = (x2 - x1) / 2
    return f" C{x1 + dx:.1f},{y1:.1f} {x2 - dx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def lineage_svg(graph: LineageGraph, *, max_nodes: int = 300) -> str:
    """The graph drawn left to right: rounded boxes coloured by type, arrows along the edges."""
    nodes = {n.id: n for n in graph.nodes}
    graph = _trim(graph, max_nodes)
    layout = _layout(graph)
    widths: list[float] = []
    lines: dict[str, tuple[str, str]] = {}
    for layer in layout.layers:
        w = 120.0
        for nid in layer:
            if _is_virtual(nid):
                continue
            cap, main = _node_lines(nodes.get(nid), nid)
            lines[nid] = (truncate(cap, 40), truncate(main, 36))
            w = max(w, _CHAR_W * max(len(lines[nid][0]) * 0.85, len(lines[nid][1])) + 20)
        widths.append(min(w, 290.0))

    def slot(nid: str) -> float:
        return (_VIRTUAL_H + _V_GAP / 2) if _is_virtual(nid) else (_BOX_H + _V_GAP)

    columns = [sum(slot(n) for n in layer) - _V_GAP for layer in layout.layers]
    height = _PAD * 2 + max(columns, default=0)
    boxes: dict[str, tuple[float, float, float]] = {}  # id -> (x, y of the middle, width)
    x = float(_PAD)
    for layer, w, column_h in zip(layout.layers, widths, columns, strict=True):
        y = _PAD + (height - 2 * _PAD - column_h) / 2
        for nid in layer:
            h = _VIRTUAL_H if _is_virtual(nid) else _BOX_H
            boxes[nid] = (x, y + h / 2, w)
            y += slot(nid)
        x += w + _H_GAP
    width = x - _H_GAP + _PAD
    uid = hashlib.sha1(repr((graph.root, sorted(boxes))).encode()).hexdigest()[:10]
    marker = f"nbmlops-arrow-{uid}"

    # edges (several variables passed between the same two cells become one labelled edge)
    labels: dict[tuple[str, str], list[str]] = {}
    for e in graph.edges:
        if e.source in boxes and e.target in boxes and e.source != e.target:
            names = labels.setdefault((e.source, e.target), [])
            if e.label not in ("wrote", "read", "fitted", "defined", "used") and e.label not in names:
                names.append(e.label)
    edge_parts: list[str] = []
    for (src, dst), names in labels.items():
        sx, sy, sw = boxes[src]
        tx, ty, _ = boxes[dst]
        x1, x2 = sx + sw, tx - 2
        chain = layout.chains.get((src, dst))
        if chain is None:  # a cycle's back edge: loop below both boxes
            low = max(sy, ty) + _BOX_H / 2 + _V_GAP / 2
            path = f"M{x1:.1f},{sy:.1f} C{x1 + 40:.1f},{low:.1f} {x2 - 40:.1f},{low:.1f} {x2:.1f},{ty:.1f}"
            label_at, room = ((x1 + x2) / 2, low - 4), 200.0
        else:
            path = f"M{x1:.1f},{sy:.1f}"
            cx, cy = x1, sy
            for vid in chain:
                vx, vy, vw = boxes[vid]
                path += _curve(cx, cy, vx, vy) + f" L{vx + vw:.1f},{vy:.1f}"
                cx, cy = vx + vw, vy
            path += _curve(cx, cy, x2, ty)
            if chain:  # label the straight stretch through the middle layer crossed
                vx, vy, vw = boxes[chain[len(chain) // 2]]
                label_at, room = (vx + vw / 2, vy - 4), vw
            else:
                label_at, room = ((x1 + x2) / 2, (sy + ty) / 2 - 5), x2 - x1 - 8
        hover = f"{_short_label(nodes.get(src), src)} → {_short_label(nodes.get(dst), dst)}"
        if names:
            hover += f": {', '.join(names)}"
        edge_parts.append(f'<path d="{path}" fill="none" stroke="currentColor" stroke-opacity="0.45" '
                          f'stroke-width="1.3" marker-end="url(#{marker})"><title>{esc(hover)}</title></path>')
        if names:
            edge_parts.append(
                f'<text x="{label_at[0]:.1f}" y="{label_at[1]:.1f}" text-anchor="middle" font-size="10" '
                f'fill="currentColor" fill-opacity="0.8" paint-order="stroke" '
                f'stroke="var(--jp-layout-color0, #fff)" stroke-width="3">{esc(truncate(", ".join(names), max(int(room / _LABEL_CHAR_W), 4)))}'
                f"<title>{esc(hover)}</title></text>"
            )

    node_parts: list[str] = []
    bold = ' font-weight="600"'
    for nid, (bx, mid, bw) in boxes.items():
        if _is_virtual(nid):
            continue
        by = mid - _BOX_H / 2
        node = nodes.get(nid)
        fill, stroke, _ = NODE_STYLES[_node_style_key(node)]
        cap, main = lines[nid]
        root = nid == graph.root
        node_parts.append(
            f'<g class="nbmlops-node" data-id="{esc(nid)}" data-type="{esc(node.type if node else "")}">'
            f"<title>{esc(_node_tooltip(node, nid))}</title>"
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{_BOX_H}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{2.5 if root else 1.2}"/>'
            f'<text x="{bx + 10:.1f}" y="{by + 15:.1f}" font-size="10" fill="{stroke}">{esc(cap)}</text>'
            f'<text x="{bx + 10:.1f}" y="{by + 32:.1f}" font-size="12" fill="#111827"'
            f'{bold if root else ""} font-family="{_svg_font(node)}">{esc(main)}</text>'
            "</g>"
        )
    defs = (f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="currentColor" fill-opacity="0.6"/></marker></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" role="img" '
            f'aria-label="lineage graph">{defs}{"".join(edge_parts)}{"".join(node_parts)}</svg>')


def _short_label(node: LineageNode | None, node_id: str) -> str:
    return truncate(node.label, 40) if node is not None else node_id


def _svg_font(node: LineageNode | None) -> str:
    return "monospace" if node is not None and node.type == "cell" else "sans-serif"


def _trim(graph: LineageGraph, max_nodes: int) -> LineageGraph:
    """At most ``max_nodes`` nodes, the nearest to the root first (breadth-first)."""
    if len(graph.nodes) <= max_nodes:
        return graph
    from ..store.entities import LineageGraph as Graph

    near: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        near[e.source].append(e.target)
        near[e.target].append(e.source)
    keep = [graph.root]
    seen = {graph.root}
    i = 0
    while i < len(keep) and len(keep) < max_nodes:
        for n in near.get(keep[i], []):
            if n not in seen and len(keep) < max_nodes:
                seen.add(n)
                keep.append(n)
        i += 1
    return Graph(root=graph.root, nodes=[n for n in graph.nodes if n.id in seen],
                 edges=[e for e in graph.edges if e.source in seen and e.target in seen])


def _legend(graph: LineageGraph) -> Markup:
    present = []
    for n in graph.nodes:
        key = _node_style_key(n)
        if key not in present:
            present.append(key)
    items = []
    for key in NODE_STYLES:
        if key in present:
            fill, stroke, caption = NODE_STYLES[key]
            swatch = tag("span", "", style=f"display:inline-block;width:12px;height:12px;border-radius:3px;"
                         f"background:{fill};border:1px solid {stroke};vertical-align:-2px;margin-right:4px")
            items.append(tag("span", join([swatch, caption]), style="margin-right:14px"))
    return tag("div", join(items), style=f"font-size:11px;color:{MUTED};margin-bottom:6px")


def lineage_html(graph: LineageGraph, *, direction: str = "upstream", max_nodes: int = 300) -> str:
    root = next((n for n in graph.nodes if n.id == graph.root), None)
    name = root.label if root is not None else graph.root
    note = f"{direction} · {len(graph.nodes)} nodes, {len(graph.edges)} edges"
    if len(graph.nodes) > max_nodes:
        note += f" (drawing the {max_nodes} nearest)"
    svg = Markup(lineage_svg(graph, max_nodes=max_nodes))
    return _wrap("lineage", join([_title(f"Lineage of {truncate(name, 60)}", note), _legend(graph), svg]))


class LineageView(View):
    kind = "lineage"

    def __init__(self, graph: LineageGraph, *, direction: str = "upstream") -> None:
        self.graph = graph
        self.direction = direction

    def text(self) -> str:
        return lineage_tree(self.graph, direction=self.direction)

    def html(self) -> str:
        return lineage_html(self.graph, direction=self.direction)
