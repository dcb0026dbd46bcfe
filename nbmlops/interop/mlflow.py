"""Runs copied between the nbmlops store and an MLflow tracking store, through ``MlflowClient``.

MLflow is imported only here and only when a transfer runs (``pip install 'nbmlops[mlflow]'``,
which installs ``mlflow-skinny``; its SQLAlchemy tracking store works with the SQLAlchemy and
Alembic nbmlops already uses).

What travels, both ways: the run (name, status, start and end time, experiment), params, every
metric value with its step and timestamp, tags, and files. Exported runs carry the tag
``nbmlops.run_id``; imported runs carry ``mlflow.run_id`` (and keep MLflow's run id as their own
id), so a second export or import finds the first copy and skips the run. A run that came from
the other side is never copied back. Cell-level lineage has no MLflow counterpart: an export adds
a summary (``nbmlops.cell_count``, the notebook path and hash as tags, and the cells with their
variables, reads and writes as the artifact ``nbmlops/lineage.json``).

Nothing here configures logging or prints; the CLI (:mod:`nbmlops.cli.interop`) is the face.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidArgumentError, NbmlopsError, NotFoundError, StoreUnavailableError
from ..redact import MAX_VALUE_CHARS
from ..store.entities import RUN_SOURCES, MetricValue, Run

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ..store import Store

__all__ = [
    "TransferReport",
    "TransferredRun",
    "export_to_mlflow",
    "import_from_mlflow",
    "open_client",
    "EXPORT_TAG",
    "IMPORT_TAG",
]

log = logging.getLogger(__name__)

#: MLflow tag holding the id of the nbmlops run an MLflow run was exported from
EXPORT_TAG = "nbmlops.run_id"
#: nbmlops tag holding the id of the MLflow run an nbmlops run was imported from
IMPORT_TAG = "mlflow.run_id"
#: the lineage summary an export attaches to each run
LINEAGE_ARTIFACT = "nbmlops/lineage.json"
#: where an export puts the files a run wrote (MLflow artifact directory)
FILES_DIR = "files"
#: where an import keeps a run's MLflow artifacts (under the store's runs/<run-id>/)
IMPORTED_DIR = "mlflow-artifacts"

_TO_MLFLOW_STATUS = {
    "running": "RUNNING", "finished": "FINISHED", "failed": "FAILED",
    "cancelled": "KILLED", "abandoned": "FAILED",
}
_FROM_MLFLOW_STATUS = {
    "RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "failed",
    "KILLED": "cancelled",
}
#: MLflow's log_batch limits (per request)
_MAX_PARAMS, _MAX_TAGS, _MAX_METRICS = 100, 100, 1000
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class TransferredRun:
    """One run of a transfer: where it came from, where it is now, what was copied."""

    source_id: str
    target_id: str | None
    name: str
    experiment: str
    #: created | updated | skipped
    action: str
    reason: str | None = None
    params: int = 0
    metrics: int = 0  # metric values (the whole history)
    tags: int = 0
    artifacts: int = 0
    #: files or values that could not be copied, with why (never fatal)
    left_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TransferReport:
    direction: str  # export | import
    tracking_uri: str  # credentials removed
    runs: list[TransferredRun]

    @property
    def created(self) -> int:
        return sum(r.action == "created" for r in self.runs)

    @property
    def updated(self) -> int:
        return sum(r.action == "updated" for r in self.runs)

    @property
    def skipped(self) -> int:
        return sum(r.action == "skipped" for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "tracking_uri": self.tracking_uri,
                "created": self.created, "updated": self.updated, "skipped": self.skipped,
                "runs": [r.to_dict() for r in self.runs]}


# -- the tracking store --------------------------------------------------------------------------


def shown_uri(uri: str) -> str:
    """``uri`` without a password (for messages and reports)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if raw in ("", ":memory:") else Path(raw)


