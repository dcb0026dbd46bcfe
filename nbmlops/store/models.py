"""ORM rows of the lineage store.

These classes never leave :mod:`nbmlops.store`: the store turns them into the plain entities of
:mod:`nbmlops.store.entities` before returning anything. Every constraint and index is named so
that Alembic migrations can refer to it on SQLite and PostgreSQL alike.

Times are UNIX epoch seconds (floats): cheap to sort and index on every backend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    notebook_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    notebook_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    start_time: Mapped[float] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_runs_start_time", "start_time"),
        Index("ix_runs_status_start_time", "status", "start_time"),
        Index("ix_runs_notebook_path", "notebook_path"),
        Index("ix_runs_experiment_id_start_time", "experiment_id", "start_time"),
        Index("ix_runs_parent_run_id", "parent_run_id"),
    )


class TagRow(Base):
    __tablename__ = "tags"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ParamRow(Base):
    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    cell_execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="SET NULL"), nullable=True
    )


class MetricRow(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[float] = mapped_column(Float)
    cell_execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="SET NULL"), nullable=True
    )

    __table_args__ = (Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),)


class CellSourceRow(Base):
    """Every version of a cell's source, stored once by content hash."""

    __tablename__ = "cell_sources"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)


class CellExecutionRow(Base):
    __tablename__ = "cell_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    cell_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    execution_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source_hash: Mapped[str] = mapped_column(ForeignKey("cell_sources.hash"))
    start_time: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    error_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    vars_defined: Mapped[list[Any]] = mapped_column(JSON)
    vars_used: Mapped[list[Any]] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        Index("ix_cell_executions_cell_id", "cell_id"),
    )


class ArtifactRow(Base):
    """One version of a dataset, model or file: a location plus a content fingerprint."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uri: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(80))
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stored_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("uri", "fingerprint"),
        Index("ix_artifacts_fingerprint", "fingerprint"),
    )


class ArtifactEdgeRow(Base):
    """A cell execution read or wrote an artifact."""

    __tablename__ = "artifact_edges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    cell_execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="CASCADE"), nullable=True
    )
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    via: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_artifact_edges_artifact_id_direction", "artifact_id", "direction"),
        Index("ix_artifact_edges_cell_execution_id", "cell_execution_id"),
        Index("ix_artifact_edges_run_id", "run_id"),
    )


class VariableEdgeRow(Base):
    """A variable defined by one cell execution was used by a later one."""

    __tablename__ = "variable_edges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    src_cell_execution_id: Mapped[int] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="CASCADE")
    )
    dst_cell_execution_id: Mapped[int] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="CASCADE")
    )
    variable: Mapped[str] = mapped_column(String(255))
    #: "data" (frames, arrays, models, numbers...) or "code" (modules, functions, classes):
    #: lineage graphs follow data; exports need both
    kind: Mapped[str] = mapped_column(String(8), server_default="data")

    __table_args__ = (
        Index("ix_variable_edges_dst_cell_execution_id", "dst_cell_execution_id"),
        Index("ix_variable_edges_src_cell_execution_id", "src_cell_execution_id"),
    )


class EstimatorRow(Base):
    """A model fitted in a cell: its class, hyper-parameters and what it was fitted on."""

    __tablename__ = "estimators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    cell_execution_id: Mapped[int] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="CASCADE")
    )
    variable: Mapped[str] = mapped_column(String(255))
    class_name: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    fitted_on: Mapped[list[Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_estimators_run_id", "run_id"),
        Index("ix_estimators_cell_execution_id", "cell_execution_id"),
    )


class StepCacheRow(Base):
    """A pipeline step run that finished: its cache key and the outputs it left.

    The runner skips a step when a row with the same key exists whose outputs are still on
    disk with the recorded fingerprints."""

    __tablename__ = "step_cache"

    cache_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    pipeline: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(255))
    #: {"files": {path: fingerprint}, "variables": {name: path}}
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_step_cache_run_id", "run_id"),)


class ScheduleRow(Base):
    """A schedule (``kind`` cron) or a trigger (``kind`` change or after): what to run, when.

    ``target`` is the absolute path of a pipeline definition or a notebook. Cron schedules keep
    their next due time in ``next_fire_at`` (UTC epoch), advanced in the same transaction that
    records a fire, so a restarted scheduler neither fires twice nor forgets a due run.
    ``state`` is what a trigger compares against: ``{"files": {path: fingerprint}}`` for
    change triggers, ``{"since": end_time, "seen": [run ids]}`` for after-triggers."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    target_kind: Mapped[str] = mapped_column(String(16))
    cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: a path or glob (change) or a pipeline definition path (after)
    watch: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    overlap: Mapped[str] = mapped_column(String(8))
    catchup: Mapped[str] = mapped_column(String(8))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_fire_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_schedules_paused_next_fire_at", "paused", "next_fire_at"),)


