"""Which cell executions of a run are stale: their inputs changed after they ran.

A cell execution is *stale* when a variable it used was redefined by a later execution of
another cell, or when a file it read has changed since: a later cell of the run wrote or read
another version of it, or the file on disk no longer has the fingerprint the cell saw. An
execution followed by a re-execution of the same cell is *superseded* instead (the newer row
tells the current state). Pure functions over store entities, plus an optional file check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ..store.entities import CellExecution

__all__ = ["StaleInfo", "stale_markers"]

#: Fingerprints that describe a file's bytes (others describe in-memory objects).
_FILE_FINGERPRINTS = ("sha256:", "sampled:")

#: ``uri -> (fingerprint or None when missing, api path)``, or ``None`` to skip the disk check.
DiskCheck = Callable[[str], "tuple[str | None, str | None] | None"]


class StaleInfo(dict[int, dict[str, Any]]):
    """``seq -> {"stale": [reasons], "superseded_by": seq | None}``."""


def _reason(kind: str, how: str, *, name: str | None = None, uri: str | None = None,
            by: CellExecution | None = None) -> dict[str, Any]:
    """One stale reason; every reason has the same keys (``None`` where they do not apply)."""
    return {"kind": kind, "how": how, "name": name, "uri": uri,
            "by_seq": by.seq if by is not None else None,
            "by_execution_count": by.execution_count if by is not None else None}


def _same_cell(a: CellExecution, b: CellExecution) -> bool:
    return a.cell_id is not None and a.cell_id == b.cell_id


def stale_markers(cells: Sequence[CellExecution], disk: DiskCheck | None = None) -> StaleInfo:
    """Stale reasons and supersession for every cell execution of one run (in seq order)."""
    ordered = sorted(cells, key=lambda c: c.seq)
    definers: dict[str, list[CellExecution]] = defaultdict(list)
    file_events: dict[str, list[tuple[CellExecution, str, str]]] = defaultdict(list)
    latest_of_cell: dict[str, CellExecution] = {}
    for c in ordered:
        for v in c.vars_defined:
            definers[v].append(c)
        for a in c.writes:
            file_events[a.uri].append((c, a.fingerprint, "rewritten"))
        for a in c.reads:
            file_events[a.uri].append((c, a.fingerprint, "changed"))
        if c.cell_id is not None:
            latest_of_cell[c.cell_id] = c
    disk_cache: dict[str, tuple[str | None, str | None] | None] = {}
    out = StaleInfo()
    for c in ordered:
        reasons: list[dict[str, Any]] = []
        for v in c.vars_used:
            for d in reversed(definers.get(v, ())):
                if d.seq <= c.seq:
                    break
                if not _same_cell(d, c):
                    reasons.append(_reason("variable", "redefined", name=v, by=d))
                    break
        for a in c.reads:
            changed: dict[str, Any] | None = None
            for d, fp, how in file_events.get(a.uri, ()):
                if d.seq > c.seq and fp and a.fingerprint and fp != a.fingerprint:
                    changed = _reason("file", how, uri=a.uri, by=d)
                    break
            if changed is None and disk is not None and a.fingerprint.startswith(_FILE_FINGERPRINTS):
                if a.uri not in disk_cache:
                    disk_cache[a.uri] = disk(a.uri)
                now = disk_cache[a.uri]
                if now is not None and now[0] != a.fingerprint:
                    changed = _reason("file", "deleted" if now[0] is None else "changed on disk",
                                      uri=a.uri)
            if changed is not None:
                reasons.append(changed)
        latest = latest_of_cell.get(c.cell_id) if c.cell_id is not None else None
        out[c.seq] = {
            "stale": reasons,
            "superseded_by": latest.seq if latest is not None and latest.seq != c.seq else None,
        }
    return out
