"""Data validation results, as the store keeps them.

Reached as :attr:`Store.validations <nbmlops.store.Store.validations>`. A validation links the
data checked and the reference (or stored schema) to the run and cell that ran it, so lineage can
show "validated against".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from .engine import SessionManager
from .entities import Artifact, ArtifactIO, Validation
from .models import ArtifactRow, ValidationRow
from .rows import artifact_row_id, cell_ids_by_seq

__all__ = ["ValidationRepo"]


def _validation(row: ValidationRow) -> Validation:
    return Validation(
        id=row.id, run_id=row.run_id, cell_seq=row.cell_seq, data_label=row.data_label,
        data_fingerprint=row.data_fingerprint, dataset_artifact_id=row.dataset_artifact_id,
        reference_label=row.reference_label, reference_artifact_id=row.reference_artifact_id,
        schema_artifact_id=row.schema_artifact_id, passed=bool(row.passed), rows=row.rows,
        violations=list(row.violations or []), summary=dict(row.summary or {}),
        created_at=row.created_at,
    )


class ValidationRepo:
    """The store's ``validations`` table."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions

    def record(
        self,
        *,
        passed: bool,
        data_label: str,
        reference_label: str,
        violations: Sequence[Mapping[str, Any]] = (),
        summary: Mapping[str, Any] | None = None,
        rows: int | None = None,
        data_fingerprint: str | None = None,
        dataset: ArtifactIO | None = None,
        reference: ArtifactIO | None = None,
        schema: ArtifactIO | None = None,
        run_id: str | None = None,
        cell_seq: int | None = None,
    ) -> Validation:
        """Record one validation. ``dataset``/``reference``/``schema`` name artifact versions
        (created when new, like a read or write capture saw); the cell is looked up by
        ``cell_seq`` in ``run_id`` (it may not be written yet: then only the seq is kept)."""

        def work(s: Session) -> Validation:
            cid = None
            if run_id is not None and cell_seq is not None:
                cid = cell_ids_by_seq(s, run_id, [cell_seq]).get(cell_seq)
            row = ValidationRow(
                run_id=run_id, cell_execution_id=cid, cell_seq=cell_seq, data_label=data_label,
                data_fingerprint=data_fingerprint,
                dataset_artifact_id=artifact_row_id(s, dataset) if dataset else None,
                reference_label=reference_label,
                reference_artifact_id=artifact_row_id(s, reference) if reference else None,
                schema_artifact_id=artifact_row_id(s, schema) if schema else None,
                passed=bool(passed), rows=rows, violations=[dict(v) for v in violations],
                summary=dict(summary or {}), created_at=time.time(),
            )
            s.add(row)
            s.flush()
            return _validation(row)

        return self._sessions.write(work)

    def for_run(self, run_id: str) -> list[Validation]:
        """A run's validations, oldest first."""
        with self._sessions.read() as s:
            query = select(ValidationRow).where(ValidationRow.run_id == run_id)
            return [_validation(r) for r in s.scalars(query.order_by(ValidationRow.id))]

    def for_artifact(self, artifact_id: int, *, limit: int = 50) -> list[Validation]:
        """Validations of one artifact version, as the data checked or as the reference;
        newest first."""
        with self._sessions.read() as s:
            query = select(ValidationRow).where(
                (ValidationRow.dataset_artifact_id == artifact_id)
                | (ValidationRow.reference_artifact_id == artifact_id)
            )
            rows = s.scalars(query.order_by(ValidationRow.id.desc()).limit(limit))
            return [_validation(r) for r in rows]

    def get(self, validation_id: int) -> Validation:
        with self._sessions.read() as s:
            row = s.get(ValidationRow, validation_id)
            if row is None:
                raise NotFoundError(f"no validation {validation_id}")
            return _validation(row)

    def artifact(self, artifact_id: int) -> Artifact:
        """One artifact version by id (a reference dataset or a stored schema), for resolving
        ``artifact:ID`` references."""
        with self._sessions.read() as s:
            row = s.get(ArtifactRow, artifact_id)
            if row is None:
                raise NotFoundError(f"no artifact {artifact_id}")
            return Artifact(id=row.id, uri=row.uri, kind=row.kind, fingerprint=row.fingerprint,
                            size=row.size, schema=row.schema, stored_path=row.stored_path)
