"""``nbmlops export airflow|kfp`` and the hidden worker-side commands orchestrator tasks run,
``nbmlops pipeline step`` and ``nbmlops pipeline finish`` (see ``docs/orchestrators.md``).

Loaded by :mod:`nbmlops.cli` (which adds :data:`export_group` to the root group and calls
:func:`register_pipeline_commands`); errors are :class:`~nbmlops.errors.NbmlopsError` and become
``Error: ...`` and an exit code there. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import json_option

if TYPE_CHECKING:
    from ..pipeline.runner import PipelineResult, StepRunner

__all__ = ["export_group", "register_pipeline_commands"]

pipeline_arg = click.argument(
    "definition", metavar="PIPELINE", type=click.Path(exists=True, path_type=Path)
)
command_option = click.option(
    "--nbmlops-command", default="nbmlops", show_default=True, metavar="COMMAND",
    help="How workers run nbmlops (a command line, e.g. /opt/venv/bin/nbmlops).",
)
project_option = click.option(
    "--project-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The project directory; paths are written relative to it (default: the directory "
    "holding .nbmlops/ above the pipeline, else the pipeline's directory).",
)
retry_delay_option = click.option(
    "--retry-delay", type=float, default=60.0, show_default=True, metavar="SECONDS",
    help="Wait before each retry of a failed step (steps retry `retries:` times).",
)


def _store_url() -> str | None:
    """The root group's --store (None when not given)."""
    from ._common import CliState

    state = click.get_current_context().find_object(CliState)
    return state.store_url if state is not None else None


@click.group("export")
def export_group() -> None:
    """Hand a pipeline to a real orchestrator (Airflow 3, Kubeflow Pipelines v2), or runs to
    MLflow.

    Every step becomes a task running `nbmlops pipeline step` on a worker, which records it in
    the nbmlops store like a local `nbmlops pipeline run` does. `export mlflow` copies recorded
    runs into an MLflow tracking store.
    """


