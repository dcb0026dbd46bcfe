"""The ``nbmlops`` command line: a thin face over :class:`~nbmlops.store.Store`.

Every listing command takes ``--json`` and prints strict JSON (sorted keys, NaN/inf as ``null``)
built from the store entities' ``to_dict()``:

* ``runs ls --json``: ``{"runs": [Run...], "total": int, "limit": int, "offset": int}``
* ``runs show --json``: one ``Run``: ``id, name, experiment, source, status, start_time,
  end_time, notebook_path, notebook_hash, parent_run_id, git_commit, git_dirty, environment,
  params, metrics, tags, cell_count`` (times are UNIX epoch seconds)
* ``runs compare --json``: ``{"runs": [Run...], "params": {key: [value per run]},
  "params_differ": [key...], "metrics": {key: [value per run]}}``
* ``runs lineage --json``: ``{"root": id, "nodes": [{id, type, label, attrs}],
  "edges": [{source, target, label}]}``

Errors nbmlops raises on purpose are turned into ``Error: <message>`` on stderr and the error's
``exit_code`` (2 bad argument, 3 store unusable, 4 not found) in exactly one place,
:meth:`NbmlopsGroup.invoke`. Heavy modules (SQLAlchemy, the store) are imported inside the
commands so that ``nbmlops --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import NbmlopsError, StoreUnavailableError

if TYPE_CHECKING:
    from .config import StoreLocation
    from .store import Store

log = logging.getLogger(__name__)

__all__ = ["main", "cli"]


class CliError(click.ClickException):
    """An :class:`NbmlopsError` as click shows it: ``Error: <message>``, with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


