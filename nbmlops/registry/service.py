"""The model registry as every face uses it (CLI, ``%mlops``, Python API, REST panel).

Stable names (the REST handlers and the pipeline/export/serving code call these):

- reads: :func:`list_models`, :func:`get_model`, :func:`list_versions`, :func:`get_version`,
  :func:`model_history`, :func:`resolve_model_uri`, :func:`version_lineage`
- changes, each one audit event (user, host, reason, run): :func:`register`,
  :func:`set_alias`, :func:`promote`, :func:`rollback`, :func:`remove_alias`,
  :func:`remove_version`, :func:`record_event`
- loading: :func:`load_model` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
  ``models:/NAME/latest`` or a file path), digest checked before anything is unpickled.

Inside a captured kernel, :func:`register` links the version to the current run and to the
cell that fitted the model (resolved when read: a headless kernel's cells reach the store about
a second later), and :func:`load_model` reports the version's file as an artifact the running
cell read, so lineage shows which model version a cell used.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, NbmlopsError, NotFoundError
from ..store.entities import ArtifactIO, ModelEvent, ModelVersion, RegisteredModel
from .loading import class_of_file, detect_format, dump_model, load_file, verify_file
from .signature import fitted_on_from_sources, infer_signature, signature_from_schema

if TYPE_CHECKING:
    from ..capture.session import CaptureSession
    from ..store import Store

__all__ = [
    "MODEL_URI_PREFIX",
    "check_alias",
    "check_name",
    "parse_model_uri",
    "list_models",
    "get_model",
    "list_versions",
    "get_version",
    "model_history",
    "register",
    "set_alias",
    "promote",
    "rollback",
    "remove_alias",
    "remove_version",
    "record_event",
    "resolve_model_uri",
    "load_model",
    "stored_file",
    "version_lineage",
]

MODEL_URI_PREFIX = "models:/"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: aliases with a meaning of their own: a version number would be ambiguous in a URI
_RESERVED_ALIASES = frozenset({"latest"})


# -- validation ---------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A model name: letters, digits, ``_ . -``, starting with a letter or digit (no ``/`` or
    ``@``, so ``models:/NAME@ALIAS`` always parses)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgumentError(
            f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (up to 200, "
            "starting with a letter or digit)")
    return name


def check_alias(alias: str) -> str:
    """An alias: a letter, then letters, digits, ``_`` or ``-`` (up to 64); not ``latest``."""
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias) or alias in _RESERVED_ALIASES:
        raise InvalidArgumentError(
            f"invalid alias {alias!r}: use a letter, then letters, digits, '_' or '-' (up to 64; "
            "'latest' is reserved), e.g. champion, challenger")
    return alias


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not (
        isinstance(version, int) or (isinstance(version, str) and version.strip().isdigit())
    ) or int(version) < 1:
        raise InvalidArgumentError(f"a model version is a whole number from 1, not {version!r}")
    return int(version)


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None] | None:
    """``(name, version, alias)`` of a ``models:/`` URI (None for anything else); both None
    means the newest version (``models:/NAME`` or ``models:/NAME/latest``)."""
    if not isinstance(uri, str) or not uri.startswith(MODEL_URI_PREFIX):
        return None
    rest = uri[len(MODEL_URI_PREFIX):].strip("/")
    name, sep, alias = rest.partition("@")
    if sep:
        return check_name(name), None, check_alias(alias)
    name, sep, ver = rest.partition("/")
    if not sep or ver == "latest":
        return check_name(name), None, None
    if not ver.isdigit() or int(ver) < 1:
        raise InvalidArgumentError(
            f"cannot read model URI {uri!r}: expected models:/NAME/VERSION (a number from 1), "
            "models:/NAME@ALIAS or models:/NAME/latest")
    return check_name(name), int(ver), None


# -- who and where ------------------------------------------------------------------------------


def _session() -> CaptureSession | None:
    from ..capture.session import active_session

    return active_session()


def _actor(reason: str | None, run_id: str | None = None, user: str | None = None
           ) -> dict[str, Any]:
    """Who made a change: ``user`` when a face knows better (the Jupyter user behind a panel
    action), else the OS user of this process; the host; the reason; the run it ran in."""
    if user is None:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in this environment
            user = None
    if run_id is None:
        session = _session()
        run_id = session.run_id if session is not None else None
    return {"user": user, "host": socket.gethostname(), "reason": reason or None, "run_id": run_id}


# -- reads --------------------------------------------------------------------------------------


def list_models(store: Store) -> list[RegisteredModel]:
    """Every registered model by name: newest version, number of versions, aliases."""
    return store.registry.models()


def get_model(store: Store, name: str) -> RegisteredModel:
    """One registered model; :class:`NotFoundError` (with close names) when there is none."""
    return store.registry.get_model(name)


def list_versions(store: Store, name: str, *, limit: int | None = None) -> list[ModelVersion]:
    """Versions of ``name``, newest first, each with the aliases pointing at it."""
    return store.registry.versions(name, limit=limit)


def get_version(store: Store, name: str, version: int | None = None, *,
                alias: str | None = None) -> ModelVersion:
    """One version by number or alias (newest when neither), its fitting cell resolved."""
    return store.registry.version(name, None if version is None else _check_version(version),
                                  alias=alias)


def model_history(store: Store, name: str, *, limit: int | None = None) -> list[ModelEvent]:
    """The audit log of ``name``, oldest first: register, alias, promote, rollback, unalias,
    rm and gate events with from -> to versions, user, host, reason and time."""
    return store.registry.events(name, limit=limit)


def resolve_model_uri(store: Store, uri: str) -> ModelVersion:
    """The version a ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME[/latest]``
    URI names; :class:`InvalidArgumentError` for another form, :class:`NotFoundError` when the
    model, version or alias does not exist."""
    parsed = parse_model_uri(uri)
    if parsed is None:
        raise InvalidArgumentError(
            f"not a model URI: {uri!r} (expected models:/NAME@ALIAS or models:/NAME/VERSION)")
    name, version, alias = parsed
    return store.registry.version(name, version, alias=alias)


# -- registering --------------------------------------------------------------------------------


def pin_model_uris(store: Store, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``params`` with every ``models:/NAME@ALIAS`` (or ``/latest``) value replaced by the
    version it resolves to now (``models:/NAME/VERSION``), and the ``{given: pinned}`` map.
    A run records the pinned version, so it is reproducible and its cache follows alias moves.
    :class:`NotFoundError` (naming the URI) for a model, alias or version that does not exist."""
    out = dict(params)
    pinned: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, str) and value.startswith(MODEL_URI_PREFIX):
            if value not in pinned:
                pinned[value] = resolve_model_uri(store, value).uri
            out[key] = pinned[value]
    return out, {k: v for k, v in pinned.items() if k != v}


