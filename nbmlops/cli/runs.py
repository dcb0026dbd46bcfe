"""``nbmlops runs ls|show|compare|lineage``: recorded runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    pass

from ._common import CliState, json_option, store_from

log = logging.getLogger(__name__)


# -- runs ---------------------------------------------------------------------------------------


@click.group()
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
    from .. import _format
    from ..store import fastread

    query: dict[str, Any] = dict(experiment=experiment, notebook=notebook, status=status, source=source,
                 search=search, order_by=sort_key, descending=not asc, limit=limit, offset=offset)
    page = None
    if fastread.enabled():  # without SQLAlchemy's import (~0.5 s) when the store allows it
        state = ctx.find_object(CliState)
        assert state is not None, "commands run under the root group"
        page = fastread.list_runs_fast(state.location(), **query)
    if page is None:
        page = store_from(ctx).list_runs(**query)
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
    from .. import _format

    found = store_from(ctx).get_run(run)
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
    from .. import _format
    from ..errors import InvalidArgumentError

    if len(run_ids) < 2:
        raise InvalidArgumentError("compare needs at least two runs")
    comparison = store_from(ctx).compare(list(run_ids))
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
    from .. import _format

    direction = "downstream" if downstream else "upstream"
    graph = store_from(ctx).lineage(target, run_id=run_id, direction=direction)
    click.echo(_format.to_json(graph) if as_json else _format.lineage_tree(graph, direction=direction))


