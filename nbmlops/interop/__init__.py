"""Interop with other tracking tools (MLflow): runs, params, metric histories, tags and artifacts
copied both ways, each copy marked with the id of its origin so a second copy never duplicates.

The other tool's package is imported only when a transfer runs (``nbmlops[mlflow]``).
"""

from __future__ import annotations

__all__ = ["export_to_mlflow", "import_from_mlflow", "TransferReport", "TransferredRun"]

from .mlflow import TransferredRun, TransferReport, export_to_mlflow, import_from_mlflow