def _check_sqlite(path: Path, uri: str, *, create: bool) -> None:
    """Refuse a file that is not an MLflow database before MLflow touches it (MLflow would
    create its tables inside any SQLite file, an nbmlops store included)."""
    if not path.exists():
        if not create:
            raise NotFoundError(f"no MLflow tracking store at {path} ({shown_uri(uri)})")
        if not path.parent.is_dir():
            raise InvalidArgumentError(
                f"cannot create an MLflow tracking store at {path}: no directory {path.parent}")
        return
    if not path.is_file():
        raise InvalidArgumentError(f"{shown_uri(uri)} is not an MLflow tracking store "
                                   f"({path} is not a file)")
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header and header != b"SQLite format 3\x00":
        raise InvalidArgumentError(f"{shown_uri(uri)} is not an MLflow tracking store "
                                   f"({path} is not an SQLite database)")
    if not header:  # an empty file: SQLite would take it as a new database
        raise InvalidArgumentError(f"{shown_uri(uri)} is not an MLflow tracking store "
                                   f"({path} is empty)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            run_cols = ({r[1] for r in con.execute("PRAGMA table_info(runs)")}
                        if "runs" in tables else set())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise InvalidArgumentError(f"{shown_uri(uri)} is not an MLflow tracking store "
                                   f"({path}: {exc})") from None
    if not tables and create:
        return  # an empty database MLflow may fill
    if not {"experiments", "runs", "metrics", "params", "tags"} <= tables or "run_uuid" not in run_cols:
        what = "an nbmlops store" if "cell_executions" in tables else "another database"
        raise InvalidArgumentError(f"{shown_uri(uri)} is not an MLflow tracking store "
                                   f"({path} is {what})")


def _check_uri(uri: str, *, create: bool) -> None:
    if not uri or not uri.strip():
        raise InvalidArgumentError("--tracking-uri is empty")
    db = _sqlite_file(uri)
    if db is not None:
        _check_sqlite(db, uri, create=create)
        return
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        path = Path(urlsplit(uri).path if scheme == "file" else uri)
        if path.is_file():
            raise InvalidArgumentError(
                f"{shown_uri(uri)} is not an MLflow tracking store ({path} is a file; give a "
                "sqlite:///PATH URL for an MLflow database, or an mlruns directory)")
        if not create and not path.is_dir():
            raise NotFoundError(f"no MLflow tracking store at {path}")


@contextmanager
def _quick_http_failure() -> Iterator[None]:
    """While probing a server: fail at once instead of MLflow's default retries with backoff
    (minutes against a closed port); a user's own settings win."""
    set_here = []
    for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):
        if var not in os.environ:
            os.environ[var] = value
            set_here.append(var)
    try:
        yield
    finally:
        for var in set_here:
            os.environ.pop(var, None)


_CONNECTION_TROUBLE = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("Temporary failure in name resolution", "unknown host"),
    ("timed out", "timed out"),
    ("Max retries exceeded", "cannot connect"),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for needle, said in _CONNECTION_TROUBLE:  # requests' messages run to several hundred chars
        if needle in text:
            return said
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:300] + "..."


