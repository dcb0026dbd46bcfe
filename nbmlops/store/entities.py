"""Plain, immutable records the store returns. ORM rows never leave the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "RUN_SOURCES",
    "RUN_STATUSES",
    "Run",
    "CellExecution",
    "Artifact",
    "ArtifactIO",
    "Estimator",
    "MetricValue",
    "CellRecord",
    "LineageNode",
    "LineageEdge",
    "LineageGraph",
    "RunPage",
    "Comparison",
    "Schedule",
    "ScheduleFire",
    "SchedulerLease",
    "Validation",
    "RegisteredModel",
    "ModelVersion",
    "ModelEvent",
    "MonitorResult",
]

RUN_SOURCES = ("interactive", "papermill", "pipeline", "schedule")
RUN_STATUSES = ("running", "finished", "failed", "cancelled", "abandoned")


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class MetricValue(_Record):
    key: str
    value: float
    step: int = 0
    timestamp: float = 0.0
    cell_seq: int | None = None


@dataclass(frozen=True)
class Run(_Record):
    id: str
    name: str
    experiment: str
    source: str
    status: str
    start_time: float
    end_time: float | None = None
    notebook_path: str | None = None
    notebook_hash: str | None = None
    parent_run_id: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    environment: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    #: Latest value of each metric.
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cell_count: int | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time


@dataclass(frozen=True)
class Artifact(_Record):
    id: int
    uri: str
    kind: str
    fingerprint: str
    size: int | None = None
    schema: dict[str, Any] | None = None
    stored_path: str | None = None


@dataclass(frozen=True)
class ArtifactIO(_Record):
    """One read or write of a file/dataset/model by a cell (as captured, before storage)."""

    uri: str
    direction: str  # "read" | "wrote"
    via: str
    kind: str = "file"  # dataset | model | file
    fingerprint: str = ""
    size: int | None = None
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Estimator(_Record):
    variable: str
    class_name: str
    params: dict[str, Any]
    fitted_on: list[str]
    cell_seq: int | None = None


@dataclass(frozen=True)
class CellExecution(_Record):
    id: int
    run_id: str
    seq: int
    cell_id: str | None
    execution_count: int | None
    source: str
    source_hash: str
    start_time: float
    duration: float
    status: str
    error_name: str | None
    error_value: str | None
    vars_defined: list[str]
    vars_used: list[str]
    reads: list[Artifact] = field(default_factory=list)
    writes: list[Artifact] = field(default_factory=list)
    estimators: list[Estimator] = field(default_factory=list)
    metrics: list[MetricValue] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class CellRecord(_Record):
    """Everything capture learned about one cell execution, written in one transaction."""

    seq: int
    source: str
    start_time: float
    duration: float
    status: str  # ok | error
    cell_id: str | None = None
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    vars_defined: list[str] = field(default_factory=list)
    vars_used: list[str] = field(default_factory=list)
    #: variable name -> seq of the earlier cell execution that defined it
    var_sources: dict[str, int] = field(default_factory=dict)
    #: used variables that hold code (modules, functions, classes), not data
    code_vars: list[str] = field(default_factory=list)
    io: list[ArtifactIO] = field(default_factory=list)
    estimators: list[Estimator] = field(default_factory=list)
    metrics: list[MetricValue] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: SHA-256 of the ORIGINAL source when ``source`` was redacted (a secret literal replaced by
    #: a marker); the store keys the cell's source by it, so caching and staleness still see the
    #: code that ran. None: the store hashes ``source`` itself.
    source_hash: str | None = None


@dataclass(frozen=True)
class LineageNode(_Record):
    id: str  # "artifact:12", "cell:34", "estimator:5", "run:abc"
    type: str  # artifact | cell | estimator
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LineageEdge(_Record):
    source: str
    target: str
    label: str


@dataclass(frozen=True)
class LineageGraph(_Record):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]

    def node(self, node_id: str) -> LineageNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


@dataclass(frozen=True)
class RunPage(_Record):
    runs: list[Run]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class Comparison(_Record):
    runs: list[Run]
    #: param key -> values in run order (None where a run lacks it)
    params: dict[str, list[str | None]]
    #: param keys whose values differ between runs
    params_differ: list[str]
    metrics: dict[str, list[float | None]]


#: what a fire of a schedule can be: waiting (queued), running (started), or how it ended
FIRE_STATUSES = ("queued", "started", "finished", "failed", "cancelled", "abandoned", "skipped")


@dataclass(frozen=True)
class ScheduleFire(_Record):
    """One firing of a schedule or trigger. ``status`` of a started fire whose run has ended is
    the run's status; ``reason`` says what fired it (``{"kind": "schedule", "due": ...}``,
    ``{"kind": "change", "files": {path: {"old", "new"}}}``, ``{"kind": "after", "upstream_run"}``,
    ``{"kind": "manual", ...}``)."""

    id: int
    schedule_id: int
    schedule: str
    status: str
    due_at: float | None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    run_id: str | None = None
    pid: int | None = None
    owner: str | None = None
    reason: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True)
class Schedule(_Record):
    """A schedule (``kind`` cron) or a trigger (``kind`` change or after)."""

    id: int
    name: str
    kind: str
    target: str
    target_kind: str
    cron: str | None
    timezone: str | None
    watch: str | None
    params: dict[str, Any]
    overlap: str
    catchup: str
    paused: bool
    next_fire_at: float | None
    state: dict[str, Any]
    created_at: float
    updated_at: float
    last_fire: ScheduleFire | None = None


@dataclass(frozen=True)
class SchedulerLease(_Record):
    """Who holds a store's scheduler lease, until when."""

    holder: str | None
    host: str | None
    pid: int | None
    acquired_at: float
    expires_at: float


