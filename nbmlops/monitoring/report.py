"""A monitoring report as plain text and as self-contained HTML (inline SVG histograms of the
reference vs the current traffic per feature; every value escaped; no script, no external file).

Pure functions over ``MonitorReport.to_dict()``, so the CLI, the widget and the panel draw the
same thing from a live report or a recorded one.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

__all__ = ["render_text", "render_html", "histogram_svg"]

_REF = "#9aa5b1"
_CUR = "#2f6fdf"
_BAD = "#d64545"


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _target(r: dict[str, Any]) -> str:
    return f"{r['model']}@{r['alias']}" if r.get("alias") else f"{r['model']}/{r['version']}"


def _verdict(r: dict[str, Any]) -> str:
    if not r.get("judged", True):
        return "NOT JUDGED"
    return "DRIFTED" if r.get("drifted") else "no drift"


# -- text ----------------------------------------------------------------------------------------


def render_text(r: dict[str, Any]) -> str:
    lines = [
        f"{_target(r)} (version {r['version']}): {_verdict(r)} "
        f"(score {_num(r.get('score'))}, threshold {_num(r.get('threshold'), 2)})",
        f"  window {r.get('window') or 'all'}: {r.get('rows')} rows, {r.get('labeled_rows')} "
        f"labeled, {_when(r.get('since'))} .. {_when(r.get('until'))}",
        f"  reference: {(r.get('reference') or {}).get('uri')} "
        f"({(r.get('reference') or {}).get('rows')} rows)",
    ]
    feats = r.get("features") or []
    if feats:
        width = max(len("feature"), *(len(str(f["name"])) for f in feats))
        lines.append(f"  {'feature':<{width}}  {'kind':<11}  {'psi':>7}  {'noise':>7}  drifted")
        for f in sorted(feats, key=lambda f: -(f.get("beyond_noise") or 0.0)):
            lines.append(f"  {str(f['name']):<{width}}  {str(f.get('kind')):<11}  "
                         f"{_num(f.get('psi')):>7}  {_num(f.get('noise')):>7}  "
                         f"{'yes' if f.get('drifted') else 'no'}")
    p = r.get("prediction")
    if p:
        lines.append(f"  prediction: psi {_num(p.get('psi'))} (noise {_num(p.get('noise'))})"
                     f"{' DRIFTED' if p.get('drifted') else ''}")
    perf = r.get("performance")
    if perf:
        lines.append("  performance: " + ", ".join(f"{k} {_num(v, 4)}" for k, v in perf.items()))
    by_alias = r.get("by_alias") or {}
    if by_alias:
        lines.append("  by alias:")
        for name, a in by_alias.items():
            acc = f", accuracy {_num(a.get('accuracy'), 4)}" if a.get("accuracy") is not None else ""
            lines.append(f"    {name}: {a.get('rows')} rows, {a.get('requests')} requests, "
                         f"p50 {_num(a.get('p50_ms'), 2)} ms, p99 {_num(a.get('p99_ms'), 2)} ms"
                         f"{acc}")
    for v in r.get("violations") or []:
        lines.append(f"  ! {v.get('column')}: {v.get('check')}: expected {v.get('expected')}, "
                     f"observed {v.get('observed')}")
    for note in r.get("notes") or []:
        lines.append(f"  note: {note}")
    if r.get("id") is not None:
        lines.append(f"  recorded as monitor result {r['id']}")
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------


def _bin_labels(f: dict[str, Any]) -> list[str]:
    if f.get("categories") is not None:
        return [str(c) for c in f["categories"]]
    edges = f.get("edges")
    if edges is None:
        return []
    if not edges:
        return ["all"]
    out = [f"<= {edges[0]:.4g}"]
    out += [f"({a:.4g}, {b:.4g}]" for a, b in zip(edges, edges[1:], strict=False)]
    out.append(f"> {edges[-1]:.4g}")
    return out


def histogram_svg(labels: list[str], expected: list[float], actual: list[float], *,
                  drifted: bool = False, width: int = 320, height: int = 110,
                  title: str = "") -> str:
    """Paired bars per bin: reference share (grey) and current share (blue, red when drifted).
    Bin names and shares are in ``<title>`` tooltips; everything escaped."""
    n = max(len(expected), len(actual), 1)
    top = max([*expected, *actual, 1e-9])
    pad_x, pad_top, pad_bottom = 4, 6, 14
    slot = (width - 2 * pad_x) / n
    bar = max(1.0, slot * 0.4)
    plot_h = height - pad_top - pad_bottom
    color = _BAD if drifted else _CUR
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{pad_x}" y1="{height - pad_bottom}" x2="{width - pad_x}" '
             f'y2="{height - pad_bottom}" stroke="#ccc"/>']
    for i in range(n):
        e = float(expected[i]) if i < len(expected) else 0.0
        a = float(actual[i]) if i < len(actual) else 0.0
        name = labels[i] if i < len(labels) else f"bin {i}"
        x = pad_x + i * slot + (slot - 2 * bar) / 2
        for j, (share, fill, who) in enumerate(((e, _REF, "reference"), (a, color, "current"))):
            h = plot_h * share / top
            y = height - pad_bottom - h
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{fill}"><title>{escape(name)}: {who} {share:.1%}</title></rect>')
    if labels:
        parts.append(f'<text x="{pad_x}" y="{height - 2}" font-size="9" fill="#666">'
                     f"{escape(labels[0][:24])}</text>")
        parts.append(f'<text x="{width - pad_x}" y="{height - 2}" font-size="9" fill="#666" '
                     f'text-anchor="end">{escape(labels[-1][:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
.nbmlops-monitor{font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;color:#222}
.nbmlops-monitor h2{font-size:16px;margin:4px 0}
.nbmlops-monitor .verdict{font-weight:600;padding:1px 6px;border-radius:3px}
.nbmlops-monitor .drifted{background:#fde2e2;color:#a61b1b}
.nbmlops-monitor .ok{background:#e3f4e6;color:#1d6b2f}
.nbmlops-monitor table{border-collapse:collapse;margin:6px 0}
.nbmlops-monitor td,.nbmlops-monitor th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left}
.nbmlops-monitor .grid{display:flex;flex-wrap:wrap;gap:10px}
.nbmlops-monitor .card{border:1px solid #e5e5e5;border-radius:4px;padding:4px 6px}
.nbmlops-monitor .legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
"""