def open_client(tracking_uri: str, *, create: bool) -> MlflowClient:
    """An ``MlflowClient`` on ``tracking_uri``, checked to answer as a tracking store.

    ``create``: a missing SQLite file or directory may become a new MLflow store (export);
    otherwise it is an error (import reads and must not create anything)."""
    _check_uri(tracking_uri, create=create)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise NbmlopsError(
            "MLflow interop needs MLflow, which is not installed: pip install 'nbmlops[mlflow]' "
            f"({exc})") from None
    from mlflow.exceptions import MlflowException

    try:
        with _quick_http_failure():
            client = MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)
    except MlflowException as exc:
        raise StoreUnavailableError(
            f"MLflow tracking store {shown_uri(tracking_uri)} did not answer: {_first_line(exc)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - drivers, requests, ... : one clear line
        raise StoreUnavailableError(
            f"MLflow tracking store {shown_uri(tracking_uri)} is not usable: "
            f"{type(exc).__name__}: {_first_line(exc)}") from None
    return client


# -- helpers -------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def _text(value: Any) -> str:
    s = str(value)
    return s if len(s) <= MAX_VALUE_CHARS else s[:MAX_VALUE_CHARS]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _local_copy(store: Store, fingerprint: str, uri: str, stored_path: str | None) -> Path | None:
    """A local file holding exactly the bytes recorded as ``fingerprint``: the artifact store's
    copy when there is one, else the written file itself if it has not changed since."""
    digest = fingerprint[len("sha256:"):] if fingerprint.startswith("sha256:") else None
    arts: Any = store.artifacts
    if digest:
        for getter in ("get_local", "path_for"):
            fn = getattr(arts, getter, None)
            if fn is None:
                continue
            try:
                p = Path(fn(digest))
            except (NbmlopsError, OSError, KeyError, ValueError):
                continue
            if p.is_file():
                return p
    if stored_path and Path(stored_path).is_file():
        return Path(stored_path)
    if digest and os.path.isfile(uri):
        from ..store.artifacts import sha256_file

        if sha256_file(uri) == digest:
            return Path(uri)
    return None


# -- export --------------------------------------------------------------------------------------


def _runs_to_export(store: Store, run_ids: Sequence[str], experiment: str | None) -> list[Run]:
    if run_ids:
        runs = [store.get_run(r) for r in dict.fromkeys(run_ids)]
    else:
        runs, offset = [], 0
        while True:
            page = store.list_runs(experiment=experiment, order_by="start_time",
                                   descending=False, limit=1000, offset=offset)
            runs.extend(page.runs)
            offset += len(page.runs)
            if not page.runs or offset >= page.total:
                break
        if experiment is not None and not runs and experiment not in store.experiments():
            raise NotFoundError(f"no nbmlops experiment {experiment!r}")
    return sorted(runs, key=lambda r: (r.start_time, r.id))  # parents before children


def _find_exported(client: MlflowClient, exp_ids: list[str], run_id: str) -> Any | None:
    """The active MLflow run tagged as the export of nbmlops run ``run_id``, if any."""
    if not exp_ids:
        return None
    hits = client.search_runs(exp_ids, filter_string=f"tags.`{EXPORT_TAG}` = {_quoted(run_id)}",
                              max_results=1)
    return hits[0] if hits else None


def _imported_from(client: MlflowClient, run: Run) -> Any | None:
    """The active MLflow run ``run`` was imported from, when it is in this tracking store."""
    from mlflow.exceptions import MlflowException

    origin = run.tags.get(IMPORT_TAG)
    if not origin:
        return None
    try:
        found = client.get_run(origin)
    except MlflowException:
        return None
    return found if found.info.lifecycle_stage == "active" else None


def _lineage_summary(store: Store, run: Run) -> tuple[dict[str, Any], list[Any]]:
    cells = store.cell_executions(run.id)
    doc = {
        "format": "nbmlops.lineage/1",
        "run_id": run.id,
        "name": run.name,
        "notebook_path": run.notebook_path,
        "notebook_hash": run.notebook_hash,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "cell_count": len(cells),
        "cells": [{
            "seq": c.seq, "cell_id": c.cell_id, "execution_count": c.execution_count,
            "source": c.source, "source_hash": c.source_hash, "status": c.status,
            "start_time": c.start_time, "duration": c.duration,
            "error": f"{c.error_name}: {c.error_value}" if c.error_name else None,
            "vars_defined": c.vars_defined, "vars_used": c.vars_used,
            "reads": [{"uri": a.uri, "kind": a.kind, "fingerprint": a.fingerprint} for a in c.reads],
            "writes": [{"uri": a.uri, "kind": a.kind, "fingerprint": a.fingerprint}
                       for a in c.writes],
            "models": [{"variable": e.variable, "class": e.class_name} for e in c.estimators],
        } for c in cells],
    }
    return doc, cells


def _export_tags(run: Run, parent_mlflow_id: str | None) -> dict[str, str]:
    tags = {k: _text(v) for k, v in run.tags.items() if k != "mlflow.runName"}
    tags.update({
        EXPORT_TAG: run.id,
        "nbmlops.source": run.source,
        "nbmlops.status": run.status,
        "nbmlops.experiment": run.experiment,
        "nbmlops.cell_count": str(run.cell_count or 0),
        "mlflow.runName": run.name,
    })
    if run.notebook_path:
        tags.update({"nbmlops.notebook_path": run.notebook_path,
                     "mlflow.source.name": run.notebook_path, "mlflow.source.type": "NOTEBOOK"})
    if run.notebook_hash:
        tags["nbmlops.notebook_hash"] = run.notebook_hash
    if run.git_commit:
        tags["mlflow.source.git.commit"] = run.git_commit
    if run.git_dirty is not None:
        tags["nbmlops.git_dirty"] = "true" if run.git_dirty else "false"
    if run.parent_run_id:
        tags["nbmlops.parent_run_id"] = run.parent_run_id
        if parent_mlflow_id:
            tags["mlflow.parentRunId"] = parent_mlflow_id
    return tags


def _unique_name(name: str, taken: set[str], digest: str) -> str:
    if name not in taken:
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}-{digest[:8]}{dot}{ext}"


