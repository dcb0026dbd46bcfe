"""The lineage store: SQLAlchemy models, Alembic migrations and the :class:`Store` API."""

from __future__ import annotations

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