class ScheduleFireRow(Base):
    """One firing of a schedule or trigger: due, queued, started, skipped, or how it ended.

    ``run_id`` is chosen before the run exists (the run is created by the process the fire
    starts), so it is not a foreign key. ``reason`` records what triggered it."""

    __tablename__ = "schedule_fires"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[dict[str, Any]] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_schedule_fires_schedule_id_id", "schedule_id", "id"),
        Index("ix_schedule_fires_status", "status"),
    )


class SchedulerLeaseRow(Base):
    """Who runs the scheduler of this store: one row, renewed while its holder lives."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


# -- model registry (migration 0004) ---------------------------------------------------------


class RegisteredModelRow(Base):
    """A registered model name: the versions and aliases hang off it."""

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class ModelVersionRow(Base):
    """One version of a registered model: a content-addressed file plus where it came from.

    ``digest`` is the SHA-256 of the stored file (checked before every load); ``run_id`` and
    ``cell_execution_id`` tie it to the lineage capture recorded; ``signature`` holds the input
    columns/dtypes and output kind inferred from the data it was fitted on."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(80))
    format: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stored_path: Mapped[str] = mapped_column(Text)
    source_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_class: Mapped[str | None] = mapped_column(String(255), nullable=True)
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    cell_execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="SET NULL"), nullable=True
    )
    artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="SET NULL"), nullable=True
    )
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: params, metrics, training data references and anything else worth keeping with it
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_model_versions_run_id", "run_id"),
        Index("ix_model_versions_digest", "digest"),
    )


class ModelAliasRow(Base):
    """An alias (``champion``, ``challenger``, any name) pointing at one version of a model."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_model_aliases_version_id", "version_id"),)


class ModelEventRow(Base):
    """The registry's audit log: every change (register, alias moves, promotions, rollbacks,
    removals, gate decisions) with who, where, when and why."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    user: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_model_events_model_id_id", "model_id", "id"),)


# -- data validation (migration 0004) ---------------------------------------------------------


class ValidationRow(Base):
    """One validation of a dataset against a reference or saved schema, and what it found.

    ``dataset_artifact_id`` is the data checked (when it is a recorded file), ``reference_
    artifact_id`` the reference dataset, ``schema_artifact_id`` the stored schema (a JSON file in
    the content-addressed artifact directory). ``run_id``/``cell_execution_id`` say where it ran,
    so lineage shows "validated against"."""

    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), nullable=True
    )
    cell_execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("cell_executions.id", ondelete="SET NULL"), nullable=True
    )
    cell_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data_label: Mapped[str] = mapped_column(Text)
    data_fingerprint: Mapped[str | None] = mapped_column(String(80), nullable=True)
    dataset_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="SET NULL"), nullable=True
    )
    reference_label: Mapped[str] = mapped_column(Text)
    reference_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="SET NULL"), nullable=True
    )
    schema_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="SET NULL"), nullable=True
    )
    passed: Mapped[bool] = mapped_column(Boolean)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: [{"column", "check", "expected", "observed"}]
    violations: Mapped[list[Any]] = mapped_column(JSON)
    #: per-feature drift statistics, thresholds, sample size
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_validations_run_id_cell_seq", "run_id", "cell_seq"),
        Index("ix_validations_dataset_artifact_id", "dataset_artifact_id"),
        Index("ix_validations_reference_artifact_id", "reference_artifact_id"),
    )


class MonitorResultRow(Base):
    """One monitoring check of a served model's logged traffic (``nbmlops monitor``, a drift
    trigger's poll): drift score and decision, plus the whole report as JSON. ``model`` is the
    registered model's name (kept as text so a check outlives the version it looked at)."""

    __tablename__ = "monitor_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(255))
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(255))
    window_spec: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    labeled_rows: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the MonitorReport's to_dict()
    report: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_monitor_results_model_id", "model", "id"),
        Index("ix_monitor_results_created_at", "created_at"),
    )