class NbmlopsGroup(click.Group):
    """The root group: the one place where nbmlops errors become exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbmlopsError as exc:
            log.debug("command failed", exc_info=True)
            raise CliError(str(exc), exc.exit_code) from exc


class CliState:
    """Per-invocation state: the store URL given on the command line and the opened store."""

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store: Store | None = None

    def location(self) -> StoreLocation:
        from .config import resolve_location

        return resolve_location(self.store_url)

    def store(self, ctx: click.Context) -> Store:
        """The store to read, opened once; never creates a store that does not exist yet."""
        if self._store is None:
            from .store import Store

            loc = self.location()
            db = loc.sqlite_path
            if db is not None and not db.exists():
                where = (
                    f"looked for .nbmlops/ from {os.getcwd()} upwards"
                    if loc.store_dir is not None
                    else "as given by --store or NBMLOPS_STORE_URL"
                )
                raise StoreUnavailableError(
                    f"no nbmlops store at {db} ({where}); run `nbmlops init` in your project "
                    "directory, or pass --store / set NBMLOPS_STORE_URL"
                )
            self._store = Store(loc)
            ctx.call_on_close(self._store.close)
            _recover_crashed_sessions(self._store)
        return self._store


def _recover_crashed_sessions(store: Store) -> None:
    """Write what kernels that died left in their crash journals (their runs become failed)."""
    from .capture.journal import recover_journals

    try:
        recovered = recover_journals(store.location.journal_dir, store)
    except NbmlopsError as exc:  # a read-only store, say: the listing still works
        log.info("crash journals not replayed: %s", exc)
        return
    if recovered:
        log.info("recovered %d cell records from crashed sessions", recovered)


pass_state = click.make_pass_decorator(CliState)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
tag_option = click.option(
    "--tag", "tag_pairs", multiple=True, metavar="KEY=VALUE", hidden=True,
    help="Tag the run (the scheduler records what triggered a run this way). Repeatable.")

not_before_option = click.option(
    "--not-before", "not_before", type=float, default=None, hidden=True, metavar="EPOCH",
    help="Load everything, then wait until this UNIX time to start (the scheduler starts runs "
    "a little early so that the kernel starts on time).")


def _warm_then_wait(not_before: float | None) -> None:
    """Import what a run needs (papermill, nbclient, the engine: about a second), then sleep
    until ``not_before``, so that the run itself starts on the dot."""
    if not_before is None:
        return
    import time

    import jupyter_client.manager  # noqa: F401
    import papermill.execute  # noqa: F401

    from . import engine, execute  # noqa: F401

    delay = not_before - time.time()
    if delay > 0:
        time.sleep(delay)


def _tags(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        out[key.strip()] = value
    return out


@click.group(cls=NbmlopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="Store database URL (any SQLAlchemy URL, e.g. sqlite:////abs/path/nbmlops.db). "
    "Overrides NBMLOPS_STORE_URL and the .nbmlops/ directory found from the working directory.",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="nbmlops", prog_name="nbmlops")
@click.pass_context
def cli(ctx: click.Context, store_url: str | None, verbose: int) -> None:
    """nbmlops: lineage, runs and pipelines of Jupyter notebooks."""
    if verbose:
        logging.getLogger("nbmlops").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        logging.getLogger("papermill").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    ctx.obj = CliState(store_url)


# -- init ---------------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "directory",
    required=False,
    type=click.Path(file_okay=False, path_type=Path),
)
@pass_state
def init(state: CliState, directory: Path | None) -> None:
    """Create the project's store: DIRECTORY/.nbmlops/ (default: the working directory).

    Safe to run again: an existing store is kept (and migrated to this nbmlops' schema). With
    --store, initialise that database instead.
    """
    from .config import ARTIFACTS_DIRNAME, DB_FILENAME, STORE_DIRNAME, StoreLocation
    from .store import Store

    if state.store_url and directory is None:
        loc = state.location()
        existed = loc.sqlite_path.exists() if loc.sqlite_path is not None else None
        where = loc.describe()
    else:
        store_dir = (directory or Path.cwd()).resolve() / STORE_DIRNAME
        db = store_dir / DB_FILENAME
        loc = StoreLocation(
            url=f"sqlite:///{db}", artifact_root=store_dir / ARTIFACTS_DIRNAME, store_dir=store_dir
        )
        existed = db.exists()
        where = str(store_dir)
    with Store(loc) as store:
        revision = store.schema_revision
    loc.artifact_root.mkdir(parents=True, exist_ok=True)
    if existed:
        click.echo(f"nbmlops store already exists at {where} (schema {revision})")
    else:
        click.echo(f"Initialized nbmlops store in {where}")
    if os.environ.get("NBMLOPS_STORE_URL") and not state.store_url:
        click.echo(
            "note: NBMLOPS_STORE_URL is set, so other nbmlops commands will use that store",
            err=True,
        )


# -- run ----------------------------------------------------------------------------------------


@cli.command("run")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-p", "--param", "param_pairs", nargs=2, multiple=True, metavar="NAME VALUE",
    help="Set parameter NAME (declared in the notebook's `parameters` cell); VALUE takes the "
    "type of the declared default. Repeatable.",
)
@click.option(
    "-f", "--params-file", "params_files", multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON file of NAME: VALUE parameters (-p wins over it). Repeatable.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the executed notebook here (default: .nbmlops/runs/<run-id>/NOTEBOOK).",
)
@click.option("--name", help="Run name (default: the notebook's file name without .ipynb).")
@click.option(
    "--cwd", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Working directory of the kernel (default: the notebook's directory).",
)
@click.option("--timeout", default=600, show_default=True, metavar="SECONDS",
              help="How long one cell may run.")
@click.option("--kernel", "kernel_name", default=None,
              help="Jupyter kernel to run the notebook in (default: the notebook's own).")
@click.option("--run-id", "run_id", default=None, metavar="HEX32", hidden=True,
              help="Id of the run to create (for launchers that watch it, e.g. the scheduler).")
@tag_option
@not_before_option
@json_option
@pass_state
def run_notebook(
    state: CliState, notebook: Path, param_pairs: Sequence[tuple[str, str]],
    params_files: Sequence[Path], output: Path | None, name: str | None, cwd: Path | None,
    timeout: int, kernel_name: str | None, run_id: str | None, tag_pairs: Sequence[str],
    not_before: float | None, as_json: bool,
) -> None:
    """Execute NOTEBOOK headless (papermill with the nbmlops engine) with lineage capture.

    Parameters are checked against the notebook's `parameters` cell first: an unknown name is
    an error listing the known ones. The source notebook is never written to. Every cell
    execution is recorded like in an interactive session; the executed copy records the run id
    in its metadata. Exits 1 when a cell raises or the kernel dies (the run is recorded as
    failed, with the cells before).

    \b
    --json prints {"run_id", "status", "duration", "output", "error", "failed_cell_index",
    "params"}.
    """
    from . import _format
    from .errors import ExecutionFailedError
    from .params import check_parameters, load_params_file

    params: dict[str, Any] = {}
    for f in params_files:
        params.update(load_params_file(f))
    params.update(dict(param_pairs))
    params = check_parameters(notebook, params)  # before papermill is even imported
    import signal as _signal

    from .execute import execute_notebook

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the engine stops the kernel and records the run cancelled

    import uuid

    run_id = _run_id(run_id) or uuid.uuid4().hex
    previous = _signal.signal(_signal.SIGTERM, on_term)
    try:
        _warm_then_wait(not_before)
        result = execute_notebook(
            notebook, output, cwd=cwd, run_name=name, timeout=timeout, kernel_name=kernel_name,
            store_url=state.store_url, keep_output=True, parameters=params,
            check_parameters=False, run_id=run_id, tags=_tags(tag_pairs) or None,
        )
    except KeyboardInterrupt:
        # the cell task nbclient was awaiting ends with DeadKernelError once the kernel is
        # gone; asyncio would log it as "never retrieved" when it is collected
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        status = _recorded_status(state, run_id)
        if status == "finished":  # stopped while the kernel shut down after the last cell
            click.echo(f"run {run_id[:8]} finished ({notebook.name}; stopped while the kernel "
                       "shut down)", err=True)
            return
        raise CliError(f"{notebook.name}: cancelled (run {run_id[:8]} is recorded as "
                       f"{status or 'cancelled'})", 130) from None
    finally:
        _signal.signal(_signal.SIGTERM, previous)
    if as_json:
        click.echo(_format.to_json({
            "run_id": result.run_id, "status": result.status, "duration": result.duration,
            "output": str(result.output_path) if result.output_path else None,
            "error": result.error, "failed_cell_index": result.failed_cell_index,
            "params": params,
        }))
    else:
        click.echo(f"run {result.run_id[:8]} {result.status} in {result.duration:.1f}s "
                   f"({notebook.name})")
        if result.output_path is not None:
            click.echo(f"executed notebook: {result.output_path}")
    if result.status != "finished":
        where = (f"cell {result.failed_cell_index}" if result.failed_cell_index is not None
                 else "the kernel")
        raise ExecutionFailedError(
            f"{notebook.name}: {where} failed: {result.error} (run {result.run_id[:8]} is recorded)"
        )


# -- runs ---------------------------------------------------------------------------------------


@cli.group()
def runs() -> None:
    """List, inspect, compare and trace recorded runs."""


@runs.command("ls")
@click.option("--experiment", "-e", help="Only runs of this experiment.")
@click.option("--notebook", "-n", help="Only runs of this notebook (path or file name).")
@click.option(
    "--status", "-s", help="Only runs in this status (running, finished, failed, cancelled, abandoned)."
)
@click.option("--source", help="Only runs from this source (interactive, papermill, pipeline, schedule).")
@click.option("--search", help="Only runs whose name or notebook path contains TEXT.", metavar="TEXT")
@click.option(
    "--sort",
    "sort_key",
    default="start_time",
    show_default=True,
    metavar="KEY",
    help="Sort by start_time, end_time, name, status or notebook.",
)
@click.option("--asc", is_flag=True, help="Sort ascending (default: descending).")
@click.option("--limit", default=50, show_default=True, metavar="N", help="Show at most N runs.")
@click.option("--offset", default=0, show_default=True, metavar="N", help="Skip the first N runs.")
@json_option
@click.pass_context
def runs_ls(
    ctx: click.Context,
    experiment: str | None,
    notebook: str | None,
    status: str | None,
    source: str | None,
    search: str | None,
    sort_key: str,
    asc: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List runs, newest first.

    Filters, sorting and paging run in the store, so this stays fast at many thousands of runs.
    The table shows the three metrics most of the listed runs have.

    \b
    --json prints {"runs": [RUN...], "total": N, "limit": N, "offset": N},
    each RUN as in `nbmlops runs show --json`.
    """
    from . import _format

    page = _store(ctx).list_runs(
        experiment=experiment,
        notebook=notebook,
        status=status,
        source=source,
        search=search,
        order_by=sort_key,
        descending=not asc,
        limit=limit,
        offset=offset,
    )
    if as_json:
        click.echo(_format.to_json(page))
        return
    if page.runs:
        click.echo(_format.runs_table(page.runs))
    else:
        click.echo("no runs found")
    first = page.offset + 1 if page.runs else 0
    last = page.offset + len(page.runs)
    span = f"{first}-{last}" if page.offset else str(len(page.runs))
    click.echo(f"showing {span} of {page.total} run{'s' if page.total != 1 else ''}")


@runs.command("show")
@click.argument("run")
@json_option
@click.pass_context
def runs_show(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show one run's fields, params, metrics and tags.

    RUN is a full run id or a unique prefix of at least 4 characters.

    \b
    --json prints the run: id, name, experiment, source, status, start_time,
    end_time (epoch seconds), notebook_path, notebook_hash, parent_run_id,
    git_commit, git_dirty, environment, params, metrics (latest value of each),
    tags, cell_count.
    """
    from . import _format

    found = _store(ctx).get_run(run)
    click.echo(_format.to_json(found) if as_json else _format.run_details(found))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN RUN [RUN...]")
@json_option
@click.pass_context
def runs_compare(ctx: click.Context, run_ids: Sequence[str], as_json: bool) -> None:
    """Compare params and metrics of runs side by side.

    Params whose values differ between the runs are marked with *; metrics are each run's
    latest value.

    \b
    --json prints {"runs": [RUN...], "params": {KEY: [VALUE per run]},
    "params_differ": [KEY...], "metrics": {KEY: [VALUE per run]}}.
    """
    from . import _format
    from .errors import InvalidArgumentError

    if len(run_ids) < 2:
        raise InvalidArgumentError("compare needs at least two runs")
    comparison = _store(ctx).compare(list(run_ids))
    click.echo(_format.to_json(comparison) if as_json else _format.comparison_table(comparison))


@runs.command("lineage")
@click.argument("target")
@click.option("--run", "run_id", metavar="RUN", help="The run whose variable TARGET names.")
@click.option(
    "--downstream", is_flag=True, help="Show what came of TARGET instead of where it came from."
)
@json_option
@click.pass_context
def runs_lineage(
    ctx: click.Context, target: str, run_id: str | None, downstream: bool, as_json: bool
) -> None:
    """Trace the lineage of TARGET as a tree.

    TARGET is a file path that a cell read or wrote, artifact:ID, cell:ID, or a variable
    name together with --run. The tree shows where TARGET came from, or with --downstream
    what came of it.

    \b
    --json prints the graph: {"root": ID, "nodes": [{"id", "type", "label",
    "attrs"}], "edges": [{"source", "target", "label"}]}.
    """
    from . import _format

    direction = "downstream" if downstream else "upstream"
    graph = _store(ctx).lineage(target, run_id=run_id, direction=direction)
    click.echo(_format.to_json(graph) if as_json else _format.lineage_tree(graph, direction=direction))


# -- pipeline -----------------------------------------------------------------------------------


@cli.group("pipeline")
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
    from . import _format
    from .pipeline.runner import resolve_step_params
    from .pipeline.spec import load_pipeline

    pipe = load_pipeline(definition)
    order = pipe.topological_order()
    params = resolve_step_params(pipe)
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
    from . import _format
    from .pipeline import render
    from .pipeline.spec import load_pipeline

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
    "cached_from"}]}.
    """
    import signal as _signal

    from . import _format
    from .errors import ExecutionFailedError
    from .params import load_params_file
    from .pipeline.progress import ProgressDisplay, summary_table
    from .pipeline.runner import PipelineRunner
    from .pipeline.spec import load_pipeline

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
            on_event=display, run_id=run_id, run_tags=_tags(tag_pairs),
        )
        if not_before is not None:
            runner.store  # noqa: B018 - open the store (and check its schema) before the wait
            _warm_then_wait(not_before)
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
                "cached_from": r.cached_from,
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


from .cli_export import export_group, register_pipeline_commands  # noqa: E402
from .cli_schedule import schedule_group, scheduler_command, trigger_group  # noqa: E402

cli.add_command(export_group)
cli.add_command(schedule_group)
cli.add_command(trigger_group)
cli.add_command(scheduler_command)
register_pipeline_commands(pipeline_group)


def _recorded_status(state: CliState, run_id: str) -> str | None:
    """The status the store has for ``run_id`` (None when it cannot tell)."""
    from .store import Store

    try:
        with Store(state.location()) as store:
            return store.get_run(run_id).status
    except NbmlopsError:
        return None


def _run_id(run_id: str | None) -> str | None:
    if run_id is not None and (len(run_id) != 32 or any(c not in "0123456789abcdef" for c in run_id)):
        raise click.BadParameter("must be 32 lowercase hex characters", param_hint="--run-id")
    return run_id


def _store(ctx: click.Context) -> Store:
    state = ctx.find_object(CliState)
    assert state is not None, "commands run under the root group"
    return state.store(ctx)


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: configure logging, run the CLI, exit with its code."""
    level = os.environ.get("NBMLOPS_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level not in ("DEBUG", "INFO"):
        # papermill logs what nbmlops reports itself (a dead kernel, a failed cell) a second
        # time; its messages come back with -v or NBMLOPS_LOG_LEVEL=INFO
        logging.getLogger("papermill").setLevel(logging.CRITICAL)
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="nbmlops")
    except BrokenPipeError:  # e.g. `nbmlops runs ls | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
