"""Drawings of a pipeline DAG: terminal text, Graphviz dot, Mermaid and a self-contained SVG.

Pure functions from a :class:`~nbmlops.pipeline.spec.Pipeline` (and optionally each step's
state) to a string: no I/O, no UI imports, so every face (CLI, magics, widgets, the lab panel)
can use them. ``states`` maps a step name to a word such as ``finished`` (or ``ran``),
``cached``, ``failed``, ``running``, ``pending``, ``skipped`` or ``cancelled`` (the runner's
``STEP_STATES``); steps missing from it, or with another word, are drawn plainly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from itertools import pairwise
from xml.sax.saxutils import escape, quoteattr

from .spec import Pipeline

__all__ = ["render_text", "render_dot", "render_mermaid", "render_svg", "STATE_COLOURS"]

#: state -> (fill, stroke) of a step's box; any other state is drawn like no state
STATE_COLOURS: dict[str, tuple[str, str]] = {
    "finished": ("#dcfce7", "#16a34a"),
    "ran": ("#dcfce7", "#16a34a"),  # the runner's word for finished
    "cached": ("#ccfbf1", "#0d9488"),
    "failed": ("#fee2e2", "#dc2626"),
    "running": ("#dbeafe", "#2563eb"),
    "pending": ("#f3f4f6", "#6b7280"),
    "skipped": ("#f9fafb", "#9ca3af"),
    "cancelled": ("#f9fafb", "#9ca3af"),
}
_PLAIN = ("#f8fafc", "#475569")
_DASHED_STATES = ("pending", "skipped", "cancelled")


def _dependents(pipeline: Pipeline) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in pipeline.steps}
    for dep, name in pipeline.edges():
        if dep in out:
            out[dep].append(name)
    return out


def _state(states: Mapping[str, str] | None, name: str) -> str | None:
    return states.get(name) if states else None


# -- text ----------------------------------------------------------------------------------------


def render_text(pipeline: Pipeline, states: Mapping[str, str] | None = None, *,
                ascii: bool = False) -> str:
    """The DAG for a terminal: steps level by level (each after everything it depends on),
    each followed by an arrow to every step that depends on it; a step waiting for several
    others lists them after ``◀──``. ``states[step]`` is shown as ``name [state]``.

    ::

        prepare [finished]
         ├──▶ train_a
         └──▶ train_b
        train_a [cached]
         └──▶ evaluate
        train_b [running]
         └──▶ evaluate
        evaluate  ◀── train_a, train_b
         └──▶ pick_best
        pick_best

    ``ascii=True`` draws with ``|-->``, ``` `--> `` and ``<--`` only.
    """
    if not pipeline.steps:
        return "(no steps)"
    tee, last, back = (" |--> ", " `--> ", "<--") if ascii else (" ├──▶ ", " └──▶ ", "◀──")
    dependents = _dependents(pipeline)
    lines: list[str] = []
    for level in pipeline.levels():
        for name in level:
            head = name
            state = _state(states, name)
            if state:
                head += f" [{state}]"
            deps = list(dict.fromkeys(pipeline.steps[name].depends_on))
            if len(deps) > 1:  # a join: say what it waits for
                head += f"  {back} {', '.join(deps)}"
            lines.append(head)
            kids = dependents[name]
            lines.extend((last if i == len(kids) - 1 else tee) + kid for i, kid in enumerate(kids))
    return "\n".join(lines)


# -- Graphviz dot ----------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n") + '"'


def render_dot(pipeline: Pipeline, states: Mapping[str, str] | None = None) -> str:
    """Graphviz ``digraph`` (left to right): one rounded box per step labelled with its name and
    notebook file, one edge per dependency (dependency -> dependent), filled by state if
    given."""
    lines = [
        f"digraph {_dot_quote(pipeline.name)} {{",
        '  graph [rankdir=LR, fontname="Helvetica"];',
        f'  node [shape=box, style="rounded,filled", fillcolor="{_PLAIN[0]}", '
        f'color="{_PLAIN[1]}", fontname="Helvetica"];',
        '  edge [color="#64748b"];',
    ]
    for name, step in pipeline.steps.items():
        state = _state(states, name)
        label = f"{name}\n{step.notebook.name}" + (f"\n[{state}]" if state else "")
        attrs = [f"label={_dot_quote(label)}"]
        if state:
            fill, stroke = STATE_COLOURS.get(state, _PLAIN)
            attrs += [f'fillcolor="{fill}"', f'color="{stroke}"']
            if state in _DASHED_STATES:
                attrs.append('style="rounded,filled,dashed"')
        lines.append(f"  {_dot_quote(name)} [{', '.join(attrs)}];")
    for dep, name in pipeline.edges():
        lines.append(f"  {_dot_quote(dep)} -> {_dot_quote(name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- Mermaid ---------------------------------------------------------------------------------------


def _mermaid_ids(names: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = "step_" + (re.sub(r"[^A-Za-z0-9_]", "_", name) or "_")
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate)
        ids[name] = candidate
    return ids


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for the characters that end it or
    that an HTML label would interpret)."""
    out = text.replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("&", "#amp;")):
        out = out.replace(char, code)
    return " ".join(out.split())