@export_group.command("airflow")
@pipeline_arg
@click.option("-o", "--output", "dags_dir", required=True, metavar="DAGS_DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="The Airflow DAGs folder to write DAG_ID.py into (created if missing).")
@click.option("--dag-id", help="DAG id (default: the pipeline's name).")
@click.option("--cron", metavar="EXPR",
              help="Schedule: a cron expression such as '0 3 * * *' (default: no schedule, "
              "runs are triggered).")
@click.option("--tz", metavar="ZONE", help="Time zone of --cron, e.g. Europe/Paris "
              "(default: Airflow's default time zone).")
@click.option("--schedule", "schedule_name", metavar="NAME",
              help="Take cron and time zone from nbmlops schedule NAME. Without --cron or "
              "--schedule, the one cron schedule of PIPELINE in the store is used, if it has "
              "exactly one.")
@command_option
@project_option
@retry_delay_option
@json_option
def export_airflow_command(
    definition: Path, dags_dir: Path, dag_id: str | None, cron: str | None, tz: str | None,
    schedule_name: str | None, nbmlops_command: str, project_dir: Path | None,
    retry_delay: float, as_json: bool,
) -> None:
    """Write an Airflow 3 DAG file running PIPELINE: DAGS_DIR/DAG_ID.py.

    One task per step (same dependencies, retries and timeouts; the pipeline's params become
    DAG params), then a task ending the pipeline run. Tasks run in the pipeline's directory
    (NBMLOPS_PROJECT_DIR on the workers replaces the project directory) and use the store the
    workers find. Nothing but Airflow is imported by the DAG file; a file nbmlops did not
    generate is never overwritten.

    \b
    --json prints {"path", "dag_id", "tasks", "schedule"}.
    """
    from .. import _format
    from ..orchestrators.airflow import export_airflow
    from ..orchestrators.common import load_for_export

    src = load_for_export(definition, project_dir)
    if cron is None:
        cron, tz = _stored_schedule(src.pipeline.path, schedule_name, tz)
    elif schedule_name is not None:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError("give --cron or --schedule, not both")
    done = export_airflow(src, dags_dir, dag_id=dag_id, nbmlops_command=nbmlops_command,
                          cron=cron, tz=tz, retry_delay=retry_delay)
    if as_json:
        click.echo(_format.to_json({"path": str(done.path), "dag_id": done.dag_id,
                                    "tasks": done.tasks, "schedule": done.schedule}))
    else:
        click.echo(f"wrote {done.path}: DAG {done.dag_id}, {len(src.order)} steps + "
                   f"{done.tasks[-1]}" + (f", schedule {cron}" + (f" ({tz})" if tz else "")
                                          if cron else ""))


def _stored_schedule(
    pipeline_path: Path, name: str | None, tz: str | None
) -> tuple[str | None, str | None]:
    """Cron and zone of the nbmlops schedule ``name`` (or of the only cron schedule of this
    pipeline) from the store, if there is a store; ``(None, tz)`` when there is none."""
    import os

    from ..config import resolve_location
    from ..errors import InvalidArgumentError
    from ..store import Store

    loc = resolve_location(_store_url(), start=pipeline_path.parent)
    if loc.sqlite_path is not None and not loc.sqlite_path.exists():
        if name is not None:
            raise InvalidArgumentError(f"--schedule {name}: there is no nbmlops store "
                                       f"({loc.describe()})")
        return None, tz
    target = os.path.normpath(pipeline_path.absolute())
    with Store(loc) as store:
        if name is not None:
            sched = store.schedules.get(name)
            if sched.kind != "cron" or sched.target != target:
                raise InvalidArgumentError(
                    f"--schedule {name} is not a cron schedule of {pipeline_path.name} (it runs "
                    f"{sched.target})")
            return sched.cron, sched.timezone
        mine = [s for s in store.schedules.schedules(["cron"]) if s.target == target]
    if len(mine) > 1:
        raise InvalidArgumentError(
            f"{pipeline_path.name} has {len(mine)} schedules ({', '.join(s.name for s in mine)}); "
            "choose one with --schedule NAME, or give --cron")
    if mine:
        click.echo(f"using schedule {mine[0].name}: {mine[0].cron} ({mine[0].timezone})",
                   err=True)
        return mine[0].cron, mine[0].timezone
    return None, tz


@export_group.command("kfp")
@pipeline_arg
@click.option("-o", "--output", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The pipeline spec to write (YAML).")
@click.option("--image", required=True,
              help="Container image the steps run in; it needs nbmlops (and the notebooks' "
              "packages) installed.")
@click.option("--project-mount", metavar="PATH",
              help="Where the project directory is mounted in the containers (default: its "
              "path here).")
@command_option
@project_option
@retry_delay_option
@json_option
def export_kfp_command(
    definition: Path, output: Path, image: str, project_mount: str | None,
    nbmlops_command: str, project_dir: Path | None, retry_delay: float, as_json: bool,
) -> None:
    """Compile PIPELINE into a Kubeflow Pipelines v2 spec (needs `pip install 'nbmlops[kfp]'`).

    One container component per step running `nbmlops pipeline step` in IMAGE (dependencies,
    retries, the pipeline's params as pipeline inputs), and an exit handler ending the pipeline
    run. A file nbmlops did not generate is never overwritten.

    \b
    --json prints {"path", "name", "tasks", "image", "inputs"}.
    """
    from .. import _format
    from ..orchestrators.common import load_for_export
    from ..orchestrators.kfp import export_kfp

    src = load_for_export(definition, project_dir)
    done = export_kfp(src, output, image=image, nbmlops_command=nbmlops_command,
                      project_mount=project_mount, retry_delay=retry_delay)
    if as_json:
        click.echo(_format.to_json({"path": str(done.path), "name": done.name,
                                    "tasks": done.tasks, "image": done.image,
                                    "inputs": done.inputs}))
    else:
        click.echo(f"wrote {done.path}: pipeline {done.name}, {len(src.order)} steps + "
                   f"{done.tasks[-1]}, image {image}")


@export_group.command("mlflow")
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow tracking store: sqlite:///PATH (created if missing), another "
              "SQLAlchemy database URL, an http(s):// tracking server, or an mlruns directory.")
@click.option("--experiment", metavar="NAME",
              help="The experiment on both sides: without RUN, export the runs of this nbmlops "
              "experiment; put the runs into this MLflow experiment (default: each run's own "
              "experiment name).")
@json_option
@click.pass_context
def export_mlflow_command(ctx: click.Context, run_ids: tuple[str, ...], tracking_uri: str,
                          experiment: str | None, as_json: bool) -> None:
    """Copy runs into an MLflow tracking store (needs `pip install 'nbmlops[mlflow]'`).

    RUN ids (or unique prefixes; default: every run) with name, status, times, params, full
    metric histories (steps and timestamps), tags, the files the run wrote (the artifact
    store's copy, or the file itself if unchanged) and a lineage summary (artifact
    nbmlops/lineage.json: cells, variables, reads and writes). Each MLflow run is tagged
    nbmlops.run_id; runs exported before, or imported from that store, are skipped, so a second
    export adds nothing; a copy taken while the run was running is brought up to date.

    \b
    --json prints {"direction", "tracking_uri", "created", "updated", "skipped", "runs":
    [{"source_id", "target_id", "name", "experiment", "action", "reason", "params", "metrics",
    "tags", "artifacts", "left_out"}]}.
    """
    from ..interop.mlflow import export_to_mlflow
    from ._common import store_from
    from .interop import echo_report, quiet_mlflow

    quiet_mlflow()
    report = export_to_mlflow(store_from(ctx), tracking_uri, run_ids, experiment=experiment)
    echo_report(report, as_json)


# -- worker side ----------------------------------------------------------------------------------


def _worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--parent-key", required=True, metavar="KEY",
                      help="The orchestrator's run (e.g. DAG_ID/RUN_ID): the same key is the "
                      "same pipeline run."),
        click.option("-p", "--param", "param_pairs", nargs=2, multiple=True,
                     metavar="NAME VALUE", help="Override a pipeline parameter."),
        click.option("--params-json", metavar="JSON",
                     help="Pipeline parameter overrides as a JSON object (-p wins over it)."),
        click.option("--orchestrator", metavar="NAME",
                     help="Recorded as the pipeline run's nbmlops.orchestrator tag."),
        json_option,
    ]):
        f = option(f)
    return f