@dataclass(frozen=True)
class Validation(_Record):
    """One validation of a dataset against a reference (or a saved schema) and its outcome."""

    id: int
    run_id: str | None
    cell_seq: int | None
    data_label: str
    data_fingerprint: str | None
    dataset_artifact_id: int | None
    reference_label: str
    reference_artifact_id: int | None
    schema_artifact_id: int | None
    passed: bool
    rows: int | None
    #: [{"column", "check", "expected", "observed"}]
    violations: list[dict[str, Any]]
    summary: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class ModelVersion(_Record):
    """One version of a registered model: a content-addressed file plus where it came from.

    ``digest`` is the SHA-256 of the stored file; ``run_id``/``cell_execution_id``/``cell_seq``
    name the run and the cell that fitted it (``cell_execution_id`` is resolved when read: a
    headless kernel's cell records reach the store after the version); ``signature`` holds input
    columns/dtypes and the output kind; ``aliases`` the aliases pointing at it now."""

    id: int
    model: str
    version: int
    digest: str
    format: str
    size: int | None
    stored_path: str
    source_uri: str | None
    model_class: str | None
    run_id: str | None
    cell_execution_id: int | None
    cell_seq: int | None
    artifact_id: int | None
    signature: dict[str, Any]
    info: dict[str, Any]
    status: str
    created_at: float
    created_by: str | None
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel(_Record):
    """A registered model name with its newest version, version count and aliases."""

    id: int
    name: str
    description: str | None
    created_at: float
    updated_at: float
    latest_version: int | None
    version_count: int
    #: alias -> version number
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEvent(_Record):
    """One entry of the registry's audit log: ``kind`` is register, alias, promote, rollback,
    unalias, rm or gate; ``from_version -> to_version`` for alias moves."""

    id: int
    model: str
    kind: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    reason: str | None
    user: str | None
    host: str | None
    run_id: str | None
    details: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class MonitorResult(_Record):
    """One recorded monitoring check of a served model (drift score, decision, whole report)."""

    id: int
    model: str
    alias: str | None
    version: int
    created_at: float
    source: str
    window: str | None
    rows: int
    labeled_rows: int
    score: float
    drifted: bool
    threshold: float | None
    report: dict[str, Any] = field(default_factory=dict)
