"""``nbmlops init`` (create the project's store) and ``nbmlops run NOTEBOOK`` (execute one notebook
headless with capture)."""

from __future__ import annotations

import logging
import os
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
    recorded_status,
    tag_option,
    tags_from_pairs,
    valid_run_id,
    warm_then_wait,
)

log = logging.getLogger(__name__)


# -- init ---------------------------------------------------------------------------------------


@click.command()
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
    from ..config import ARTIFACTS_DIRNAME, DB_FILENAME, STORE_DIRNAME, StoreLocation
    from ..store import Store

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
    if isinstance(loc.artifact_root, Path):  # an object-store URL has no directory to make
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


@click.command("run")
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
    from .. import _format
    from ..errors import ExecutionFailedError
    from ..params import check_parameters, load_params_file

    params: dict[str, Any] = {}
    for f in params_files:
        params.update(load_params_file(f))
    params.update(dict(param_pairs))
    params = check_parameters(notebook, params)  # before papermill is even imported
    if any(isinstance(v, str) and v.startswith("models:/") for v in params.values()):
        # models:/NAME@ALIAS -> the version it points at now, recorded as the run's param
        from ..registry.service import pin_model_uris
        from ..store import Store

        with Store(state.location()) as store:
            params, _pinned = pin_model_uris(store, params)
    import signal as _signal

    from ..execute import execute_notebook

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the engine stops the kernel and records the run cancelled

    import uuid

    run_id = valid_run_id(run_id) or uuid.uuid4().hex
    previous = _signal.signal(_signal.SIGTERM, on_term)
    try:
        warm_then_wait(not_before)
        result = execute_notebook(
            notebook, output, cwd=cwd, run_name=name, timeout=timeout, kernel_name=kernel_name,
            store_url=state.store_url, keep_output=True, parameters=params,
            check_parameters=False, run_id=run_id, tags=tags_from_pairs(tag_pairs) or None,
        )
    except KeyboardInterrupt:
        # the cell task nbclient was awaiting ends with DeadKernelError once the kernel is
        # gone; asyncio would log it as "never retrieved" when it is collected
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        status = recorded_status(state, run_id)
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


