"""Model cards from lineage alone: ``nbmlops card NAME@ALIAS -o card.md|card.html``.

Everything on a card comes from the store: the version (file digest, format, class, signature),
its lineage (the run's params, metrics, environment and git commit, the cells that built the
model with their sources, the datasets they read with fingerprints, schemas and row counts),
validations recorded on those runs, gate decisions and every alias change with its reason.
Nothing is typed in by hand, so a card cannot drift from what happened.

The HTML form is one self-contained file (inline CSS, no scripts, no external references) and
escapes every string that came from the store. Core: no UI imports.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["build_card", "card_for", "render_markdown", "render_html", "CARD_FORMATS"]

CARD_FORMATS = ("md", "html")
#: packages worth naming on a card (the whole list stays in the run's environment)
_KEY_PACKAGES = ("python", "scikit-learn", "pandas", "numpy", "scipy", "joblib", "skops",
                 "xgboost", "lightgbm", "torch", "nbmlops")


def _model_uri(ref: str) -> str:
    ref = ref.strip()
    if ref.startswith("models:/"):
        return ref
    if "@" in ref or "/" in ref:
        return f"models:/{ref}"
    raise InvalidArgumentError(
        f"{ref!r} names no version: use NAME@ALIAS (e.g. wine@champion) or NAME/VERSION"
    )


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rows(schema: Mapping[str, Any] | None) -> int | None:
    if not schema:
        return None
    for key in ("rows", "n_rows", "num_rows"):
        if isinstance(schema.get(key), int):
            return int(schema[key])
    shape = schema.get("shape")
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], int):
        return int(shape[0])
    return None


def _columns(schema: Mapping[str, Any] | None) -> dict[str, str]:
    if not schema:
        return {}
    cols = schema.get("columns") or schema.get("dtypes")
    if isinstance(cols, Mapping):
        return {str(k): str(v) for k, v in cols.items()}
    if isinstance(cols, list):
        out: dict[str, str] = {}
        for c in cols:
            if isinstance(c, Mapping) and "name" in c:
                out[str(c["name"])] = str(c.get("dtype", ""))
            else:
                out[str(c)] = ""
        return out
    return {}


def _packages(environment: Mapping[str, Any] | None) -> dict[str, str]:
    if not environment:
        return {}
    out: dict[str, str] = {}
    if environment.get("python"):
        out["python"] = str(environment["python"]).split()[0]
    pkgs = environment.get("packages") or {}
    if isinstance(pkgs, Mapping):
        lowered = {str(k).lower(): str(v) for k, v in pkgs.items()}
        for name in _KEY_PACKAGES:
            if name in lowered:
                out[name] = lowered[name]
    return out


def build_card(store: Store, ref: str) -> dict[str, Any]:
    """The card's content as plain data (what ``--json`` prints and both renderers use)."""
    from . import service

    uri = _model_uri(ref)
    version = service.resolve_model_uri(store, uri)
    lineage = service.version_lineage(store, version)
    events = service.model_history(store, version.model)
    run_ids: list[str] = []
    for cell in lineage.get("cells") or []:
        rid = cell.get("run_id")
        if rid and rid not in run_ids:
            run_ids.append(rid)
    if version.run_id and version.run_id not in run_ids:
        run_ids.append(version.run_id)
    validations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rid in run_ids:  # one row per distinct outcome (cached re-runs validate the same file)
        for v in store.validations.for_run(rid):
            key = json.dumps([v.data_label, v.reference_label, v.data_fingerprint, v.passed,
                              v.violations], sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                validations.append(v.to_dict())
    gates = [e.to_dict() for e in events if e.kind == "gate"
             and (e.to_version == version.version
                  or (e.details.get("candidate") or {}).get("version") == version.version)]
    alias_changes = [e.to_dict() for e in events
                     if e.kind in ("alias", "promote", "rollback", "unalias")]
    held_out: list[dict[str, Any]] = []
    for g in gates:
        d = g["details"]
        entry = {"uri": (d.get("data_file") or {}).get("uri"), "fingerprint": d.get("data_fingerprint"),
                 "rows": d.get("rows"), "metric": d.get("metric")}
        if d.get("data_fingerprint") and entry not in held_out:
            held_out.append(entry)
    held_uris = {h["uri"] for h in held_out if h["uri"]}
    datasets: list[dict[str, Any]] = []
    other_inputs: list[dict[str, Any]] = []
    for d in lineage.get("datasets") or []:
        row = {**d, "rows": _rows(d.get("schema")), "columns": _columns(d.get("schema")),
               "held_out": d.get("uri") in held_uris}
        (datasets if d.get("schema") else other_inputs).append(row)
    return {
        "title": f"{version.model} v{version.version}",
        "uri": version.uri,
        "requested": ref,
        "model": {
            "name": version.model, "version": version.version, "aliases": list(version.aliases),
            "class": version.model_class, "format": version.format, "digest": version.digest,
            "size": version.size, "created_at": version.created_at,
            "created_by": version.created_by, "signature": version.signature,
        },
        "run": lineage.get("run"),
        "params": lineage.get("params") or {},
        "metrics": lineage.get("metrics") or {},
        "training_data": datasets,
        "other_inputs": other_inputs,
        "validation_data": held_out,
        "validations": validations,
        "gates": gates,
        "cells": lineage.get("cells") or [],
        "environment": _packages(lineage.get("environment")),
        "git": {"commit": lineage.get("git_commit"), "dirty": lineage.get("git_dirty")},
        "alias_history": alias_changes,
    }


# -- Markdown -----------------------------------------------------------------------------------


def _md(text: Any) -> str:
    """A table cell or inline value: no line breaks, pipes escaped."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sections(card: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[Any]] | str]]:
    """(title, table head, rows) or (title, [], preformatted text) in card order."""
    m = card["model"]
    run = card.get("run") or {}
    sig = m.get("signature") or {}
    inputs = sig.get("inputs") or {}
    input_rows: list[list[Any]] = []
    if isinstance(inputs, Mapping):
        cols = inputs.get("columns", inputs)
        if isinstance(cols, Mapping):
            input_rows = [[k, v] for k, v in cols.items()]
        elif isinstance(cols, list):
            input_rows = [[c.get("name"), c.get("dtype")] if isinstance(c, Mapping) else [c, ""]
                          for c in cols]
    out: list[tuple[str, list[str], list[list[Any]] | str]] = [
        ("Model", ["field", "value"], [
            ["name", m["name"]], ["version", m["version"]],
            ["aliases", ", ".join(m.get("aliases") or []) or "-"],
            ["class", m.get("class") or "-"], ["format", m.get("format")],
            ["sha256", m.get("digest")], ["size (bytes)", m.get("size")],
            ["registered", f"{_time(m.get('created_at'))} by {m.get('created_by') or '?'}"],
            ["output", _fmt(sig.get("output")) if sig.get("output") else "-"],
        ]),
        ("Signature: inputs", ["column", "dtype"], input_rows),
        ("Run", ["field", "value"], [
            ["id", run.get("id")], ["name", run.get("name")], ["source", run.get("source")],
            ["status", run.get("status")], ["notebook", run.get("notebook_path")],
            ["notebook sha256", run.get("notebook_hash")],
            ["started", _time(run.get("start_time"))],
            ["git commit", (card["git"].get("commit") or "-")
             + (" (dirty)" if card["git"].get("dirty") else "")],
        ] if run else []),
        ("Data it was built from", ["path", "fingerprint", "rows", "columns"], [
            [d.get("uri") + (" (also the gate's held-out data)" if d.get("held_out") else ""),
             d.get("fingerprint"), d.get("rows") if d.get("rows") is not None else "?",
             ", ".join(f"{k}: {v}" if v else k for k, v in (d.get("columns") or {}).items()) or "-"]
            for d in card["training_data"]
        ]),
        ("Other inputs upstream (models, files)", ["path", "kind", "fingerprint", "size"], [
            [d.get("uri"), d.get("kind"), d.get("fingerprint"), d.get("size")]
            for d in card.get("other_inputs") or []
        ]),
        ("Held-out data (gate)", ["path", "rows fingerprint", "rows", "metric"], [
            [h.get("uri") or "(in memory)", h.get("fingerprint"), h.get("rows"), h.get("metric")]
            for h in card["validation_data"]
        ]),
        ("Parameters", ["name", "value"], [[k, _fmt(v)] for k, v in sorted(card["params"].items())]),
        ("Metrics", ["name", "value"], [[k, _fmt(v)] for k, v in sorted(card["metrics"].items())]),
        ("Data validations", ["data", "against", "result", "violations"], [
            [v.get("data_label"), v.get("reference_label"),
             "passed" if v.get("passed") else "FAILED",
             "; ".join(f"{x.get('column')}: {x.get('check')} (expected {_fmt(x.get('expected'))}, "
                       f"observed {_fmt(x.get('observed'))})" for x in v.get("violations") or [])
             or "-"]
            for v in card["validations"]
        ]),
        ("Gate decisions", ["when", "decision", "rule", "candidate", "champion", "data"], [
            [_time(g.get("created_at")), (g["details"].get("decision") or "").upper(),
             _rule_text(g["details"].get("rule") or {}),
             _score_text(g["details"].get("candidate"), g["details"].get("metric")),
             _score_text(g["details"].get("champion"), g["details"].get("metric")),
             f"{g['details'].get('rows')} rows {g['details'].get('data_fingerprint') or ''}"]
            for g in card["gates"]
        ]),
        ("Alias history", ["when", "change", "alias", "from", "to", "who", "reason"], [
            [_time(e.get("created_at")), e.get("kind"), e.get("alias"),
             f"v{e['from_version']}" if e.get("from_version") is not None else "-",
             f"v{e['to_version']}" if e.get("to_version") is not None else "-",
             f"{e.get('user') or '?'}@{e.get('host') or '?'}", e.get("reason") or "-"]
            for e in card["alias_history"]
        ]),
        ("Environment", ["package", "version"], [[k, v] for k, v in card["environment"].items()]),
    ]
    return out


def _rule_text(rule: Mapping[str, Any]) -> str:
    parts = [str(rule.get("metric", "?"))]
    if rule.get("min") is not None:
        parts.append(f">= {rule['min']}")
    if rule.get("max") is not None:
        parts.append(f"<= {rule['max']}")
    if rule.get("must_beat"):
        parts.append(f"beats {rule['must_beat']}" + (f" by {rule['by']}" if rule.get("by") else ""))
    return " ".join(parts)


def _score_text(side: Mapping[str, Any] | None, metric: str | None) -> str:
    if not side:
        return "-"
    score = side.get("score")
    return f"v{side.get('version')}: {score:.4f}" if isinstance(score, (int, float)) else f"v{side.get('version')}"


def _cells(card: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in card["cells"] if c.get("source") is not None]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as GitHub-flavoured Markdown."""
    lines = [f"# Model card: {_md(card['title'])}", "",
             f"`{card['uri']}` (asked for `{_md(card['requested'])}`). Generated by nbmlops "
             "from the lineage store; every value below was recorded, none typed in.", ""]
    for title, head, rows in _sections(card):
        lines += [f"## {title}", ""]
        if not rows:
            lines += ["_none recorded_", ""]
            continue
        lines += [*_md_table(head, rows), ""]  # type: ignore[arg-type]
    lines += ["## Cells that built it", ""]
    cells = _cells(card)
    if not cells:
        lines += ["_none recorded_", ""]
    for c in cells:
        fence = "```"
        while fence in str(c["source"]):
            fence += "`"
        lines += [f"Run `{str(c.get('run_id') or '')[:8]}` cell {c.get('seq')} "
                  f"[{c.get('execution_count') if c.get('execution_count') is not None else ' '}] "
                  f"({c.get('status')})", "", f"{fence}python", str(c["source"]).rstrip(), fence, ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:60em;
color:#1b1b1b;padding:0 1em}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top;
overflow-wrap:anywhere}th{background:#f5f5f5;white-space:nowrap}pre{background:#f7f7f7;padding:.6em;overflow:auto;
border:1px solid #e5e5e5}code{font-family:ui-monospace,Menlo,Consolas,monospace}
.passed,.PROMOTED{color:#2e7d32;font-weight:600}.FAILED,.REJECTED{color:#c62828;font-weight:600}
.none{color:#777;font-style:italic}
"""


def render_html(card: Mapping[str, Any]) -> str:
    """The card as one self-contained HTML page; every stored string is escaped."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='generator' content='nbmlops'>",
             f"<title>Model card: {escape(str(card['title']))}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Model card: {escape(str(card['title']))}</h1>",
             f"<p><code>{escape(str(card['uri']))}</code> (asked for "
             f"<code>{escape(str(card['requested']))}</code>). Generated by nbmlops from the "
             "lineage store; every value below was recorded, none typed in.</p>"]
    for title, head, rows in _sections(card):
        parts.append(f"<h2>{escape(title)}</h2>")
        if not rows:
            parts.append("<p class='none'>none recorded</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
        for row in rows:  # type: ignore[union-attr]
            tds = []
            for value in row:
                text = str(value if value is not None else "")
                cls = f" class='{text}'" if text in ("passed", "FAILED", "PROMOTED", "REJECTED") else ""
                tds.append(f"<td{cls}>{escape(text)}</td>")
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Cells that built it</h2>")
    cells = _cells(card)
    if not cells:
        parts.append("<p class='none'>none recorded</p>")
    for c in cells:
        parts.append(
            f"<p>Run <code>{escape(str(c.get('run_id') or '')[:8])}</code> cell "
            f"{escape(str(c.get('seq')))} ({escape(str(c.get('status')))})</p>"
            f"<pre><code>{escape(str(c['source']))}</code></pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def card_for(store: Store, ref: str, fmt: str) -> str:
    """``build_card`` then the renderer for ``fmt`` (``md`` or ``html``)."""
    if fmt not in CARD_FORMATS:
        raise InvalidArgumentError(f"card format must be md or html, not {fmt!r}")
    card = build_card(store, ref)
    return render_html(card) if fmt == "html" else render_markdown(card)