def _fill_export(store: Store, client: MlflowClient, run: Run, mid: str, *,
                 have: Any | None = None) -> tuple[int, int, int, list[str]]:
    """Log ``run``'s params, metric history, files and lineage summary into MLflow run ``mid``
    (``have``: the MLflow run as it is, when refreshing a copy: only what it lacks is logged);
    end it when ``run`` has ended. Returns (params, metric values, files, left out)."""
    from mlflow.entities import Metric, Param

    left_out: list[str] = []
    old_params: dict[str, str] = dict(have.data.params) if have is not None else {}
    seen: set[tuple[str, int, int, float]] = set()
    if have is not None:
        for key in have.data.metrics:
            seen.update((m.key, int(m.step), int(m.timestamp), float(m.value))
                        for m in client.get_metric_history(mid, key))
    params = []
    for k, v in sorted(run.params.items()):
        if k not in old_params:
            params.append(Param(k, _text(v)))
        elif old_params[k] != _text(v):
            left_out.append(f"param {k}: MLflow keeps its first value {old_params[k]!r}")
    for chunk in _chunks(params, _MAX_PARAMS):
        client.log_batch(mid, params=list(chunk))
    metrics = []
    for m in store.metric_history(run.id):
        ts = _ms(m.timestamp) or 0
        if (m.key, m.step, ts, m.value) in seen:
            continue
        seen.add((m.key, m.step, ts, m.value))
        metrics.append(Metric(m.key, m.value, ts, m.step))
    for chunk in _chunks(metrics, _MAX_METRICS):
        client.log_batch(mid, metrics=list(chunk))
    summary, cells = _lineage_summary(store, run)
    n_files = 0
    with tempfile.TemporaryDirectory(prefix="nbmlops-mlflow-") as tmp:
        root = Path(tmp)
        files = root / FILES_DIR
        taken: set[str] = set()
        done: set[str] = set()
        for cell in cells:
            for art in cell.writes:
                if art.fingerprint in done:
                    continue
                local = _local_copy(store, art.fingerprint, art.uri, art.stored_path)
                if local is None:
                    left_out.append(f"{art.uri}: no stored copy, and the file changed or is gone")
                    continue
                name = _unique_name(Path(art.uri).name or "file", taken, art.fingerprint[7:])
                taken.add(name)
                done.add(art.fingerprint)
                files.mkdir(exist_ok=True)
                shutil.copyfile(local, files / name)
                n_files += 1
        # files of a run imported from MLflow go back at their own paths
        imported = store.location.runs_dir / run.id / IMPORTED_DIR
        if imported.is_dir():
            for f in sorted(p for p in imported.rglob("*") if p.is_file()):
                rel = f.relative_to(imported)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, root / rel)
                n_files += 1
        summary["files"] = sorted(taken)
        lineage = root / LINEAGE_ARTIFACT
        if not lineage.exists():  # an imported run's own summary is the better one
            lineage.parent.mkdir(parents=True, exist_ok=True)
            lineage.write_text(json.dumps(summary, indent=1, sort_keys=True, default=str))
            n_files += 1
        client.log_artifacts(mid, str(root))
    if run.status != "running":
        client.set_terminated(mid, _TO_MLFLOW_STATUS[run.status], end_time=_ms(run.end_time))
    return len(params), len(metrics), n_files, left_out