def _card(name: str, f: dict[str, Any]) -> str:
    labels = _bin_labels(f)
    expected = list(f.get("expected") or [])
    actual = list(f.get("actual") or [])
    flag = f' · <b style="color:{_BAD}">drifted</b>' if f.get("drifted") else ""
    head = (f"<div><b>{escape(name)}</b> <small>{escape(str(f.get('kind') or ''))} · PSI "
            f"{escape(_num(f.get('psi')))} (noise {escape(_num(f.get('noise')))}){flag}"
            "</small></div>")
    if not expected and not actual:
        return f'<div class="card">{head}<div><small>no histogram for this kind</small></div></div>'
    svg = histogram_svg(labels, expected, actual, drifted=bool(f.get("drifted")),
                        title=f"{name}: reference vs current")
    return f'<div class="card">{head}{svg}</div>'


def render_html(r: dict[str, Any], *, full: bool = True) -> str:
    """The report as HTML: a fragment for a notebook (``full=False``) or a whole page."""
    verdict = _verdict(r)
    cls = "drifted" if r.get("drifted") else "ok"
    ref = r.get("reference") or {}
    out = [f'<div class="nbmlops-monitor"><style>{_CSS}</style>',
           f"<h2>{escape(_target(r))} <small>version {escape(str(r.get('version')))}</small> "
           f'<span class="verdict {cls}">{escape(verdict)}</span></h2>',
           "<div>",
           f"score {escape(_num(r.get('score')))} (threshold {escape(_num(r.get('threshold'), 2))})"
           f" · window {escape(str(r.get('window') or 'all'))} · {escape(str(r.get('rows')))} rows"
           f" ({escape(str(r.get('labeled_rows')))} labeled) · "
           f"{escape(_when(r.get('since')))} – {escape(_when(r.get('until')))}",
           f"<br>reference: <code>{escape(str(ref.get('uri')))}</code> "
           f"({escape(str(ref.get('rows')))} rows)",
           "</div>",
           f'<div class="legend"><span style="background:{_REF}"></span>reference'
           f'<span style="background:{_CUR}"></span>current'
           f'<span style="background:{_BAD}"></span>current (drifted)</div>']
    feats = sorted(r.get("features") or [], key=lambda f: -(f.get("beyond_noise") or 0.0))
    out.append('<div class="grid">')
    out.extend(_card(str(f["name"]), f) for f in feats)
    p = r.get("prediction")
    if p:
        pf = {**p, "categories": p.get("labels")}
        out.append(_card("prediction", pf))
    out.append("</div>")
    perf = r.get("performance")
    if perf:
        out.append("<h3>Performance (labeled rows)</h3><table>" + "".join(
            f"<tr><th>{escape(str(k))}</th><td>{escape(_num(v, 4))}</td></tr>"
            for k, v in perf.items()) + "</table>")
    by_alias = r.get("by_alias") or {}
    if by_alias:
        out.append("<h3>By alias</h3><table><tr><th>alias</th><th>versions</th><th>rows</th>"
                   "<th>requests</th><th>p50 ms</th><th>p99 ms</th><th>accuracy</th></tr>")
        for name, a in by_alias.items():
            versions = ", ".join(str(v) for v in a.get("versions") or [])
            out.append(
                f"<tr><td>{escape(str(name))}</td><td>{escape(versions)}</td>"
                f"<td>{escape(str(a.get('rows')))}</td><td>{escape(str(a.get('requests')))}</td>"
                f"<td>{escape(_num(a.get('p50_ms'), 2))}</td>"
                f"<td>{escape(_num(a.get('p99_ms'), 2))}</td>"
                f"<td>{escape(_num(a.get('accuracy'), 4))}</td></tr>")
        out.append("</table>")
    violations = r.get("violations") or []
    if violations:
        out.append("<h3>Other findings</h3><ul>" + "".join(
            f"<li><b>{escape(str(v.get('column')))}</b> {escape(str(v.get('check')))}: expected "
            f"{escape(str(v.get('expected')))}, observed {escape(str(v.get('observed')))}</li>"
            for v in violations) + "</ul>")
    notes = r.get("notes") or []
    if notes:
        out.append("<ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    out.append("</div>")
    body = "".join(out)
    if not full:
        return body
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{escape(_target(r))}: monitoring</title></head><body>{body}</body></html>\n")
