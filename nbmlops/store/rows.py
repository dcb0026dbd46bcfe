"""Row helpers several store modules share: the id of an artifact version (inserted when new)
and the ids of a run's cell executions by sequence number. Each runs inside the caller's session."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .engine import insert_ignore
from .entities import ArtifactIO
from .models import ArtifactRow, CellExecutionRow

__all__ = ["IN_CHUNK", "artifact_row_id", "cell_ids_by_seq", "chunks"]

#: ids per IN (...) list: below SQLite's and PostgreSQL's parameter limits
IN_CHUNK = 500


def chunks(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def cell_ids_by_seq(s: Session, run_id: str, seqs: Iterable[int]) -> dict[int, int]:
    wanted = sorted(set(seqs))
    out: dict[int, int] = {}
    for chunk in chunks(wanted):
        for seq, cid in s.execute(
            select(CellExecutionRow.seq, CellExecutionRow.id).where(
                CellExecutionRow.run_id == run_id, CellExecutionRow.seq.in_(chunk)
            )
        ):
            out[seq] = cid
    return out


def artifact_row_id(s: Session, io: ArtifactIO) -> int:
    query = select(ArtifactRow).where(
        ArtifactRow.uri == io.uri, ArtifactRow.fingerprint == io.fingerprint
    )
    row = s.scalar(query)
    if row is None:
        insert_ignore(s, ArtifactRow, {
            "uri": io.uri,
            "kind": io.kind,
            "fingerprint": io.fingerprint,
            "size": io.size,
            "schema": io.schema,
            "created_at": time.time(),
        })
        row = s.scalar(query)
        assert row is not None
    elif io.schema and not row.schema:
        row.schema = io.schema
    if io.kind != "file" and row.kind == "file":
        row.kind = io.kind
    return row.id
