"""Row helpers several store modules share: the id of an artifact version (inserted when new)
and the ids of a run's cell executions by sequence number. Each runs inside the caller's session."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select, tuple_, update
from sqlalchemy.orm import Session

from .engine import insert_ignore_many
from .entities import ArtifactIO
from .models import ArtifactRow, CellExecutionRow

__all__ = ["IN_CHUNK", "artifact_row_id", "artifact_row_ids", "cell_ids_by_seq", "chunks", "table_of"]

#: ids per IN (...) list: below SQLite's and PostgreSQL's parameter limits
IN_CHUNK = 500


def chunks(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def table_of(model: type[Any]) -> Table:
    """The Core table of an ORM model (Core statements skip the ORM's per-row bookkeeping)."""
    return cast(Table, model.__table__)


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


def artifact_row_ids(s: Session, ios: Sequence[ArtifactIO]) -> list[int]:
    """The artifact row id of each of ``ios`` (rows inserted when new), with one query for the
    known ones, one insert for the new ones and one query for their ids, however many there are.

    The same (uri, fingerprint) seen again keeps its row; it gains a schema it lacked, and a
    ``file`` row becomes the more specific kind (dataset, model) a later read or write names."""
    if not ios:
        return []
    table = table_of(ArtifactRow)
    keys = list(dict.fromkeys((io.uri, io.fingerprint) for io in ios))

    def lookup(wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for chunk in chunks(wanted, IN_CHUNK // 2):  # two parameters per key
            for row in s.execute(
                select(table.c.id, table.c.uri, table.c.fingerprint, table.c.kind, table.c.schema)
                .where(tuple_(table.c.uri, table.c.fingerprint).in_(chunk))
            ):
                found[(row.uri, row.fingerprint)] = {
                    "id": row.id, "kind": row.kind, "schema": row.schema}
        return found

    rows = lookup(keys)
    missing = [k for k in keys if k not in rows]
    created: set[tuple[str, str]] = set()
    if missing:
        first: dict[tuple[str, str], ArtifactIO] = {}
        for io in ios:
            first.setdefault((io.uri, io.fingerprint), io)
        now = time.time()
        insert_ignore_many(s, ArtifactRow, [
            {"uri": io.uri, "kind": io.kind, "fingerprint": io.fingerprint, "size": io.size,
             "schema": io.schema, "created_at": now}
            for io in (first[k] for k in missing)
        ])
        rows.update(lookup(missing))
        created.update(missing)
    changed: dict[tuple[str, str], dict[str, Any]] = {}
    for io in ios:  # in order, as if each were looked up after the one before it was stored
        key = (io.uri, io.fingerprint)
        row = rows[key]
        if key in created:
            created.discard(key)  # this io made the row (or lost the race to a writer that did)
        elif io.schema and not row["schema"]:
            row["schema"] = changed.setdefault(key, {})["schema"] = io.schema
        if io.kind != "file" and row["kind"] == "file":
            row["kind"] = changed.setdefault(key, {})["kind"] = io.kind
    for key, values in changed.items():
        s.execute(update(table).where(table.c.id == rows[key]["id"]).values(**values))
    return [rows[(io.uri, io.fingerprint)]["id"] for io in ios]


def artifact_row_id(s: Session, io: ArtifactIO) -> int:
    return artifact_row_ids(s, [io])[0]


def insert_ignore_rows(s: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """:func:`~.engine.insert_ignore_many` as one executemany of a statement compiled once (a
    multi-row VALUES is compiled anew for each call: more client CPU than the insert itself)."""
    if not rows:
        return
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        insert_ignore_many(s, model, rows)
        return
    first = next(iter(rows[0]))  # in key order: overlapping writers lock rows in the same order
    s.execute(insert(table_of(model)).on_conflict_do_nothing(),
              sorted(rows, key=lambda r: r[first]))


def insert_rows(s: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` in order. On PostgreSQL as multi-row INSERTs (SQLAlchemy's
    "insertmanyvalues", which needs a RETURNING): psycopg's executemany sends one statement per
    row through its pipeline (measured: 10-15% more server CPU per cell record)."""
    if not rows:
        return
    if s.get_bind().dialect.name == "postgresql":
        s.execute(insert(table).returning(table.c.id), rows).close()
    else:
        s.execute(insert(table), rows)