def render_mermaid(pipeline: Pipeline, states: Mapping[str, str] | None = None) -> str:
    """Mermaid ``flowchart TD``: node ids derived from step names (``step_<name>``, made safe and
    unique), labels ``name`` / notebook file (escaped), one ``-->`` per dependency; a
    ``classDef`` per state if ``states`` are given."""
    ids = _mermaid_ids(list(pipeline.steps))
    lines = ["flowchart TD"]
    for name, step in pipeline.steps.items():
        label = f"{_mermaid_text(name)}<br/><small>{_mermaid_text(step.notebook.name)}</small>"
        state = _state(states, name)
        if state:
            label += f"<br/>[{_mermaid_text(state)}]"
        lines.append(f'    {ids[name]}["{label}"]')
    for dep, name in pipeline.edges():
        if dep in ids:
            lines.append(f"    {ids[dep]} --> {ids[name]}")
    if states:
        used = [s for s in STATE_COLOURS if any(states.get(n) == s for n in pipeline.steps)]
        for state in used:
            fill, stroke = STATE_COLOURS[state]
            dash = ",stroke-dasharray:4 3" if state in _DASHED_STATES else ""
            lines.append(f"    classDef {state} fill:{fill},stroke:{stroke},color:#111827{dash}")
            members = [ids[n] for n in pipeline.steps if states.get(n) == state]
            lines.append(f"    class {','.join(members)} {state}")
    return "\n".join(lines) + "\n"


# -- SVG -------------------------------------------------------------------------------------------

_BOX_H = 44.0
_V_GAP = 18.0
_H_GAP = 56.0
_PAD = 12.0
_VIRTUAL_H = 8.0
_NAME_CHAR_W = 7.4  # 12px semibold sans-serif, an estimate
_SMALL_CHAR_W = 6.0  # 10px
_MIN_W, _MAX_W = 110.0, 260.0
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    """Escaped XML text content."""
    return escape(_INVALID_XML.sub("\ufffd", text))


def _xa(text: str) -> str:
    """An escaped, quoted XML attribute value."""
    return quoteattr(_INVALID_XML.sub("\ufffd", text))


def _clip(text: str, limit: int) -> str:
    limit = max(limit, 4)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _crossings(layers: list[list[str]], down: dict[str, list[str]]) -> int:
    total = 0
    for upper, lower in pairwise(layers):
        pos = {n: i for i, n in enumerate(lower)}
        edges = [(i, pos[v]) for i, u in enumerate(upper) for v in down.get(u, []) if v in pos]
        total += sum(1 for a, (i1, j1) in enumerate(edges) for i2, j2 in edges[a + 1:]
                     if (i1 - i2) * (j1 - j2) < 0)
    return total


