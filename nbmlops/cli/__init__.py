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

import click

from ._common import CliState, NbmlopsGroup

__all__ = ["main", "cli"]

#: command name -> (module of this package, attribute): each command group is imported only
#: when it runs (or when `nbmlops --help` lists them all), so a command pays for its own code
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("run", "init"),
    "run": ("run", "run_notebook"),
    "runs": ("runs", "runs"),
    "pipeline": ("pipeline", "pipeline_group"),
    "export": ("export", "export_group"),
    "schedule": ("schedule", "schedule_group"),
    "trigger": ("schedule", "trigger_group"),
    "scheduler": ("schedule", "scheduler_command"),
    "validate": ("validate", "validate_command"),
    "models": ("models", "models_group"),
    "card": ("card", "card_command"),
    "reproduce": ("reproduce", "reproduce_command"),
    "serve": ("serve", "serve_command"),
    "monitor": ("monitor", "monitor_group"),
    "import": ("interop", "import_group"),
}


class RootGroup(NbmlopsGroup):
    """The root group: its commands come from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        from importlib import import_module

        command = getattr(import_module(f".{where[0]}", __name__), where[1])
        assert isinstance(command, click.Command)
        return command


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
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

