"""``nbmlops export airflow|kfp`` and the hidden worker-side pipeline commands (placeholder,
filled in by the orchestrator-export work)."""

from __future__ import annotations

import click


@click.group("export")
def export_group() -> None:
    """Hand a pipeline to a real orchestrator (Airflow 3, Kubeflow Pipelines v2)."""


def register_pipeline_commands(pipeline_group: click.Group) -> None:
    """Add the worker-side commands orchestrator tasks call to ``nbmlops pipeline``."""