def _check_fitted(obj: Any, label: str) -> None:
    cls = type(obj).__name__
    if isinstance(obj, (str, bytes, int, float, bool, list, tuple, dict, set, type(None))) or not (
        hasattr(obj, "predict") or hasattr(obj, "fit")  # (frames have .transform: not models)
    ):
        raise InvalidArgumentError(f"{label} is a {cls}, not a fitted model")
    if type(obj).__module__.split(".")[0] == "sklearn" or hasattr(obj, "get_params"):
        try:
            from sklearn.exceptions import NotFittedError
            from sklearn.utils.validation import check_is_fitted
        except ImportError:
            return
        try:
            check_is_fitted(obj)
        except NotFittedError:
            raise InvalidArgumentError(
                f"{label} ({cls}) is not fitted yet: call .fit(...) before registering it") from None
        except TypeError:
            pass  # not an estimator sklearn can judge


def _names_of(obj: Any, namespace: Mapping[str, Any]) -> list[str]:
    return [k for k, v in namespace.items() if v is obj and not k.startswith("_")]


def _history_sources(namespace: Mapping[str, Any]) -> list[str]:
    """The kernel's cell sources, newest first (IPython keeps them in ``In``)."""
    cells = namespace.get("In")
    if isinstance(cells, list):
        return [c for c in reversed(cells) if isinstance(c, str)]
    return []


