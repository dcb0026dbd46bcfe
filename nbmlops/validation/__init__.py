"""Data validation: schemas inferred from a reference dataset, checks and drift statistics,
results recorded in the lineage store against the run, the cell and the datasets.

``nbmlops.validate(df, against=REF)`` is the entry point (see :func:`validate`); the
``nbmlops validate`` command and the pipeline runner's ``validate:`` step option call it too.
Importing this package imports pandas and numpy (not ``import nbmlops``: it resolves lazily).
"""

from __future__ import annotations

from .result import ValidationResult
from .schema import DEFAULT_THRESHOLDS, Schema, Thresholds, infer_schema
from .service import load_dataset, resolve_reference, validate

__all__ = ["validate", "infer_schema", "Schema", "Thresholds", "ValidationResult",
           "DEFAULT_THRESHOLDS", "load_dataset", "resolve_reference"]