def _order(layers: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]]
           ) -> list[list[str]]:
    """Fewer crossings: a few barycentre sweeps, keeping the best ordering seen."""

    def sweep(layer: list[str], neighbours: dict[str, list[str]], ref: list[str]) -> list[str]:
        pos = {n: i for i, n in enumerate(ref)}

        def key(item: tuple[int, str]) -> float:
            i, n = item
            near = [pos[m] for m in neighbours.get(n, []) if m in pos]
            return sum(near) / len(near) if near else float(i)

        return [n for _, n in sorted(enumerate(layer), key=lambda it: (key(it), it[0]))]

    best = [list(layer) for layer in layers]
    best_score = _crossings(best, down)
    current = [list(layer) for layer in layers]
    for _ in range(4):
        if best_score == 0:
            break
        for i in range(1, len(current)):
            current[i] = sweep(current[i], up, current[i - 1])
        for i in range(len(current) - 2, -1, -1):
            current[i] = sweep(current[i], down, current[i + 1])
        score = _crossings(current, down)
        if score < best_score:
            best, best_score = [list(layer) for layer in current], score
    return best


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    """A cubic segment leaving and entering horizontally."""
    dx = (x2 - x1) / 2
    return f" C{x1 + dx:.1f},{y1:.1f} {x2 - dx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def render_svg(pipeline: Pipeline, states: Mapping[str, str] | None = None) -> str:
    """A self-contained SVG of the DAG, left to right by :meth:`Pipeline.levels`: a rounded box
    per step (name, notebook file, state), coloured by state when given, and an arrow per
    dependency; edges that skip levels are routed between the boxes of the levels they cross.
    Every text is XML-escaped; hovering a box or an arrow shows details (``<title>``)."""
    if not pipeline.steps:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="160" height="40" '
                'viewBox="0 0 160 40" font-family="sans-serif" role="img" '
                'aria-label="empty pipeline"><text x="12" y="24" font-size="12" '
                'fill="#6b7280">(no steps)</text></svg>')
    levels = pipeline.levels()
    depth = {name: i for i, level in enumerate(levels) for name in level}
    layers = [list(level) for level in levels]
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    chains: dict[tuple[str, str], list[str]] = {}
    for dep, name in pipeline.edges():
        virtual = [f"\0{dep}\0{name}\0{d}" for d in range(depth[dep] + 1, depth[name])]
        for i, vid in enumerate(virtual):
            layers[depth[dep] + 1 + i].append(vid)
        chains[(dep, name)] = virtual
        for a, b in pairwise([dep, *virtual, name]):
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
    layers = _order(layers, up, down)

    # box texts and column widths
    texts: dict[str, tuple[str, str, str]] = {}
    widths: list[float] = []
    for layer in layers:
        w = _MIN_W
        for nid in layer:
            if nid.startswith("\0"):
                continue
            state = _state(states, nid) or ""
            notebook = pipeline.steps[nid].notebook.name
            need = max(len(nid) * _NAME_CHAR_W + (len(state) * _SMALL_CHAR_W + 10 if state else 0),
                       len(notebook) * _SMALL_CHAR_W) + 22
            w = max(w, min(need, _MAX_W))
        for nid in layer:
            if nid.startswith("\0"):
                continue
            state = _state(states, nid) or ""
            room = w - 22 - (len(state) * _SMALL_CHAR_W + 10 if state else 0)
            texts[nid] = (_clip(nid, int(room / _NAME_CHAR_W + 1e-6)),
                          _clip(pipeline.steps[nid].notebook.name,
                                int((w - 22) / _SMALL_CHAR_W + 1e-6)),
                          state)
        widths.append(w)

    def slot(nid: str) -> float:
        return (_VIRTUAL_H + _V_GAP / 2) if nid.startswith("\0") else (_BOX_H + _V_GAP)

    columns = [sum(slot(n) for n in layer) - (_V_GAP if layer else 0) for layer in layers]
    height = _PAD * 2 + max(columns)
    place: dict[str, tuple[float, float, float]] = {}  # id -> (left x, middle y, width)
    x = _PAD
    for layer, w, column_h in zip(layers, widths, columns, strict=True):
        y = _PAD + (height - 2 * _PAD - column_h) / 2
        for nid in layer:
            h = _VIRTUAL_H if nid.startswith("\0") else _BOX_H
            place[nid] = (x, y + h / 2, w)
            y += slot(nid)
        x += w + _H_GAP
    width = x - _H_GAP + _PAD
    digest = hashlib.sha1(repr((pipeline.name, pipeline.edges(), list(pipeline.steps),
                                sorted((states or {}).items()))).encode()).hexdigest()[:10]
    marker = f"nbmlops-pipeline-arrow-{digest}"

    parts: list[str] = []
    for (dep, name), virtual in chains.items():
        sx, sy, sw = place[dep]
        tx, ty, _ = place[name]
        path = f"M{sx + sw:.1f},{sy:.1f}"
        cx, cy = sx + sw, sy
        for vid in virtual:
            vx, vy, vw = place[vid]
            path += _curve(cx, cy, vx, vy) + f" L{vx + vw:.1f},{vy:.1f}"
            cx, cy = vx + vw, vy
        path += _curve(cx, cy, tx - 2, ty)
        parts.append(f'<path class="nbmlops-edge" d="{path}" fill="none" stroke="currentColor" '
                     f'stroke-opacity="0.5" stroke-width="1.4" marker-end="url(#{marker})">'
                     f"<title>{_x(f'{dep} → {name}')}</title></path>")

    for name, step in pipeline.steps.items():
        bx, mid, bw = place[name]
        by = mid - _BOX_H / 2
        label, notebook, state = texts[name]
        fill, stroke = STATE_COLOURS.get(state, _PLAIN) if state else _PLAIN
        dash = ' stroke-dasharray="4 3"' if state in _DASHED_STATES else ""
        tip = [f"{name}", f"notebook: {step.notebook}"]
        if step.depends_on:
            tip.append(f"after: {', '.join(dict.fromkeys(step.depends_on))}")
        if state:
            tip.append(f"state: {state}")
        parts.append(
            f'<g class="nbmlops-step" data-step={_xa(name)} data-state={_xa(state)}>'
            f"<title>{_x(chr(10).join(tip))}</title>"
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{_BOX_H:.0f}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.3"{dash}/>'
            f'<text x="{bx + 11:.1f}" y="{by + 18:.1f}" font-size="12" font-weight="600" '
            f'fill="#111827">{_x(label)}</text>'
            f'<text x="{bx + 11:.1f}" y="{by + 34:.1f}" font-size="10" fill="#4b5563" '
            f'font-family="monospace">{_x(notebook)}</text>'
        )
        if state:
            parts.append(f'<text x="{bx + bw - 9:.1f}" y="{by + 18:.1f}" font-size="10" '
                         f'text-anchor="end" fill="{stroke}">{_x(state)}</text>')
        parts.append("</g>")

    defs = (f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="currentColor" fill-opacity="0.6"/></marker></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" role="img" '
            f'aria-label={_xa(f"pipeline {pipeline.name}")}>'
            f"<title>{_x(f'pipeline {pipeline.name}')}</title>{defs}{''.join(parts)}</svg>")
