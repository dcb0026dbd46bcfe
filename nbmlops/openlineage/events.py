"""OpenLineage RunEvents built from what the store recorded (openlineage-python's typed model).

Imported only on the emitter's thread, when emission is on. One job per notebook run
(``<notebook>``, jobType NOTEBOOK), per cell execution (``<notebook>.cell-<seq>``, CELL), per
pipeline run (``<pipeline>``, PIPELINE) and per pipeline step (``<pipeline>.<step>``, STEP);
``parent`` facets link cell -> run -> step -> pipeline, ``root`` names the outermost run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    source_code_job,
    source_code_location_job,
)
from openlineage.client.generated.base import RunFacet

from .._version import __version__
from ..redact import redact_mapping
from .listener import CELL, Item, RunInfo, cell_job_name, cell_run_id

__all__ = ["PRODUCER", "FACET_SCHEMA_BASE", "build", "dataset_name"]

PRODUCER = f"https://pypi.org/project/nbmlops/{__version__}/"
#: where the JSON schemas of our custom facets live (shipped in ``nbmlops/openlineage/facets/``)
FACET_SCHEMA_BASE = "https://pypi.org/project/nbmlops/openlineage/facets/1-0-0"
INTEGRATION = "NBMLOPS"

_END_STATE = {"finished": RunState.COMPLETE, "failed": RunState.FAIL,
              "cancelled": RunState.ABORT, "abandoned": RunState.FAIL}


@attr.define
class NbmlopsParamsRunFacet(RunFacet):
    """The run's (or cell's) parameters, as the store keeps them (secret-looking ones redacted)."""

    params: dict[str, str] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/NbmlopsParamsRunFacet.json#/$defs/NbmlopsParamsRunFacet"


@attr.define
class NbmlopsMetricsRunFacet(RunFacet):
    """The latest value of each metric the run (or cell) logged."""

    metrics: dict[str, float] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/NbmlopsMetricsRunFacet.json#/$defs/NbmlopsMetricsRunFacet"


@attr.define
class NbmlopsRunFacet(RunFacet):
    """Where the run is in nbmlops: its run id (``nbmlops runs show ID``), and for a cell its
    sequence number, cell id, execution count, duration and the variables it defined/used."""

    runId: str  # noqa: N815
    source: str | None = attr.field(default=None)
    seq: int | None = attr.field(default=None)
    cellId: str | None = attr.field(default=None)  # noqa: N815
    executionCount: int | None = attr.field(default=None)  # noqa: N815
    durationSeconds: float | None = attr.field(default=None)  # noqa: N815
    varsDefined: list[str] | None = attr.field(default=None)  # noqa: N815
    varsUsed: list[str] | None = attr.field(default=None)  # noqa: N815
    _additional_skip_redact: ClassVar[list[str]] = ["runId", "seq"]

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/NbmlopsRunFacet.json#/$defs/NbmlopsRunFacet"


def _time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file or URL following OpenLineage's naming conventions: a local
    path is ``("file", "/abs/path")``, ``s3://bucket/key`` is ``("s3://bucket", "key")``."""
    if "://" in uri:
        parts = urlsplit(uri)
        if parts.scheme == "file":
            return "file", parts.path
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
    if uri.startswith("models:/"):
        return "nbmlops", uri
    return "file", os.path.abspath(uri)


def _job_facets(info: RunInfo, job_type: str, source: str | None = None) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=INTEGRATION, jobType=job_type, producer=PRODUCER
        ),
    }
    if info.source_path:
        path = Path(info.source_path)
        facets["sourceCodeLocation"] = source_code_location_job.SourceCodeLocationJobFacet(
            type="git" if info.git_commit else "file",
            url=path.absolute().as_uri(),
            path=str(path), version=info.git_commit, producer=PRODUCER,
        )
    if source is not None:
        facets["sourceCode"] = source_code_job.SourceCodeJobFacet(
            language="python", sourceCode=source, producer=PRODUCER
        )
    return facets


def _parent_facets(info_parent: Any, root: Any, namespace: str) -> dict[str, Any]:
    if info_parent is None:
        return {}
    facet = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=info_parent.run_id),
        job=parent_run.Job(namespace=namespace, name=info_parent.job_name),
        root=None if root is None else parent_run.Root(
            run=parent_run.RootRun(runId=root.run_id),
            job=parent_run.RootJob(namespace=namespace, name=root.job_name),
        ),
        producer=PRODUCER,
    )
    return {"parent": facet}


def _event(state: RunState, ts: float, run_id: str, facets: dict[str, Any], namespace: str,
           job_name: str, job_facets: dict[str, Any], inputs: list[InputDataset] | None = None,
           outputs: list[OutputDataset] | None = None) -> RunEvent:
    return RunEvent(
        eventType=state, eventTime=_time(ts), producer=PRODUCER,
        run=Run(runId=run_id, facets=facets),
        job=Job(namespace=namespace, name=job_name, facets=job_facets),
        inputs=inputs or [], outputs=outputs or [],
    )