def _export_run(store: Store, client: MlflowClient, run: Run, exp_id: str,
                parent_mlflow_id: str | None) -> TransferredRun:
    tags = _export_tags(run, parent_mlflow_id)
    mr = client.create_run(exp_id, start_time=_ms(run.start_time), tags=tags, run_name=run.name)
    mid = str(mr.info.run_id)
    try:
        n_params, n_metrics, n_files, left_out = _fill_export(store, client, run, mid)
    except BaseException:
        client.delete_run(mid)  # a half-copied run must not be taken as exported next time
        raise
    return TransferredRun(
        source_id=run.id, target_id=mid, name=run.name, experiment=run.experiment,
        action="created", params=n_params, metrics=n_metrics, tags=len(tags),
        artifacts=n_files, left_out=left_out,
    )


def _refresh_export(store: Store, client: MlflowClient, run: Run, have: Any,
                    parent_mlflow_id: str | None) -> TransferredRun:
    """Bring an MLflow copy taken while the run was running up to date."""
    from mlflow.entities import RunTag

    mid = str(have.info.run_id)
    tags = _export_tags(run, parent_mlflow_id)
    new_tags = [RunTag(k, v) for k, v in sorted(tags.items()) if have.data.tags.get(k) != v]
    for chunk in _chunks(new_tags, _MAX_TAGS):
        client.log_batch(mid, tags=list(chunk))
    n_params, n_metrics, n_files, left_out = _fill_export(store, client, run, mid, have=have)
    return TransferredRun(
        source_id=run.id, target_id=mid, name=run.name, experiment=run.experiment,
        action="updated", reason="the copy was taken while the run was running",
        params=n_params, metrics=n_metrics, tags=len(new_tags), artifacts=n_files,
        left_out=left_out,
    )


def _artifact_location(tracking_uri: str, name: str) -> str | None:
    """Where a new experiment keeps its files: beside a local SQLite tracking database
    (``<db dir>/mlruns/<name>``), not MLflow's default ``./mlruns`` of whatever directory the
    export happens to run in; ``None`` (the server's choice) for other tracking URIs."""
    db = _sqlite_file(tracking_uri)
    if db is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    return (db.resolve().parent / "mlruns" / safe).as_uri()


def _experiment_id(client: MlflowClient, name: str, cache: dict[str, str]) -> str:
    if name not in cache:
        exp = client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage != "active":
            raise InvalidArgumentError(
                f"MLflow experiment {name!r} is deleted; restore it or pass --experiment")
        if exp is None:
            location = _artifact_location(str(client.tracking_uri), name)
            cache[name] = str(client.create_experiment(name, artifact_location=location))
        else:
            cache[name] = str(exp.experiment_id)
    return cache[name]


def export_to_mlflow(store: Store, tracking_uri: str, run_ids: Sequence[str] = (), *,
                     experiment: str | None = None,
                     client: MlflowClient | None = None) -> TransferReport:
    """Copy nbmlops runs into the MLflow tracking store at ``tracking_uri``.

    ``run_ids`` (full ids or unique prefixes) or, when empty, every run (of ``experiment`` when
    given). Each goes into the MLflow experiment of its own experiment's name, or into
    ``experiment``. Runs exported before (tag ``nbmlops.run_id``) or imported from this MLflow
    store are skipped. Unknown run ids fail before anything is written. ``client``: one
    :func:`open_client` made already (for ``tracking_uri``)."""
    runs = _runs_to_export(store, run_ids, experiment)
    if client is None:
        client = open_client(tracking_uri, create=True)
    from mlflow.entities import ViewType

    exp_ids = [str(e.experiment_id) for e in
               client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50_000)]
    cache: dict[str, str] = {}
    mapped: dict[str, str] = {}
    out: list[TransferredRun] = []
    for run in runs:
        parent = None
        if run.parent_run_id:
            parent = mapped.get(run.parent_run_id)
            if parent is None:
                found = _find_exported(client, exp_ids, run.parent_run_id)
                parent = str(found.info.run_id) if found is not None else None
        came_from = _imported_from(client, run)
        if came_from is not None:
            mapped[run.id] = str(came_from.info.run_id)
            out.append(TransferredRun(
                source_id=run.id, target_id=mapped[run.id], name=run.name,
                experiment=run.experiment, action="skipped",
                reason="imported from this MLflow store"))
            continue
        have = _find_exported(client, exp_ids, run.id)
        if have is not None:
            mapped[run.id] = str(have.info.run_id)
            if have.info.status == "RUNNING":
                out.append(_refresh_export(store, client, run, have, parent))
            else:
                out.append(TransferredRun(
                    source_id=run.id, target_id=mapped[run.id], name=run.name,
                    experiment=run.experiment, action="skipped", reason="exported before"))
            continue
        exp_id = _experiment_id(client, experiment or run.experiment, cache)
        if exp_id not in exp_ids:
            exp_ids.append(exp_id)
        done = _export_run(store, client, run, exp_id, parent)
        mapped[run.id] = done.target_id or ""
        out.append(done)
        log.info("exported run %s as MLflow run %s", run.id, done.target_id)
    return TransferReport("export", shown_uri(tracking_uri), out)


