"""The model registry, as the store keeps it: registered models, versions, aliases, audit events.

Reached as :attr:`Store.registry <nbmlops.store.Store.registry>`. Every method is one short
transaction. Changes to one model (a new version, an alias move, a removal) first lock the
model's row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write transactions are serialised
by ``BEGIN IMMEDIATE``), then read the current state, change it and append the audit event in
the same transaction: two processes promoting the same model at once make two ordered changes
(or one change and one no-op), never a lost or doubled event, and an alias can only name a
version that exists (a foreign key backs this up).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import InvalidArgumentError, NotFoundError
from .engine import SessionManager, insert_ignore
from .entities import ArtifactIO, ModelEvent, ModelVersion, RegisteredModel
from .models import (
    ArtifactEdgeRow,
    ArtifactRow,
    CellExecutionRow,
    EstimatorRow,
    ModelAliasRow,
    ModelEventRow,
    ModelVersionRow,
    RegisteredModelRow,
)
from .rows import artifact_row_id

__all__ = ["RegistryRepo", "AliasError", "ALIAS_MOVES"]

#: event kinds that point an alias at a version (rollback pops them); a ``gate`` event records
#: a decision only (the promotion that may follow is its own ``promote`` event)
ALIAS_MOVES = ("alias", "promote")

_VERSION_FIELDS = (
    "digest", "format", "size", "stored_path", "source_uri", "model_class", "run_id",
    "cell_execution_id", "signature", "info", "status", "created_by",
)


class AliasError(InvalidArgumentError):
    """An alias change the registry refuses (no earlier version to roll back to, a version an
    alias still points at...)."""


def _event(row: ModelEventRow, name: str) -> ModelEvent:
    return ModelEvent(
        id=row.id, model=name, kind=row.kind, alias=row.alias, from_version=row.from_version,
        to_version=row.to_version, reason=row.reason, user=row.user, host=row.host,
        run_id=row.run_id, details=dict(row.details or {}), created_at=row.created_at,
    )


def _version(row: ModelVersionRow, name: str, aliases: list[str],
             cell: tuple[int, int] | None = None) -> ModelVersion:
    info = dict(row.info or {})
    cell_id, seq = (row.cell_execution_id, info.get("cell_seq"))
    if cell is not None:
        cell_id, seq = cell
    return ModelVersion(
        id=row.id, model=name, version=row.version, digest=row.digest, format=row.format,
        size=row.size, stored_path=row.stored_path, source_uri=row.source_uri,
        model_class=row.model_class, run_id=row.run_id, cell_execution_id=cell_id,
        cell_seq=seq, artifact_id=row.artifact_id, signature=dict(row.signature or {}), info=info,
        status=row.status, created_at=row.created_at, created_by=row.created_by,
        aliases=sorted(aliases),
    )


class RegistryRepo:
    """The store's registry tables."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions

    # -- helpers --------------------------------------------------------------------------------

    def _not_found(self, s: Session, name: str) -> str:
        names = list(s.scalars(select(RegisteredModelRow.name).order_by(RegisteredModelRow.name)))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            "; none is registered yet (nbmlops models register, %mlops register)" if not names
            else " (nbmlops models ls lists them)")
        return f"no registered model named {name!r}{hint}"

    def _model(self, s: Session, name: str, *, lock: bool = False) -> RegisteredModelRow:
        query = select(RegisteredModelRow).where(RegisteredModelRow.name == name)
        if lock:
            query = query.with_for_update()
        row = s.scalar(query)
        if row is None:
            raise NotFoundError(self._not_found(s, name))
        return row

    def _version_row(self, s: Session, model: RegisteredModelRow, version: int) -> ModelVersionRow:
        row = s.scalar(select(ModelVersionRow).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.version == version))
        if row is None:
            have = list(s.scalars(select(ModelVersionRow.version).where(
                ModelVersionRow.model_id == model.id).order_by(ModelVersionRow.version)))
            listed = ", ".join(map(str, have[-10:])) if have else "none"
            raise NotFoundError(f"model {model.name!r} has no version {version} (versions: {listed})")
        return row

    def _aliases_of(self, s: Session, model_id: int) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for alias, vid in s.execute(select(ModelAliasRow.alias, ModelAliasRow.version_id).where(
                ModelAliasRow.model_id == model_id)):
            out.setdefault(vid, []).append(alias)
        return out

    def _add_event(self, s: Session, model: RegisteredModelRow, kind: str, *, now: float,
                   actor: Mapping[str, Any], alias: str | None = None,
                   from_version: int | None = None, to_version: int | None = None,
                   details: Mapping[str, Any] | None = None) -> ModelEvent:
        row = ModelEventRow(
            model_id=model.id, kind=kind, alias=alias, from_version=from_version,
            to_version=to_version, reason=actor.get("reason"), user=actor.get("user"),
            host=actor.get("host"), run_id=actor.get("run_id"), details=dict(details or {}),
            created_at=now,
        )
        s.add(row)
        model.updated_at = now
        s.flush()
        return _event(row, model.name)

    def _cell_for(self, s: Session, row: ModelVersionRow) -> tuple[int, int] | None:
        """The cell that fitted the version's model, resolved from what capture recorded."""
        info = row.info or {}
        if row.cell_execution_id is not None:
            seq = s.scalar(select(CellExecutionRow.seq).where(
                CellExecutionRow.id == row.cell_execution_id))
            return (row.cell_execution_id, seq) if seq is not None else None
        if row.run_id is None:
            return None
        variable, upto = info.get("variable"), info.get("cell_seq")
        if variable:
            found = self.estimator_cell_in(s, row.run_id, variable, upto)
            if found is not None:
                return found[0], found[1]
        if upto is not None:
            cid = s.scalar(select(CellExecutionRow.id).where(
                CellExecutionRow.run_id == row.run_id, CellExecutionRow.seq == upto))
            if cid is not None:
                return cid, int(upto)
        return None

    @staticmethod
    def estimator_cell_in(s: Session, run_id: str, variable: str,
                          max_seq: int | None) -> tuple[int, int, list[str], str] | None:
        query = (
            select(EstimatorRow.cell_execution_id, CellExecutionRow.seq, EstimatorRow.fitted_on,
                   EstimatorRow.class_name)
            .join(CellExecutionRow, CellExecutionRow.id == EstimatorRow.cell_execution_id)
            .where(EstimatorRow.run_id == run_id, EstimatorRow.variable == variable)
        )
        if max_seq is not None:
            query = query.where(CellExecutionRow.seq <= max_seq)
        hit = s.execute(query.order_by(CellExecutionRow.seq.desc()).limit(1)).first()
        if hit is None:
            return None
        return int(hit[0]), int(hit[1]), list(hit[2] or []), str(hit[3])

    # -- writes ---------------------------------------------------------------------------------

    def add_version(self, name: str, *, actor: Mapping[str, Any], alias: str | None = None,
                    artifact: ArtifactIO | None = None, **fields: Any) -> ModelVersion:
        """A new version of ``name`` (registered on first use) numbered after the newest, its
        ``register`` event and, with ``alias``, the alias pointed at it: one transaction.

        ``artifact`` (the stored file as an artifact version) is recorded and linked, so a later
        load shows up as a read of the same artifact in lineage. ``actor`` holds ``user``,
        ``host``, ``reason`` and ``run_id`` for the audit events."""
        unknown = set(fields) - set(_VERSION_FIELDS)
        if unknown:
            raise TypeError(f"unknown version fields: {sorted(unknown)}")

        def work(s: Session) -> ModelVersion:
            now = time.time()
            insert_ignore(s, RegisteredModelRow, {"name": name, "created_at": now, "updated_at": now})
            model = self._model(s, name, lock=True)
            newest = s.scalar(select(func.max(ModelVersionRow.version)).where(
                ModelVersionRow.model_id == model.id)) or 0
            artifact_id = None
            if artifact is not None:
                artifact_id = artifact_row_id(s, artifact)
                art = s.get(ArtifactRow, artifact_id)
                if art is not None and not art.stored_path:
                    art.stored_path = fields.get("stored_path")
            row = ModelVersionRow(model_id=model.id, version=newest + 1, created_at=now,
                                  artifact_id=artifact_id,
                                  **{"signature": {}, "info": {}, "status": "ready", **fields})
            s.add(row)
            s.flush()
            self._add_event(s, model, "register", now=now, actor=actor, to_version=row.version,
                            details={"digest": row.digest, "format": row.format})
            aliases = []
            if alias is not None:
                self._move_alias(s, model, alias, row, kind="alias", now=now, actor=actor)
                aliases.append(alias)
            return _version(row, name, aliases)

        return self._sessions.write(work)

    def _move_alias(self, s: Session, model: RegisteredModelRow, alias: str, target: ModelVersionRow,
                    *, kind: str, now: float, actor: Mapping[str, Any],
                    details: Mapping[str, Any] | None = None) -> ModelEvent | None:
        current = s.get(ModelAliasRow, (model.id, alias))
        before = None
        if current is not None:
            if current.version_id == target.id:
                return None  # already there: no change, no event
            before = s.scalar(select(ModelVersionRow.version).where(
                ModelVersionRow.id == current.version_id))
            current.version_id = target.id
            current.updated_at = now
        else:
            s.add(ModelAliasRow(model_id=model.id, alias=alias, version_id=target.id, updated_at=now))
        s.flush()
        return self._add_event(s, model, kind, now=now, actor=actor, alias=alias,
                               from_version=before, to_version=target.version, details=details)

    def set_alias(self, name: str, alias: str, version: int, *, actor: Mapping[str, Any],
                  kind: str = "alias", details: Mapping[str, Any] | None = None,
                  expect: int | None | bool = True) -> ModelEvent | None:
        """Point ``alias`` of ``name`` at ``version``; the event, or None when it already did.

        ``expect``: unless True, the version the alias must point at now (None: it must not
        exist), checked under the model's lock; otherwise :class:`AliasError` and no change
        (the promotion gate compared the candidate with that version)."""
        def work(s: Session) -> ModelEvent | None:
            model = self._model(s, name, lock=True)
            target = self._version_row(s, model, version)
            if expect is not True:
                row = s.get(ModelAliasRow, (model.id, alias))
                now_at = None if row is None else s.scalar(
                    select(ModelVersionRow.version).where(ModelVersionRow.id == row.version_id))
                if now_at != expect:
                    raise AliasError(
                        f"{name}@{alias} moved to "
                        f"{'nothing' if now_at is None else f'version {now_at}'} (expected "
                        f"{'none' if expect is None else f'version {expect}'}); nothing changed")
            return self._move_alias(s, model, alias, target, kind=kind, now=time.time(),
                                    actor=actor, details=details)

        return self._sessions.write(work)

    def rollback(self, name: str, alias: str, *, actor: Mapping[str, Any]) -> ModelEvent:
        """Move ``alias`` back to the version it pointed at before its latest move.

        The alias's past is replayed from the audit log: moves push a version, rollbacks pop
        one, removing the alias clears it; versions removed since are skipped."""
        def work(s: Session) -> ModelEvent:
            model = self._model(s, name, lock=True)
            current = s.get(ModelAliasRow, (model.id, alias))
            if current is None:
                raise AliasError(f"model {name!r} has no alias {alias!r}; nothing to roll back")
            stack: list[int] = []
            for kind, to_version in s.execute(
                select(ModelEventRow.kind, ModelEventRow.to_version)
                .where(ModelEventRow.model_id == model.id, ModelEventRow.alias == alias)
                .order_by(ModelEventRow.id)
            ):
                if kind in ALIAS_MOVES and to_version is not None:
                    stack.append(int(to_version))
                elif kind == "rollback" and stack:
                    stack.pop()
                elif kind == "unalias":
                    stack.clear()
            now_version = s.scalar(select(ModelVersionRow.version).where(
                ModelVersionRow.id == current.version_id))
            if stack and stack[-1] == now_version:
                stack.pop()
            existing = {v: vid for v, vid in s.execute(
                select(ModelVersionRow.version, ModelVersionRow.id).where(
                    ModelVersionRow.model_id == model.id))}
            while stack and (stack[-1] not in existing or stack[-1] == now_version):
                stack.pop()
            if not stack:
                raise AliasError(
                    f"{name}@{alias} has no earlier version to roll back to (it points at "
                    f"version {now_version}; nbmlops models history {name} shows its moves)")
            target = s.get(ModelVersionRow, existing[stack[-1]])
            assert target is not None
            event = self._move_alias(s, model, alias, target, kind="rollback", now=time.time(),
                                     actor=actor)
            assert event is not None
            return event

        return self._sessions.write(work)

    def remove_alias(self, name: str, alias: str, *, actor: Mapping[str, Any]) -> ModelEvent:
        def work(s: Session) -> ModelEvent:
            model = self._model(s, name, lock=True)
            current = s.get(ModelAliasRow, (model.id, alias))
            if current is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            before = s.scalar(select(ModelVersionRow.version).where(
                ModelVersionRow.id == current.version_id))
            s.delete(current)
            s.flush()
            return self._add_event(s, model, "unalias", now=time.time(), actor=actor, alias=alias,
                                   from_version=before)

        return self._sessions.write(work)

    def remove_version(self, name: str, version: int, *, actor: Mapping[str, Any]) -> ModelVersion:
        """Delete one version's record (refused while an alias points at it). The stored file
        stays in the content-addressed directory: other versions or artifacts may share it."""
        def work(s: Session) -> ModelVersion:
            model = self._model(s, name, lock=True)
            row = self._version_row(s, model, version)
            aliases = self._aliases_of(s, model.id).get(row.id, [])
            if aliases:
                named = ", ".join(f"{name}@{a}" for a in sorted(aliases))
                raise AliasError(
                    f"version {version} of {name!r} is what {named} points at; move the alias "
                    f"first (nbmlops models alias {name} {sorted(aliases)[0]} VERSION)")
            gone = _version(row, name, [])
            s.delete(row)
            s.flush()
            self._add_event(s, model, "rm", now=time.time(), actor=actor, from_version=version,
                            details={"digest": gone.digest})
            return gone

        return self._sessions.write(work)

    def record_event(self, name: str, kind: str, *, actor: Mapping[str, Any],
                     alias: str | None = None, from_version: int | None = None,
                     to_version: int | None = None,
                     details: Mapping[str, Any] | None = None) -> ModelEvent:
        """Append an event that changes nothing else (a gate decision, a note)."""
        def work(s: Session) -> ModelEvent:
            model = self._model(s, name, lock=True)
            for v in (from_version, to_version):
                if v is not None:
                    self._version_row(s, model, v)
            return self._add_event(s, model, kind, now=time.time(), actor=actor, alias=alias,
                                   from_version=from_version, to_version=to_version,
                                   details=details)

        return self._sessions.write(work)

    # -- reads ----------------------------------------------------------------------------------

    def models(self) -> list[RegisteredModel]:
        """Every registered model by name, with its newest version, count and aliases (three
        queries, whatever the number of versions)."""
        with self._sessions.read() as s:
            rows = list(s.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name)))
            stats = {mid: (n, latest) for mid, n, latest in s.execute(
                select(ModelVersionRow.model_id, func.count(), func.max(ModelVersionRow.version))
                .group_by(ModelVersionRow.model_id))}
            aliases: dict[int, dict[str, int]] = {}
            for mid, alias, version in s.execute(
                select(ModelAliasRow.model_id, ModelAliasRow.alias, ModelVersionRow.version)
                .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
            ):
                aliases.setdefault(mid, {})[alias] = version
            return [self._registered(r, stats.get(r.id), aliases.get(r.id, {})) for r in rows]

    @staticmethod
    def _registered(row: RegisteredModelRow, stat: tuple[int, int] | None,
                    aliases: dict[str, int]) -> RegisteredModel:
        count, latest = stat if stat is not None else (0, None)
        return RegisteredModel(
            id=row.id, name=row.name, description=row.description, created_at=row.created_at,
            updated_at=row.updated_at, latest_version=latest, version_count=int(count),
            aliases=dict(sorted(aliases.items())),
        )

    def get_model(self, name: str) -> RegisteredModel:
        with self._sessions.read() as s:
            row = self._model(s, name)
            count, latest = s.execute(
                select(func.count(), func.max(ModelVersionRow.version))
                .where(ModelVersionRow.model_id == row.id)).one()
            aliases = {a: v for a, v in s.execute(
                select(ModelAliasRow.alias, ModelVersionRow.version)
                .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
                .where(ModelAliasRow.model_id == row.id))}
            return self._registered(row, (count, latest), aliases)

    def versions(self, name: str, *, limit: int | None = None) -> list[ModelVersion]:
        """Versions of ``name``, newest first (cells are not resolved here: see :meth:`version`)."""
        with self._sessions.read() as s:
            model = self._model(s, name)
            query = (select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
                     .order_by(ModelVersionRow.version.desc()))
            if limit is not None:
                query = query.limit(limit)
            aliases = self._aliases_of(s, model.id)
            return [_version(r, name, aliases.get(r.id, [])) for r in s.scalars(query)]

    def version(self, name: str, version: int | None = None, *, alias: str | None = None) -> ModelVersion:
        """One version by number, by alias, or (neither given) the newest; its fitting cell
        resolved from what capture recorded."""
        with self._sessions.read() as s:
            model = self._model(s, name)
            if alias is not None:
                current = s.get(ModelAliasRow, (model.id, alias))
                if current is None:
                    groups = self._aliases_of(s, model.id).values()
                    known = sorted(a for group in groups for a in group)
                    listed = ", ".join(known) if known else "none"
                    raise NotFoundError(f"model {name!r} has no alias {alias!r} (aliases: {listed})")
                row = s.get(ModelVersionRow, current.version_id)
                assert row is not None
            elif version is not None:
                row = self._version_row(s, model, version)
            else:
                row = s.scalar(select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
                               .order_by(ModelVersionRow.version.desc()).limit(1))
                if row is None:
                    raise NotFoundError(f"model {name!r} has no versions")
            aliases = self._aliases_of(s, model.id).get(row.id, [])
            return _version(row, name, aliases, self._cell_for(s, row))

    def events(self, name: str, *, limit: int | None = None) -> list[ModelEvent]:
        """The audit log of ``name``, oldest first (the newest ``limit`` when given)."""
        with self._sessions.read() as s:
            model = self._model(s, name)
            query = select(ModelEventRow).where(ModelEventRow.model_id == model.id)
            if limit is not None:
                rows = list(s.scalars(query.order_by(ModelEventRow.id.desc()).limit(limit)))[::-1]
            else:
                rows = list(s.scalars(query.order_by(ModelEventRow.id)))
            return [_event(r, name) for r in rows]

    def writer_of(self, fingerprint: str) -> tuple[str, int | None] | None:
        """The run (and cell seq) that last wrote a file with this content fingerprint."""
        with self._sessions.read() as s:
            hit = s.execute(
                select(ArtifactEdgeRow.run_id, CellExecutionRow.seq)
                .join(ArtifactRow, ArtifactRow.id == ArtifactEdgeRow.artifact_id)
                .outerjoin(CellExecutionRow, CellExecutionRow.id == ArtifactEdgeRow.cell_execution_id)
                .where(ArtifactRow.fingerprint == fingerprint, ArtifactEdgeRow.direction == "wrote")
                .order_by(ArtifactEdgeRow.id.desc()).limit(1)
            ).first()
            return None if hit is None else (str(hit[0]), hit[1])

    def estimator_cell(self, run_id: str, variable: str,
                       max_seq: int | None = None) -> tuple[int, int, list[str], str] | None:
        """``(cell execution id, seq, fitted_on, class)`` of the last cell of ``run_id`` (up to
        ``max_seq``) that fitted ``variable``."""
        with self._sessions.read() as s:
            return self.estimator_cell_in(s, run_id, variable, max_seq)

    def estimators_of_run(self, run_id: str, class_name: str | None = None) -> list[tuple[str, int, str]]:
        """``(variable, seq, class)`` of every estimator a run fitted, in cell order."""
        query = (select(EstimatorRow.variable, CellExecutionRow.seq, EstimatorRow.class_name)
                 .join(CellExecutionRow, CellExecutionRow.id == EstimatorRow.cell_execution_id)
                 .where(EstimatorRow.run_id == run_id))
        if class_name is not None:
            query = query.where(EstimatorRow.class_name == class_name)
        with self._sessions.read() as s:
            return [(str(v), int(q), str(c)) for v, q, c in s.execute(query.order_by(CellExecutionRow.seq))]