def _run_start(info: RunInfo, run: Any, namespace: str) -> list[RunEvent]:
    facets: dict[str, Any] = {
        **_parent_facets(info.parent, info.root, namespace),
        "nbmlops": NbmlopsRunFacet(runId=info.run_id, source=run.source, producer=PRODUCER),
    }
    if run.params:
        facets["nbmlops_params"] = NbmlopsParamsRunFacet(params=dict(run.params), producer=PRODUCER)
    return [_event(RunState.START, run.start_time, info.ol_id, facets, namespace, info.job_name,
                   _job_facets(info, info.job_type))]


def _run_end(info: RunInfo, status: str, end_time: float, run: Any, namespace: str) -> list[RunEvent]:
    if run is not None and run.git_commit and not info.git_commit:  # recorded after the start
        info = dataclasses.replace(info, git_commit=run.git_commit)
    facets: dict[str, Any] = {
        **_parent_facets(info.parent, info.root, namespace),
        "nbmlops": NbmlopsRunFacet(runId=info.run_id, producer=PRODUCER),
    }
    if run is not None and run.params:
        facets["nbmlops_params"] = NbmlopsParamsRunFacet(params=dict(run.params), producer=PRODUCER)
    if run is not None and run.metrics:
        facets["nbmlops_metrics"] = NbmlopsMetricsRunFacet(metrics=dict(run.metrics), producer=PRODUCER)
    if status in ("failed", "abandoned"):
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=f"run {status}", programmingLanguage="python", producer=PRODUCER
        )
    return [_event(_END_STATE.get(status, RunState.OTHER), end_time, info.ol_id, facets, namespace,
                   info.job_name, _job_facets(info, info.job_type))]


def _dataset_facets(io: Any) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if io.fingerprint and io.fingerprint not in ("url", "directory"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=io.fingerprint, producer=PRODUCER
        )
    columns = (io.schema or {}).get("columns")
    if columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c["name"], type=c.get("dtype"))
                    for c in columns],
            producer=PRODUCER,
        )
    return facets


def _datasets(ios: list[Any], final: bool) -> tuple[list[InputDataset], list[OutputDataset]]:
    inputs: dict[tuple[str, str], InputDataset] = {}
    outputs: dict[tuple[str, str], OutputDataset] = {}
    for io in ios:
        ns, name = dataset_name(io.uri)
        if io.direction == "read":
            inputs[(ns, name)] = InputDataset(namespace=ns, name=name, facets=_dataset_facets(io))
            continue
        out_facets: dict[str, Any] = {}
        shape = (io.schema or {}).get("shape")
        if final and shape:  # rows known: a DataFrame was written
            out_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=int(shape[0]), size=io.size, producer=PRODUCER
                )
            )
        outputs[(ns, name)] = OutputDataset(
            namespace=ns, name=name, facets=_dataset_facets(io), outputFacets=out_facets
        )
    return list(inputs.values()), list(outputs.values())


def _cell(info: RunInfo, rec: Any, namespace: str) -> list[RunEvent]:
    run_id = cell_run_id(info.run_id, rec.seq)
    job = cell_job_name(info.job_name, rec.seq)
    base: dict[str, Any] = {
        **_parent_facets(info.ref, info.root or info.ref, namespace),
        "nbmlops": NbmlopsRunFacet(
            runId=info.run_id, seq=rec.seq, cellId=rec.cell_id, executionCount=rec.execution_count,
            durationSeconds=rec.duration, varsDefined=list(rec.vars_defined) or None,
            varsUsed=list(rec.vars_used) or None, producer=PRODUCER,
        ),
    }
    if rec.params:
        base["nbmlops_params"] = NbmlopsParamsRunFacet(
            params=redact_mapping(rec.params), producer=PRODUCER  # as the store keeps them
        )
    job_facets = _job_facets(info, CELL, rec.source)
    ins, outs = _datasets(rec.io, final=False)
    start = _event(RunState.START, rec.start_time, run_id, base, namespace, job, job_facets, ins, outs)
    end_facets = dict(base)
    metrics = {m.key: float(m.value) for m in rec.metrics}
    if metrics:
        end_facets["nbmlops_metrics"] = NbmlopsMetricsRunFacet(metrics=metrics, producer=PRODUCER)
    ok = rec.status == "ok"
    if not ok:
        message = ": ".join(x for x in (rec.error_name, rec.error_value) if x) or "cell failed"
        end_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="python", producer=PRODUCER
        )
    ins, outs = _datasets(rec.io, final=True)
    end = _event(RunState.COMPLETE if ok else RunState.FAIL, rec.start_time + (rec.duration or 0.0),
                 run_id, end_facets, namespace, job, job_facets, ins, outs)
    return [start, end]


def build(item: Item, namespace: str) -> list[RunEvent]:
    """The events of one listener item, in the order they must be sent."""
    kind = item[0]
    if kind == "start":
        return _run_start(item[1], item[2], namespace)
    if kind == "end":
        return _run_end(item[1], item[2], item[3], item[4], namespace)
    if kind == "cells":
        info = item[1]
        return [ev for rec in item[2] for ev in _cell(info, rec, namespace)]
    raise ValueError(f"unknown lineage item {kind!r}")