# -- import --------------------------------------------------------------------------------------


def _mlflow_runs(client: MlflowClient, exp_id: str) -> Iterator[Any]:
    from mlflow.entities import ViewType

    token = None
    while True:
        page = client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _walk_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> Iterator[str]:
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            yield from _walk_artifacts(client, run_id, info.path)
        else:
            yield str(info.path)


def _import_tags(mr: Any) -> dict[str, str]:
    tags: dict[str, str] = {k: v for k, v in mr.data.tags.items() if k != "mlflow.runName"}
    tags[IMPORT_TAG] = str(mr.info.run_id)
    tags["mlflow.experiment_id"] = str(mr.info.experiment_id)
    return tags


def _fill_import(store: Store, client: MlflowClient, mr: Any, files_root: Path, *,
                 refresh: bool) -> tuple[int, int, list[str]]:
    """Copy MLflow run ``mr``'s metric history and files into nbmlops run of the same id, and
    end it when ``mr`` has ended (``refresh``: the run exists: only what it lacks is added).
    Returns (metric values, files, left out)."""
    info, data = mr.info, mr.data
    rid = str(info.run_id)
    left_out: list[str] = []
    metrics: list[MetricValue] = []
    for key in sorted(data.metrics):
        for m in client.get_metric_history(rid, key):
            if not math.isfinite(m.value):
                left_out.append(f"metric {key} step {m.step}: {m.value} (not a finite number)")
                continue
            metrics.append(MetricValue(key=key, value=float(m.value), step=int(m.step),
                                       timestamp=m.timestamp / 1000.0))
    if refresh:
        have = {(m.key, m.step, m.timestamp) for m in store.metric_history(rid)}
        metrics = [m for m in metrics if (m.key, m.step, m.timestamp) not in have]
    if metrics:
        store.log_batch(rid, metrics=metrics)
    n_files = 0
    dest = files_root / rid / IMPORTED_DIR
    for rel in _walk_artifacts(client, rid):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            left_out.append(f"artifact {rel}: path outside the run's directory")
            continue
        into = dest.joinpath(*Path(rel).parent.parts)  # MLflow drops the directories
        if refresh and (into / Path(rel).name).is_file():
            continue
        into.mkdir(parents=True, exist_ok=True)
        local = Path(client.download_artifacts(rid, rel, str(into)))
        if local.is_file():
            store.log_artifact(rid, local)
            n_files += 1
        else:
            left_out.append(f"artifact {rel}: not downloaded")
    status = _FROM_MLFLOW_STATUS.get(str(info.status), "failed")
    if status != "running":
        store.end_run(rid, status, end_time=(info.end_time / 1000.0) if info.end_time else None)
    return len(metrics), n_files, left_out