def _step_runner(
    definition: Path, parent_key: str, param_pairs: Sequence[tuple[str, str]],
    params_json: str | None, orchestrator: str | None, **kw: Any,
) -> StepRunner:
    from ..errors import InvalidArgumentError, StoreUnavailableError
    from ..pipeline.load import load_pipeline
    from ..pipeline.runner import StepRunner

    overrides: dict[str, Any] = {}
    if params_json:
        try:
            given = json.loads(params_json)
        except ValueError as exc:
            raise InvalidArgumentError(f"--params-json is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise InvalidArgumentError("--params-json must be a JSON object of NAME: VALUE")
        overrides.update(given)
    overrides.update(dict(param_pairs))
    runner = StepRunner(load_pipeline(definition), parent_key=parent_key,
                        orchestrator=orchestrator, store_url=_store_url(), params=overrides, **kw)
    db = runner.location.sqlite_path
    if db is not None and not db.exists():
        # a worker that does not see the project's store would start an empty one of its own
        raise StoreUnavailableError(
            f"no nbmlops store at {db} (looked for .nbmlops/ from {runner.pipeline.root} "
            "upwards); run `nbmlops init` in the project directory, or set NBMLOPS_STORE_URL "
            "on the workers"
        )
    return runner


def _on_sigterm(runner: StepRunner) -> Any:
    def handler(signum: int, frame: Any) -> None:
        click.echo("nbmlops: stopping the step (signal received)...", err=True)
        runner.cancel()

    return signal.signal(signal.SIGTERM, handler)


def register_pipeline_commands(pipeline_group: click.Group) -> None:
    """Add the worker-side commands orchestrator tasks call to ``nbmlops pipeline``."""

    @pipeline_group.command("step", hidden=True)
    @pipeline_arg
    @click.argument("step_name", metavar="STEP")
    @_worker_options
    @click.option("--force", is_flag=True, help="Run the step even when it is cached.")
    @click.option("--kernel", "kernel_name", default=None,
                  help="Jupyter kernel (default: the notebook's own).")
    def pipeline_step(
        definition: Path, step_name: str, parent_key: str, param_pairs: Sequence[tuple[str, str]],
        params_json: str | None, orchestrator: str | None, as_json: bool, force: bool,
        kernel_name: str | None,
    ) -> None:
        """Run one STEP of PIPELINE once (an orchestrator task; not for interactive use).

        The step is recorded as a child of the pipeline run KEY stands for (created by the
        first step that runs); the steps it depends on must have succeeded in that run. One
        attempt: the orchestrator retries. The step's timeout is enforced. Exits 1 when the
        step fails, 130 when stopped by SIGTERM.

        \b
        --json prints {"pipeline_run_id", "step", "state", "run_id", "attempt", "duration",
        "error", "failed_cell_index", "output_notebook", "cached_from"}.
        """
        from .. import _format
        from ..errors import ExecutionFailedError
        from ._common import CliError

        runner = _step_runner(definition, parent_key, param_pairs, params_json, orchestrator,
                              force=[step_name] if force else False, kernel_name=kernel_name)
        previous = _on_sigterm(runner)
        try:
            res = runner.run_step(step_name)
        finally:
            signal.signal(signal.SIGTERM, previous)
        name = runner.pipeline.name
        if as_json:
            click.echo(_format.to_json({
                "pipeline_run_id": runner.run_id, "step": step_name, "state": res.state,
                "run_id": res.run_id, "attempt": res.attempts, "duration": res.duration,
                "error": res.error, "failed_cell_index": res.failed_cell_index,
                "output_notebook": str(res.output_notebook) if res.output_notebook else None,
                "cached_from": res.cached_from,
            }))
        else:
            how = (f"cached (from {(res.cached_from or '-')[:8]})" if res.state == "cached"
                   else f"{res.state} in {res.duration:.1f}s (attempt {res.attempts})")
            click.echo(f"step {step_name} of {name}: {how}, run {(res.run_id or '-')[:8]} "
                       f"of pipeline run {runner.run_id[:8]}")
        if res.state == "cancelled":
            raise CliError(f"step {step_name} of {name} cancelled "
                           f"(run {(res.run_id or runner.run_id)[:8]} is recorded)", 130)
        if res.state == "failed":
            where = (f", cell {res.failed_cell_index}" if res.failed_cell_index is not None
                     else "")
            raise ExecutionFailedError(
                f"pipeline {name} failed: step {step_name}{where}: {res.error} "
                f"(run {(res.run_id or runner.run_id)[:8]} is recorded)"
            )

    @pipeline_group.command("finish", hidden=True)
    @pipeline_arg
    @_worker_options
    def pipeline_finish(
        definition: Path, parent_key: str, param_pairs: Sequence[tuple[str, str]],
        params_json: str | None, orchestrator: str | None, as_json: bool,
    ) -> None:
        """End the pipeline run KEY stands for (an orchestrator's last task).

        Its status and step tags come from the step runs recorded under it, as after a local
        `nbmlops pipeline run`; a step without a run is `skipped`. Exits 1 when the pipeline
        failed (so the orchestrator's run fails too), 130 when it was cancelled.

        \b
        --json prints {"run_id", "pipeline", "status", "duration", "steps": [{"name", "state",
        "run_id", "attempts", "duration", "error", "output_notebook", "cached_from"}]}.
        """
        from .. import _format
        from ..pipeline.progress import summary_table

        runner = _step_runner(definition, parent_key, param_pairs, params_json, orchestrator)
        result = runner.finish()
        if as_json:
            click.echo(_format.to_json({
                "run_id": result.run_id, "pipeline": result.pipeline, "status": result.status,
                "duration": result.duration,
                "steps": [{
                    "name": r.name, "state": r.state, "run_id": r.run_id,
                    "attempts": r.attempts, "duration": r.duration, "error": r.error,
                    "output_notebook": str(r.output_notebook) if r.output_notebook else None,
                    "cached_from": r.cached_from,
                } for r in (result.steps[n] for n in runner.order)],
            }))
        else:
            click.echo(summary_table(result, runner.order))
        _raise_for(result)


def _raise_for(result: PipelineResult) -> None:
    from ..errors import ExecutionFailedError
    from ._common import CliError

    if result.status == "cancelled":
        raise CliError(f"pipeline {result.pipeline} cancelled (run {result.run_id[:8]} is "
                       "recorded)", 130)
    if result.status != "finished":
        bad = result.failed_step
        if bad is None:
            missing = [r.name for r in result.steps.values() if r.state != "ran"
                       and r.state != "cached"]
            raise ExecutionFailedError(
                f"pipeline {result.pipeline} failed: step(s) {', '.join(missing)} did not run "
                f"(run {result.run_id[:8]} is recorded)")
        raise ExecutionFailedError(
            f"pipeline {result.pipeline} failed: step {bad.name}: {bad.error} "
            f"(run {(bad.run_id or result.run_id)[:8]} is recorded)"
        )
