"""The lineage store: SQLAlchemy models, Alembic migrations and the :class:`Store` API.

The entities import nothing heavy; ``Store`` (and SQLAlchemy with it) loads on first access, so
that kernel capture can start without paying for SQLAlchemy on the kernel's thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .entities import (
    Artifact,
    ArtifactIO,
    CellExecution,
    CellRecord,
    Comparison,
    Estimator,
    LineageEdge,
    LineageGraph,
    LineageNode,
    MetricValue,
    Run,
    RunPage,
)

if TYPE_CHECKING:
    from .store import RUN_SORT_KEYS, Store, open_store, source_hash

__all__ = [
    "Artifact",
    "ArtifactIO",
    "CellExecution",
    "CellRecord",
    "Comparison",
    "Estimator",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "MetricValue",
    "RUN_SORT_KEYS",
    "Run",
    "RunPage",
    "Store",
    "open_store",
    "source_hash",
]


def __getattr__(name: str) -> Any:
    if name in ("RUN_SORT_KEYS", "Store", "open_store", "source_hash"):
        from . import store as _store

        return getattr(_store, name)
    raise AttributeError(f"module 'nbmlops.store' has no attribute {name!r}")
