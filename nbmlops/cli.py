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
@click.option("--kernel", "kernel_name", default="python3", show_default=True,
              help="Jupyter kernel to run the notebook in.")
@json_option
@pass_state
def run_notebook(
    state: CliState, notebook: Path, output: Path | None, name: str | None, cwd: Path | None,
    timeout: int, kernel_name: str, as_json: bool,
) -> None:
    """Execute NOTEBOOK headless in a real kernel with lineage capture.

    The source notebook is never written to. Every cell execution is recorded like in an
    interactive session; the executed copy records the run id in its metadata. Exits 1 when
    a cell raises or the kernel dies (the run is recorded as failed, with the cells before).

    \b
    --json prints {"run_id", "status", "duration", "output", "error", "failed_cell_index"}.
    """
    from . import _format
    from .errors import ExecutionFailedError
    from .execute import execute_notebook

    result = execute_notebook(
        notebook, output, cwd=cwd, run_name=name, timeout=timeout, kernel_name=kernel_name,
        store_url=state.store_url, keep_output=True,
    )
    if as_json:
        click.echo(_format.to_json({
            "run_id": result.run_id, "status": result.status, "duration": result.duration,
            "output": str(result.output_path) if result.output_path else None,
            "error": result.error, "failed_cell_index": result.failed_cell_index,
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
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="nbmlops")
    except BrokenPipeError:  # e.g. `nbmlops runs ls | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