def _import_run(store: Store, client: MlflowClient, mr: Any, experiment: str,
                files_root: Path) -> TransferredRun:
    info, data = mr.info, mr.data
    rid = str(info.run_id)
    tags = _import_tags(mr)
    name = info.run_name or data.tags.get("mlflow.runName") or rid[:8]
    source = tags.get("nbmlops.source", "interactive")
    notebook = tags.get("nbmlops.notebook_path") or (
        tags.get("mlflow.source.name") if tags.get("mlflow.source.type") == "NOTEBOOK" else None)
    parent = tags.get("mlflow.parentRunId")
    store.create_run(
        name=name, experiment=experiment,
        source=source if source in RUN_SOURCES else "interactive",
        notebook_path=notebook, notebook_hash=tags.get("nbmlops.notebook_hash"),
        git_commit=tags.get("mlflow.source.git.commit"),
        git_dirty={"true": True, "false": False}.get(tags.get("nbmlops.git_dirty", "")),
        parent_run_id=parent if parent and store.run_exists(parent) else None,
        tags=tags, params=dict(data.params), run_id=rid, start_time=(info.start_time or 0) / 1000.0,
    )
    n_metrics, n_files, left_out = _fill_import(store, client, mr, files_root, refresh=False)
    return TransferredRun(
        source_id=rid, target_id=rid, name=name, experiment=experiment, action="created",
        params=len(data.params), metrics=n_metrics, tags=len(tags), artifacts=n_files,
        left_out=left_out,
    )


def _refresh_import(store: Store, client: MlflowClient, mr: Any, ours: Run,
                    files_root: Path) -> TransferredRun:
    """Bring a run imported while it was running in MLflow up to date."""
    rid = str(mr.info.run_id)
    tags = {k: v for k, v in _import_tags(mr).items() if ours.tags.get(k) != v}
    params = {k: v for k, v in mr.data.params.items() if ours.params.get(k) != v}
    if tags or params:
        store.log_batch(rid, params=params, tags=tags)
    n_metrics, n_files, left_out = _fill_import(store, client, mr, files_root, refresh=True)
    return TransferredRun(
        source_id=rid, target_id=rid, name=ours.name, experiment=ours.experiment,
        action="updated", reason="imported while the MLflow run was running",
        params=len(params), metrics=n_metrics, tags=len(tags), artifacts=n_files,
        left_out=left_out,
    )


def import_from_mlflow(store: Store, tracking_uri: str, *, experiment: str | None = None,
                       client: MlflowClient | None = None) -> TransferReport:
    """Copy the runs of an MLflow tracking store (of ``experiment`` when given) into ``store``.

    Each run keeps MLflow's run id as its nbmlops id and gets the tag ``mlflow.run_id``; it lands
    in the nbmlops experiment of the same name. Runs already in the store, and runs exported
    from it (tag ``nbmlops.run_id``), are skipped. Downloaded files are kept under the store's
    ``runs/<run-id>/mlflow-artifacts/`` and logged as the run's artifacts. ``client``: one
    :func:`open_client` made already (the CLI checks the tracking store before it opens or
    creates the nbmlops store)."""
    if client is None:
        client = open_client(tracking_uri, create=False)
    from mlflow.entities import ViewType

    if experiment is not None:
        exp = client.get_experiment_by_name(experiment)
        if exp is None or exp.lifecycle_stage != "active":
            raise NotFoundError(f"no MLflow experiment {experiment!r} at {shown_uri(tracking_uri)}")
        exps = [exp]
    else:
        exps = list(client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                              max_results=50_000))
    files_root = store.location.runs_dir
    out: list[TransferredRun] = []
    for exp in exps:
        for mr in _mlflow_runs(client, str(exp.experiment_id)):
            rid = str(mr.info.run_id)
            name = mr.info.run_name or rid[:8]
            origin = mr.data.tags.get(EXPORT_TAG)
            if origin and _RUN_ID.match(origin) and store.run_exists(origin):
                out.append(TransferredRun(rid, origin, name, exp.name, "skipped",
                                          reason="exported from this store"))
                continue
            if not _RUN_ID.match(rid):
                out.append(TransferredRun(rid, None, name, exp.name, "skipped",
                                          reason="run id is not 32 hex characters"))
                continue
            if store.run_exists(rid):
                ours = store.get_run(rid)
                if ours.status == "running" and ours.tags.get(IMPORT_TAG) == rid:
                    out.append(_refresh_import(store, client, mr, ours, files_root))
                else:
                    out.append(TransferredRun(rid, rid, name, exp.name, "skipped",
                                              reason="imported before"))
                continue
            out.append(_import_run(store, client, mr, exp.name, files_root))
            log.info("imported MLflow run %s", rid)
    return TransferReport("import", shown_uri(tracking_uri), out)
