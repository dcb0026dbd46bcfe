"""The JSON shapes of the REST API, built from store entities.

Field names here are the public contract documented in ``docs/server-api.md`` and mirrored by
``labextension/src/types.ts`` (a test checks that the three agree). Store entities never go
out as they are: each response is built field by field, so a store change cannot silently
change the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..store.entities import (
    Artifact,
    CellExecution,
    Comparison,
    Estimator,
    LineageGraph,
    MetricValue,
    Run,
    Validation,
)

if TYPE_CHECKING:
    from .launcher import Launch
    from .pipelines import Definition, StepStatus

__all__ = [
    "API_VERSION",
    "artifact_view",
    "cell_view",
    "comparison_view",
    "launcher_view",
    "lineage_view",
    "pipeline_run_ref",
    "pipeline_step_status",
    "pipeline_view",
    "run_detail",
    "run_summary",
    "step_error",
    "validation_view",
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


#: violations listed per validation (the count is always exact)
MAX_VIOLATIONS = 100


def validation_view(v: Validation) -> dict[str, Any]:
    violations = [
        {"column": x.get("column"), "check": x.get("check"), "expected": x.get("expected"),
         "observed": x.get("observed")}
        for x in v.violations[:MAX_VIOLATIONS] if isinstance(x, Mapping)
    ]
    return {
        "id": v.id,
        "data_label": v.data_label,
        "reference_label": v.reference_label,
        "passed": v.passed,
        "rows": v.rows,
        "violation_count": len(v.violations),
        "violations": violations,
        "summary": dict(v.summary),
        "created_at": v.created_at,
    }


def cell_view(
    cell: CellExecution,
    root_path: RootPath,
    marks: Mapping[str, Any] | None = None,
    validations: Sequence[Validation] = (),
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
        "validations": [validation_view(v) for v in validations],
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


# -- pipelines ---------------------------------------------------------------------------------


def pipeline_run_ref(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"id": run.id, "status": run.status, "start_time": run.start_time,
            "end_time": run.end_time}


def pipeline_view(
    path: str,
    kind: str,
    root_path: RootPath,
    *,
    name: str,
    definition: Definition | None,
    error: str | None,
    latest: Run | None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    if definition is not None:
        for step in definition.pipeline.steps.values():
            steps.append({
                "name": step.name,
                "notebook": root_path(str(step.notebook)),
                "depends_on": list(step.depends_on),
                "level": definition.levels.get(step.name, 0),
            })
        params = [{"name": p.name, "default": p.default, "type": p.type, "source": p.source,
                   "help": p.help, "steps": list(p.steps)} for p in definition.params]
    return {
        "name": name,
        "path": path,
        "kind": kind,
        "ok": definition is not None,
        "error": error,
        "steps": steps,
        "params": params,
        "latest_run": pipeline_run_ref(latest),
    }


def step_error(cell: CellExecution) -> dict[str, Any]:
    return {"error_name": cell.error_name, "error_value": cell.error_value, "seq": cell.seq,
            "cell_id": cell.cell_id, "execution_count": cell.execution_count}


def pipeline_step_status(step: StepStatus, root_path: RootPath) -> dict[str, Any]:
    latest = step.latest
    first = step.runs[0] if step.runs else None
    return {
        "name": step.name,
        "notebook": root_path(step.notebook),
        "depends_on": list(step.depends_on),
        "level": step.level,
        "state": step.state,
        "attempts": step.attempts,
        "run_id": latest.id if latest is not None else None,
        "run_ids": [r.id for r in step.runs],
        "start_time": first.start_time if first is not None else None,
        "end_time": latest.end_time if latest is not None else None,
        "duration": latest.duration if latest is not None else None,
        "cached_from": step.cached_from,
        "error": step.error,
    }


def launcher_view(launch: Launch | None, root_path: RootPath,
                  log_tail: Sequence[str] | None) -> dict[str, Any] | None:
    if launch is None:
        return None
    return {
        "running": launch.running,
        "exit_code": launch.exit_code,
        "started": launch.started,
        "ended": launch.ended,
        "cancel_requested": launch.cancel_requested,
        "log": root_path(str(launch.log_path)),
        "log_tail": list(log_tail) if log_tail is not None else None,
    }
