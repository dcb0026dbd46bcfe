"""``nbmlops import mlflow`` (and the text/JSON output ``nbmlops export mlflow`` shares): click
faces over :mod:`nbmlops.interop` (see ``docs/mlflow.md``).

The tracking store is checked before the nbmlops store is opened, so a bad ``--tracking-uri``
writes nothing anywhere. MLflow is imported only when a transfer runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ._common import echo_json, json_option

if TYPE_CHECKING:
    from ..interop import TransferReport

__all__ = ["import_group", "tracking_uri_option", "quiet_mlflow", "echo_report"]

tracking_uri_option = click.option(
    "--tracking-uri", required=True, metavar="URI",
    help="The MLflow tracking store: sqlite:///PATH, another SQLAlchemy database URL, an "
    "http(s):// tracking server, or an mlruns directory.")


def quiet_mlflow() -> None:
    """MLflow's own log handler, download progress bars and "View run at" lines (written to
    stdout, which would break --json) stay off: the CLI prints one summary (MLflow's INFO
    messages still come with -v through our logging)."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def echo_report(report: TransferReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.to_dict())
        return
    verb = "exported" if report.direction == "export" else "imported"
    for r in report.runs:
        if r.action == "skipped":
            click.echo(f"skipped {r.source_id[:8]} {r.name}: {r.reason}"
                       + (f" (now {r.target_id[:8]})" if r.target_id else ""))
            continue
        what = verb if r.action == "created" else "updated"
        click.echo(f"{what} {r.source_id[:8]} {r.name} -> {(r.target_id or '-')[:8]} "
                   f"[{r.experiment}]: {r.params} params, {r.metrics} metric values, "
                   f"{r.tags} tags, {r.artifacts} files")
        for what in r.left_out:
            click.echo(f"  left out: {what}", err=True)
    click.echo(f"{report.created} run(s) {verb}, {report.updated} updated, "
               f"{report.skipped} skipped "
               f"({'to' if report.direction == 'export' else 'from'} {report.tracking_uri})")


@click.group("import")
def import_group() -> None:
    """Bring runs from another tracking tool into the nbmlops store."""


@import_group.command("mlflow")
@tracking_uri_option
@click.option("--experiment", metavar="NAME",
              help="Only this MLflow experiment (default: every active experiment).")
@json_option
@click.pass_context
def import_mlflow_command(ctx: click.Context, tracking_uri: str, experiment: str | None,
                          as_json: bool) -> None:
    """Copy MLflow runs into the nbmlops store (needs `pip install 'nbmlops[mlflow]'`).

    Each run keeps its MLflow run id, its name, status, times, params, full metric histories
    (steps and timestamps), tags and files, in the experiment of the same name; it is tagged
    mlflow.run_id. Runs imported before, or exported from this store, are skipped, so a second
    import adds nothing; a run imported while it was running is brought up to date.

    \b
    --json prints {"direction", "tracking_uri", "created", "updated", "skipped", "runs":
    [{"source_id", "target_id", "name", "experiment", "action", "reason", "params", "metrics",
    "tags", "artifacts", "left_out"}]}.
    """
    from ..interop.mlflow import import_from_mlflow, open_client
    from ._common import writable_store

    quiet_mlflow()
    client = open_client(tracking_uri, create=False)  # before the store is opened or created
    report = import_from_mlflow(writable_store(ctx), tracking_uri, experiment=experiment,
                                client=client)
    echo_report(report, as_json)
