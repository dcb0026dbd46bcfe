"""The JSON shapes of the REST API, built from store entities.

Field names here are the public contract documented in ``docs/server-api.md`` and mirrored by
``labextension/src/types.ts`` (a test checks that the three agree). Store entities never go
out as they are: each response is built field by field, so a store change cannot silently
change the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..store.entities import (
    Artifact,
    CellExecution,
    Comparison,
    Estimator,
    LineageGraph,
    MetricValue,
    Run,
)

__all__ = [
    "API_VERSION",
    "artifact_view",
    "cell_view",
    "comparison_view",
    "lineage_view",
    "run_detail",
    "run_summary",
]

#: Bumped when a field changes meaning or disappears (adding fields keeps the version).
API_VERSION = 1

#: Turns an absolute path into a path relative to the server root (``None`` outside it).
RootPath = Callable[[str | None], "str | None"]



def run_summary(run: Run, root_path: RootPath) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "experiment": run.experiment,
        "source": run.source,
        "status": run.status,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "duration": run.duration,
        "notebook_path": run.notebook_path,
        "notebook": root_path(run.notebook_path),
        "parent_run_id": run.parent_run_id,
        "cell_count": run.cell_count,
        "params": dict(run.params),
        "metrics": dict(run.metrics),
        "tags": dict(run.tags),
    }


def run_detail(run: Run, root_path: RootPath) -> dict[str, Any]:
    out = run_summary(run, root_path)
    env = dict(run.environment or {})
    out.update({
        "notebook_hash": run.notebook_hash,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "environment": env,
    })
    return out


def artifact_view(art: Artifact, root_path: RootPath) -> dict[str, Any]:
    return {
        "id": art.id,
        "uri": art.uri,
        "path": root_path(art.uri),
        "kind": art.kind,
        "fingerprint": art.fingerprint,
        "size": art.size,
        "schema": art.schema,
    }


def _metric_view(m: MetricValue) -> dict[str, Any]:
    return {"key": m.key, "value": m.value, "step": m.step}


def _model_view(e: Estimator) -> dict[str, Any]:
    return {"variable": e.variable, "class_name": e.class_name, "params": dict(e.params),
            "fitted_on": list(e.fitted_on)}


def cell_view(
    cell: CellExecution, root_path: RootPath, marks: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    marks = marks or {}
    return {
        "seq": cell.seq,
        "cell_id": cell.cell_id,
        "execution_count": cell.execution_count,
        "status": cell.status,
        "start_time": cell.start_time,
        "duration": cell.duration,
        "source": cell.source,
        "error_name": cell.error_name,
        "error_value": cell.error_value,
        "vars_defined": list(cell.vars_defined),
        "vars_used": list(cell.vars_used),
        "params": dict(cell.params),
        "metrics": [_metric_view(m) for m in cell.metrics],
        "reads": [artifact_view(a, root_path) for a in cell.reads],
        "writes": [artifact_view(a, root_path) for a in cell.writes],
        "models": [_model_view(e) for e in cell.estimators],
        "stale": [dict(r, path=root_path(r.get("uri"))) for r in marks.get("stale", [])],
        "superseded_by": marks.get("superseded_by"),
    }


def lineage_view(graph: LineageGraph, root_path: RootPath) -> dict[str, Any]:
    nodes = []
    for n in graph.nodes:
        attrs = dict(n.attrs)
        if n.type == "artifact":
            attrs["path"] = root_path(attrs.get("uri"))
        nodes.append({"id": n.id, "type": n.type, "label": n.label, "attrs": attrs})
    return {
        "root": graph.root,
        "nodes": nodes,
        "edges": [{"source": e.source, "target": e.target, "label": e.label} for e in graph.edges],
    }


def comparison_view(cmp: Comparison, root_path: RootPath) -> dict[str, Any]:
    return {
        "runs": [run_summary(r, root_path) for r in cmp.runs],
        "params": {k: list(v) for k, v in cmp.params.items()},
        "params_differ": list(cmp.params_differ),
        "metrics": {k: list(v) for k, v in cmp.metrics.items()},
    }
