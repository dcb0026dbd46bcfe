"""``nbmlops pipeline validate|show|run``: notebook pipelines (the worker-side ``step``/``finish``
commands are added by :mod:`nbmlops.cli.export`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    pass

from ._common import (
    CliError,
    CliState,
    json_option,
    not_before_option,
    pass_state,
    tag_option,
    tags_from_pairs,
    warm_then_wait,
)

log = logging.getLogger(__name__)


# -- pipeline -----------------------------------------------------------------------------------


@click.group("pipeline")
def pipeline_group() -> None:
    """Validate, draw and run notebook pipelines (pipeline.yaml or one tagged notebook)."""


_FORCE_ALL = "\0all"  # what a bare --force stands for

pipeline_arg = click.argument(
    "definition", metavar="PIPELINE", type=click.Path(exists=True, path_type=Path)
)


@pipeline_group.command("validate")
@pipeline_arg
@json_option
def pipeline_validate(definition: Path, as_json: bool) -> None:
    """Check PIPELINE: schema, notebooks, dependencies (no cycles) and every step's params.

    Exits 2 with one line `FILE:LINE:COL: message` on the first problem.
    """
    from .. import _format
    from ..pipeline.load import load_pipeline
    from ..pipeline.runner import check_gates, resolve_step_params

    pipe = load_pipeline(definition)
    order = pipe.topological_order()
    params = resolve_step_params(pipe)
    check_gates(pipe)
    if as_json:
        click.echo(_format.to_json({"name": pipe.name, "valid": True, "order": order,
                                    "params": params}))
    else:
        click.echo(f"{definition}: pipeline {pipe.name} is valid: {len(order)} steps "
                   f"({' -> '.join(order)})")


@pipeline_group.command("show")
@pipeline_arg
@click.option("--format", "fmt", type=click.Choice(["text", "svg", "dot", "mermaid", "json"]),
              default="text", show_default=True, help="Terminal drawing, or a graph format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the drawing to this file instead of standard output.")
@click.option("--ascii", "ascii_only", is_flag=True, help="Text drawing without box characters.")
def pipeline_show(definition: Path, fmt: str, output: Path | None, ascii_only: bool) -> None:
    """Draw the DAG of PIPELINE: in the terminal, or as SVG, Graphviz dot or Mermaid."""
    from .. import _format
    from ..pipeline import render
    from ..pipeline.load import load_pipeline

    pipe = load_pipeline(definition)
    pipe.topological_order()
    if fmt == "text":
        text = render.render_text(pipe, ascii=ascii_only)
    elif fmt == "svg":
        text = render.render_svg(pipe)
    elif fmt == "dot":
        text = render.render_dot(pipe)
    elif fmt == "mermaid":
        text = render.render_mermaid(pipe)
    else:
        text = _format.to_json({
            "name": pipe.name, "params": pipe.params,
            "steps": [{"name": s.name, "notebook": str(s.notebook), "depends_on": s.depends_on,
                       "params": s.params, "inputs": s.inputs, "outputs": s.outputs,
                       "retries": s.retries, "timeout": s.timeout, "cache": s.cache,
                       "variables_in": s.variables_in, "variables_out": s.variables_out}
                      for s in pipe.steps.values()],
        })
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@pipeline_group.command("run")
@pipeline_arg
@click.option("-p", "--param", "param_pairs", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Override a pipeline parameter (given to every step that declares it).")
@click.option("-f", "--params-file", "params_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON file of parameter overrides (-p wins over it).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Steps run at once (default: the number of CPUs).")
@click.option("-k", "--keep-going", is_flag=True,
              help="After a failure, still run every step that does not depend on it.")
@click.option("--force", "force_steps", multiple=True, metavar="[STEP]", is_flag=False,
              flag_value=_FORCE_ALL,
              help="Re-run STEP even when cached (repeatable). --force alone (after PIPELINE, or "
              "--force-all anywhere) re-runs every step.")
@click.option("--force-all", is_flag=True, help="Re-run every step, ignoring the cache.")
@click.option("--retry-delay", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Wait before the first retry of a failed step (doubles each retry).")
@click.option("--kernel", "kernel_name", default=None,
              help="Jupyter kernel for every step (default: each notebook's own).")
@click.option("--progress/--no-progress", default=None,
              help="Live progress display (default: on when stderr is a terminal).")
@click.option("--run-id", "run_id", default=None, metavar="HEX32", hidden=True,
              help="Id of the pipeline run to create (for launchers that watch it, e.g. the "
              "JupyterLab panel).")
@tag_option
@not_before_option
@json_option
@pass_state
def pipeline_run(
    state: CliState, definition: Path, param_pairs: Sequence[tuple[str, str]],
    params_files: Sequence[Path], jobs: int | None, keep_going: bool, force_steps: Sequence[str],
    force_all: bool, retry_delay: float, kernel_name: str | None, progress: bool | None,
    run_id: str | None, tag_pairs: Sequence[str], not_before: float | None, as_json: bool,
) -> None:
    """Run PIPELINE: steps in dependency order, independent ones in parallel, cached.

    A step is skipped when its notebook, params, input files and upstream outputs equal those
    of an earlier successful run. Every step's cells are recorded like an interactive session;
    the pipeline run is the parent of one run per step. Ctrl-C or SIGTERM stops the kernels and
    records the run as cancelled. Exits 1 when a step fails (naming the step, the cell and the
    error), 130 when cancelled.

    \b
    --json prints {"run_id", "pipeline", "status", "duration", "steps": [{"name", "state",
    "run_id", "attempts", "duration", "error", "failed_cell_index", "output_notebook",
    "cached_from", "gate"}]}; "gate" is null or the step's gate decision (name, decision,
    promoted, rule, metric, candidate_version/score, champion_version/score, reasons...).
    """
    import signal as _signal

    from .. import _format
    from ..errors import ExecutionFailedError
    from ..params import load_params_file
    from ..pipeline.load import load_pipeline
    from ..pipeline.progress import ProgressDisplay, summary_table
    from ..pipeline.runner import PipelineRunner

    runner: PipelineRunner | None = None
    display = None

    def on_term(signum: int, frame: Any) -> None:
        if runner is None:  # still loading the definition: there is nothing to stop yet
            raise CliError("pipeline cancelled before it started (SIGTERM)", 130)
        click.echo("nbmlops: stopping the pipeline (signal received)...", err=True)
        runner.cancel()

    previous = _signal.signal(_signal.SIGTERM, on_term)
    try:
        pipe = load_pipeline(definition)
        overrides: dict[str, Any] = {}
        for f in params_files:
            overrides.update(load_params_file(f))
        overrides.update(dict(param_pairs))
        order = pipe.topological_order()
        if progress or (progress is None and not as_json):
            display = ProgressDisplay(sys.stderr, order,
                                      live=None if progress is None else True)
        runner = PipelineRunner(
            pipe, store_url=state.store_url, jobs=jobs, keep_going=keep_going,
            force=True if force_all or _FORCE_ALL in force_steps else list(force_steps),
            params=overrides, retry_delay=retry_delay, kernel_name=kernel_name,
            on_event=display, run_id=run_id, run_tags=tags_from_pairs(tag_pairs),
        )
        if not_before is not None:
            runner.store  # noqa: B018 - open the store (and check its schema) before the wait
            warm_then_wait(not_before)
        result = runner.run()  # Ctrl-C inside: the runner cancels and returns
    finally:
        _signal.signal(_signal.SIGTERM, previous)
        if display is not None:
            display.finish()
    if as_json:
        click.echo(_format.to_json({
            "run_id": result.run_id, "pipeline": result.pipeline, "status": result.status,
            "duration": result.duration,
            "steps": [{
                "name": r.name, "state": r.state, "run_id": r.run_id, "attempts": r.attempts,
                "duration": r.duration, "error": r.error, "failed_cell_index": r.failed_cell_index,
                "output_notebook": str(r.output_notebook) if r.output_notebook else None,
                "cached_from": r.cached_from, "gate": r.gate,
            } for r in (result.steps[n] for n in order)],
        }))
    else:
        click.echo(summary_table(result, order))
    if result.status == "cancelled":
        raise CliError(f"pipeline {pipe.name} cancelled (run {result.run_id[:8]} is recorded)", 130)
    if result.status != "finished":
        bad = result.failed_step
        if bad is None:
            raise ExecutionFailedError(f"pipeline {pipe.name} failed (run {result.run_id[:8]})")
        where = f", cell {bad.failed_cell_index}" if bad.failed_cell_index is not None else ""
        raise ExecutionFailedError(
            f"pipeline {pipe.name} failed: step {bad.name}{where}: {bad.error} "
            f"(run {(bad.run_id or result.run_id)[:8]} is recorded)"
        )


# the hidden worker-side commands orchestrator tasks run (`nbmlops pipeline step|finish`)
from .export import register_pipeline_commands  # noqa: E402

register_pipeline_commands(pipeline_group)