def register(
    store: Store,
    obj_or_path: Any,
    name: str,
    *,
    alias: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    cell_seq: int | None = None,
    variable: str | None = None,
    namespace: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    signature: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register a fitted model object or a model file as the next version of ``name``.

    ``signature`` is used for a file whose lineage gives none (the gate passes the one it
    inferred from the loaded model and the held-out data).

    An object is written with skops when it is a scikit-learn model that round-trips, else
    joblib (``fmt`` forces one); a path is stored as it is (format detected: skops zip,
    joblib/pickle). Both go into the content-addressed artifact directory.

    Lineage: inside a captured kernel the version is tied to the current run and to the cell
    that last fitted ``variable`` (kept as run id + cell seq, resolved when read) and its
    signature is inferred from the namespace data it was fitted on. For a path, ``run_id`` (or
    else the run that capture saw write that exact content) gives the run and cell. With
    ``alias`` the alias is pointed at the new version in the same transaction. ``run_id`` and
    ``cell_seq`` (the registering cell) override what the capture session says."""
    check_name(name)
    if alias is not None:
        check_alias(alias)
    if isinstance(obj_or_path, (str, os.PathLike)):
        return _register_path(store, Path(obj_or_path), name, alias=alias, reason=reason,
                              run_id=run_id, signature_hint=signature)
    session = _session()
    ns: Mapping[str, Any] = namespace if namespace is not None else (
        session.user_ns if session is not None else {})
    if variable is None:
        names = _names_of(obj_or_path, ns)
        variable = names[0] if names else None
    label = variable or f"the {type(obj_or_path).__name__}"
    _check_fitted(obj_or_path, label)

    fitted_on = fitted_on_from_sources(_history_sources(ns), variable) if variable else None
    X = ns.get(fitted_on[0]) if fitted_on else None
    y = ns.get(fitted_on[1]) if fitted_on and len(fitted_on) > 1 else None
    signature = infer_signature(obj_or_path, X, y, fitted_on)

    info: dict[str, Any] = {"source": "object"}
    if variable:
        info["variable"] = variable
    cell_active = False
    in_session = session is not None and session.run_id is not None
    if in_session and session is not None and run_id in (None, session.run_id):
        run_id = session.run_id
        # the cell running now (or, for a cell of %mlops magics only, which is not recorded,
        # the next one): the fitting cell is the last one up to it that fitted `variable`
        info["cell_seq"] = session.cells_recorded
        cell_active = session.cell_active
    elif run_id is not None:
        run_id = store.resolve_run_id(run_id)
    if cell_seq is not None:
        info["cell_seq"] = int(cell_seq)
    if fitted_on:
        info["fitted_on"] = fitted_on

    store.artifacts.root.mkdir(parents=True, exist_ok=True)
    dumped = dump_model(obj_or_path, store.artifacts.root, fmt=fmt)
    try:
        size = dumped.path.stat().st_size
        digest, stored = store.artifacts.put(dumped.path)
    finally:
        dumped.path.unlink(missing_ok=True)
    if dumped.trusted:
        info["trusted_types"] = dumped.trusted
    cls = type(obj_or_path)
    version = _add(store, name, stored, digest, size, dumped.format, alias=alias, reason=reason,
                   run_id=run_id, source_uri=None,
                   model_class=f"{cls.__module__}.{cls.__qualname__}", signature=signature,
                   info=info)
    if cell_active and session is not None:
        session.on_io(_artifact_io(version, "wrote", "register"))
    return version


def _artifact_io(version: ModelVersion, direction: str, via: str) -> ArtifactIO:
    return ArtifactIO(uri=version.stored_path, direction=direction, via=via, kind="model",
                      fingerprint=f"sha256:{version.digest}", size=version.size)


def _add(store: Store, name: str, stored: str, digest: str, size: int, fmt: str, *,
         alias: str | None, reason: str | None, run_id: str | None,
         **fields: Any) -> ModelVersion:
    """Record a version whose file is in the artifact store at ``stored`` (its absolute path,
    or its ``s3://...`` URI for object storage)."""
    actor = _actor(reason)
    artifact = ArtifactIO(uri=stored, direction="wrote", via="register", kind="model",
                          fingerprint=f"sha256:{digest}", size=size)
    return store.registry.add_version(
        name, actor=actor, alias=alias, artifact=artifact, digest=digest, format=fmt, size=size,
        stored_path=stored, run_id=run_id, created_by=actor["user"], **fields)


def _register_path(store: Store, path: Path, name: str, *, alias: str | None,
                   reason: str | None, run_id: str | None,
                   signature_hint: Mapping[str, Any] | None = None) -> ModelVersion:
    if not path.is_file():
        raise NotFoundError(f"no model file {path}" + (" (it is a directory)" if path.is_dir() else ""))
    fmt = detect_format(path)
    class_name = class_of_file(path, fmt)
    # lineage first (reads only), so that a refused --run leaves the artifact directory alone
    from ..store.artifacts import sha256_file

    digest = sha256_file(path)
    rid = store.resolve_run_id(run_id) if run_id is not None else None
    writer = store.registry.writer_of(f"sha256:{digest}")
    cell_seq = None
    if writer is not None and (rid is None or writer[0] == rid):
        rid, cell_seq = writer
    info: dict[str, Any] = {"source": "path"}
    signature: dict[str, Any] = {"inputs": None, "output": {"kind": "unknown"}, "source": "none"}
    if rid is not None:
        short = class_name.rsplit(".", 1)[-1] if class_name else None
        fits = [f for f in store.registry.estimators_of_run(rid, short)
                if cell_seq is None or f[1] <= cell_seq]
        if fits:
            variable, fit_seq, _cls = fits[-1]
            info["variable"] = variable
            info["cell_seq"] = cell_seq if cell_seq is not None else fit_seq
            signature = _signature_from_lineage(store, rid, variable, fit_seq, short)
        elif cell_seq is not None:
            info["cell_seq"] = cell_seq
    if signature_hint is not None and (signature.get("inputs") is None
                                       or signature_hint.get("inputs") is not None):
        # a signature inferred from the model called on real data (the gate's held-out rows)
        # is exact; lineage's is the schema of the file read upstream of the fit, which may
        # still hold the target column. Lineage keeps saying what the model was fitted on.
        fitted_on = signature.get("fitted_on")
        signature = dict(signature_hint)
        if fitted_on and "fitted_on" not in signature:
            signature["fitted_on"] = fitted_on
    digest, stored = store.artifacts.put(path)
    return _add(store, name, stored, digest, path.stat().st_size, fmt, alias=alias,
                reason=reason, run_id=rid,
                source_uri=str(path.resolve()), model_class=class_name, signature=signature,
                info=info)


def _signature_from_lineage(store: Store, run_id: str, variable: str, seq: int,
                            class_name: str | None) -> dict[str, Any]:
    found = store.registry.estimator_cell(run_id, variable, seq)
    if found is None:
        return signature_from_schema(None, class_name=class_name, fitted_on=None)
    cell_id, _seq, fitted_on, cls = found
    schema = None
    try:
        graph = store.lineage(f"cell:{cell_id}", direction="upstream")
        for node in graph.nodes:
            s = node.attrs.get("schema") if node.type == "artifact" else None
            if s and s.get("columns"):
                schema = s
                break
    except NbmlopsError:
        pass
    return signature_from_schema(schema, class_name=cls or class_name, fitted_on=fitted_on)


# -- aliases and the audit log --------------------------------------------------------------------


def set_alias(store: Store, name: str, alias: str, version: int, *,
              reason: str | None = None) -> ModelEvent | None:
    """Point ``alias`` at ``version`` (an ``alias`` event from -> to); None when it already
    points there (no event). :class:`NotFoundError` for a missing version: nothing changes."""
    return store.registry.set_alias(name, check_alias(alias), _check_version(version),
                                    actor=_actor(reason))


def promote(store: Store, name: str, version: int, alias: str = "champion",
            reason: str | None = None, *, user: str | None = None,
            expect: int | None | bool = True) -> ModelEvent | None:
    """Point ``alias`` (default ``champion``) at ``version`` as a ``promote`` event (``user``:
    who asked, when not this process's OS user). ``expect`` (a version, or None for "no such
    alias yet") makes the move conditional on where the alias points now."""
    return store.registry.set_alias(name, check_alias(alias), _check_version(version),
                                    actor=_actor(reason, user=user), kind="promote",
                                    expect=expect)


def rollback(store: Store, name: str, alias: str = "champion",
             reason: str | None = None, *, user: str | None = None) -> ModelEvent:
    """Move ``alias`` back to the version it pointed at before its latest move (from the audit
    log; repeated rollbacks walk further back). Refused when there is no earlier version."""
    return store.registry.rollback(name, check_alias(alias), actor=_actor(reason, user=user))


def remove_alias(store: Store, name: str, alias: str, *, reason: str | None = None) -> ModelEvent:
    """Delete ``alias`` (an ``unalias`` event)."""
    return store.registry.remove_alias(name, check_alias(alias), actor=_actor(reason))


def remove_version(store: Store, name: str, version: int, *,
                   reason: str | None = None) -> ModelVersion:
    """Delete a version's record (an ``rm`` event); refused, naming the alias, while an alias
    points at it. Its file stays in the content-addressed artifact directory."""
    return store.registry.remove_version(name, _check_version(version), actor=_actor(reason))


def record_event(store: Store, name: str, kind: str, *, details: Mapping[str, Any] | None = None,
                 reason: str | None = None, run_id: str | None = None, alias: str | None = None,
                 from_version: int | None = None, to_version: int | None = None) -> ModelEvent:
    """Append an audit event that moves nothing (``kind`` ``gate`` for promotion-gate
    decisions: ``details`` holds the rule, both scores, the data fingerprint and the outcome)."""
    if not re.match(r"^[a-z][a-z_-]{0,31}$", kind or ""):
        raise InvalidArgumentError(f"invalid event kind {kind!r}")
    return store.registry.record_event(
        name, kind, actor=_actor(reason, run_id), alias=alias, from_version=from_version,
        to_version=to_version, details=details)


# -- loading ------------------------------------------------------------------------------------


def stored_file(store: Store, version: ModelVersion) -> Path:
    """A local file of a version: its content address in this store's artifact store (so a
    moved project still finds it; for object storage a verified copy in the local read cache),
    else the path recorded at registration. A file missing everywhere is returned as its
    content address, which the loader's digest check refuses."""
    if store.artifacts.remote:
        try:
            return store.artifacts.get_local(version.digest)
        except NotFoundError:
            recorded = Path(version.stored_path)
            if "://" not in version.stored_path and recorded.exists():
                return recorded
            return store.artifacts.path_for(version.digest)
    path = store.artifacts.path_for(version.digest)
    return path if path.exists() or not Path(version.stored_path).exists() else Path(version.stored_path)


def load_model(uri_or_path: str | os.PathLike[str], store: Store | None = None) -> Any:
    """Load a registered version (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/NAME/latest``) or a model file.

    A version's stored file is checked against its registered SHA-256 first; a changed or
    missing file is refused (:class:`~nbmlops.registry.loading.ModelFileChangedError`) and
    nothing is loaded or written. In a captured kernel the load is recorded as a read of the
    version's file by the running cell."""
    if isinstance(uri_or_path, str) and uri_or_path.startswith(MODEL_URI_PREFIX):
        if store is None:
            from ..query import default_store

            store = default_store()
        version = resolve_model_uri(store, uri_or_path)
        path = stored_file(store, version)
        verify_file(path, version.digest, label=uri_or_path)
        obj = load_file(path, version.format,
                        trusted=list(version.info.get("trusted_types") or []))
        session = _session()
        if session is not None and session.cell_active:
            session.on_io(_artifact_io(version, "read", "load_model"))
        return obj
    path = Path(uri_or_path)
    if not path.is_file():
        raise NotFoundError(f"no model file {path} (a registered model is models:/NAME@ALIAS "
                            "or models:/NAME/VERSION)")
    fmt = detect_format(path)
    trusted = None
    if fmt == "skops":
        import skops.io as sio

        trusted = list(sio.get_untrusted_types(file=path))
    return load_file(path, fmt, trusted=trusted)


# -- lineage summary ----------------------------------------------------------------------------


def version_lineage(store: Store, version: ModelVersion) -> dict[str, Any]:
    """What a model card needs, from lineage alone: the run (params, metrics, environment, git
    commit), the cell that fitted the model, every upstream cell with its source, and the
    datasets read upstream with fingerprints, sizes and schemas."""
    out: dict[str, Any] = {
        "model": version.model, "version": version.version, "uri": version.uri,
        "digest": version.digest, "format": version.format, "model_class": version.model_class,
        "signature": version.signature, "created_at": version.created_at,
        "created_by": version.created_by, "run": None, "cell": None, "cells": [],
        "datasets": [], "params": {}, "metrics": {}, "environment": None,
        "git_commit": None, "git_dirty": None,
    }
    if version.run_id is not None:
        try:
            run = store.get_run(version.run_id)
        except NotFoundError:
            run = None
        if run is not None:
            out["run"] = {"id": run.id, "name": run.name, "experiment": run.experiment,
                          "source": run.source, "status": run.status,
                          "notebook_path": run.notebook_path, "notebook_hash": run.notebook_hash,
                          "start_time": run.start_time, "end_time": run.end_time,
                          "parent_run_id": run.parent_run_id}
            out.update(params=dict(run.params), metrics=dict(run.metrics),
                       environment=run.environment, git_commit=run.git_commit,
                       git_dirty=run.git_dirty)
    if version.cell_execution_id is not None:
        graph = store.lineage(f"cell:{version.cell_execution_id}", direction="upstream")
        reads = {e.source for e in graph.edges if e.label == "read"}
        cells = []
        for node in graph.nodes:
            if node.type == "cell":
                a = node.attrs
                cells.append({"id": int(node.id.split(":", 1)[1]), "run_id": a.get("run_id"),
                              "seq": a.get("seq"), "cell_id": a.get("cell_id"),
                              "execution_count": a.get("execution_count"),
                              "status": a.get("status"), "source": a.get("source")})
            elif node.type == "artifact" and node.id in reads:
                a = node.attrs
                out["datasets"].append({"id": int(node.id.split(":", 1)[1]), "uri": a.get("uri"),
                                        "kind": a.get("kind"), "fingerprint": a.get("fingerprint"),
                                        "size": a.get("size"), "schema": a.get("schema")})
        cells.sort(key=lambda c: (str(c["run_id"]), c["seq"] if c["seq"] is not None else -1))
        out["cells"] = cells
        out["cell"] = next((c for c in cells if c["id"] == version.cell_execution_id), None)
    return out

