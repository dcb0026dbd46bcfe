"""Headless execution of a notebook with capture on, through nbclient.

The kernel is started with the nbmlops extension (``--ext nbmlops``), so the notebook itself is
not modified; each execute request carries the cell's id (``metadata.cellId``, as JupyterLab
sends it), so recorded cell executions point back at notebook cells. The run id is chosen
here and passed to the kernel, so the caller knows which run holds the lineage; the executed
notebook's metadata records the run id and the store (papermill's habit, see STYLE.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .config import StoreLocation, resolve_location
from .errors import InvalidArgumentError

log = logging.getLogger(__name__)

__all__ = ["ExecutionResult", "execute_notebook", "CapturingClient", "HeadlessCapture"]


@dataclass(frozen=True)
class ExecutionResult:
    run_id: str
    output_path: Path | None
    status: str  # finished | failed | cancelled (Ctrl-C, SIGTERM)
    duration: float
    error: str | None = None
    failed_cell_index: int | None = None


class CapturingClient(NotebookClient):
    """A NotebookClient whose execute requests carry ``metadata.cellId`` like JupyterLab's,
    and the cell's tags (so that capture knows the ``parameters`` cell)."""

    def _patch_kc(self) -> None:
        kc = self.kc
        if kc is None or getattr(kc, "_nbmlops_patched", False):
            return
        client = self

        def execute(code: str, silent: bool = False, store_history: bool = True,
                    user_expressions: dict[str, Any] | None = None,
                    allow_stdin: bool | None = None, stop_on_error: bool = True) -> str:
            content = {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": user_expressions or {},
                "allow_stdin": kc.allow_stdin if allow_stdin is None else allow_stdin,
                "stop_on_error": stop_on_error,
            }
            metadata: dict[str, Any] = {}
            if client._current_cell_id:
                metadata["cellId"] = client._current_cell_id
            if client._current_cell_tags:
                metadata["tags"] = client._current_cell_tags
            msg = kc.session.msg("execute_request", content, metadata=metadata)
            kc.shell_channel.send(msg)
            return str(msg["header"]["msg_id"])

        kc.execute = execute  # type: ignore[method-assign]
        kc._nbmlops_patched = True  # type: ignore[attr-defined]

    _current_cell_id: str | None = None
    _current_cell_tags: list[str] | None = None

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self._current_cell_id = cell.get("id")
        self._current_cell_tags = list(cell.get("metadata", {}).get("tags", [])) or None
        self._patch_kc()
        return await super().async_execute_cell(cell, cell_index, *args, **kwargs)


class HeadlessCapture:
    """Capture for a kernel this process starts: environment for the kernel, store writing here.

    Use as a context manager around the kernel's whole life; ``env`` goes to the kernel.
    The kernel loads nbmlops (``--ext=nbmlops``) and only appends to a crash journal; a
    :class:`~nbmlops.capture.journal.JournalFollower` in this process writes the store, so no
    database work competes with the notebook for the kernel's GIL. Set :attr:`kernel_died`
    before leaving the block when the kernel died, so its open run is marked failed.
    """

    EXTRA_ARGUMENTS = ("--ext=nbmlops",)

    def __init__(
        self,
        location: StoreLocation,
        *,
        notebook_path: str | os.PathLike[str] | None = None,
        source: str = "papermill",
        run_name: str | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        base_env: dict[str, str] | None = None,
        parameter_cells: list[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.location = location
        self.run_id = run_id or uuid.uuid4().hex
        self.kernel_died = False
        env = dict(os.environ if base_env is None else base_env)
        env.update(
            {
                "NBMLOPS_RUN_ID": self.run_id,
                "NBMLOPS_RUN_SOURCE": source,
                "NBMLOPS_STORE_URL": location.url,
                "NBMLOPS_ARTIFACT_URL": str(location.artifact_root),
            }
        )
        for key, value in (
            ("NBMLOPS_NOTEBOOK_PATH", str(notebook_path) if notebook_path else None),
            ("NBMLOPS_RUN_NAME", run_name),
            ("NBMLOPS_PARENT_RUN_ID", parent_run_id),
            ("NBMLOPS_PARAMETER_CELLS", ",".join(filter(None, parameter_cells or [])) or None),
            ("NBMLOPS_RUN_TAGS", json.dumps(tags) if tags else None),
        ):
            if value:
                env[key] = value
            else:
                env.pop(key, None)
        env.pop("NBMLOPS_JOURNAL", None)
        self.env = env
        self.follower: Any = None

    def __enter__(self) -> HeadlessCapture:
        from .capture.journal import JournalFollower, journal_name

        path = self.location.journal_dir / journal_name(self.run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self  # the kernel's own writer will warn about the store
        self.env["NBMLOPS_JOURNAL"] = str(path)
        location = self.location

        def open_store() -> Any:
            # imported here, in the follower's thread: SQLAlchemy's import (~0.25 s) then
            # overlaps with the kernel's start instead of delaying it
            from .store import Store

            return Store(location)

        self.follower = JournalFollower(path, open_store).start()
        return self

    def __exit__(self, *exc: object) -> None:
        follower = self.follower
        if follower is not None and not follower.finish(kernel_died=self.kernel_died):
            log.warning(
                "lineage of run %s is kept in %s (%s); nbmlops writes it to the store the next "
                "time it opens the store", self.run_id, follower.path, follower.problem,
            )


def execute_notebook(
    path: str | os.PathLike[str] | Any,
    output_path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    run_name: str | None = None,
    source: str = "papermill",
    parent_run_id: str | None = None,
    timeout: int | None = 600,
    env: dict[str, str] | None = None,
    kernel_name: str | None = None,
    store_url: str | None = None,
    keep_output: bool = False,
    parameters: dict[str, Any] | None = None,
    check_parameters: bool = True,
    run_id: str | None = None,
    notebook_path: str | os.PathLike[str] | None = None,
    tags: dict[str, str] | None = None,
    on_kernel: Any = None,
    progress_bar: bool = False,
) -> ExecutionResult:
    """Execute notebook ``path`` (a file, or an nbformat node with ``notebook_path`` naming its
    origin) through papermill with the ``nbmlops`` engine; write the executed copy to
    ``output_path`` if given (with ``keep_output`` and no ``output_path``: to
    ``.nbmlops/runs/<run-id>/``).

    ``parameters`` are injected papermill-style; with ``check_parameters`` they are first checked
    against the notebook's ``parameters`` cell (unknown names and a missing ``parameters`` cell are
    :class:`~nbmlops.errors.ParameterError`; strings take the declared default's type). The source
    notebook is never written to. The run is marked ``failed`` when a cell raises or the kernel
    dies; the cells before that are recorded either way.
    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    from .params import check_parameters as _check
    from .params import read_notebook_light

    if isinstance(path, (str, os.PathLike)):
        src: Path | None = Path(path).resolve()
        origin: Path | None = src
        # cells and metadata only: papermill reads and validates the notebook itself
        nb = read_notebook_light(path)
    else:
        nb, src = path, None
        origin = Path(notebook_path).resolve() if notebook_path else None
    label = origin.name if origin else "notebook"
    params = dict(parameters or {})
    if check_parameters and params:
        params = _check(nb, params, label=label)
    workdir = Path(cwd).resolve() if cwd else (origin.parent if origin else Path.cwd())
    location = resolve_location(store_url, start=workdir)
    kernel = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    run_id = run_id or uuid.uuid4().hex
    if output_path is None and keep_output:
        output_path = location.runs_dir / run_id / (origin.name if origin else "notebook.ipynb")
    out = Path(output_path) if output_path is not None else None
    if out is not None and origin is not None and out.resolve() == origin.resolve():
        raise InvalidArgumentError(
            f"output {output_path} is the notebook itself; nbmlops never writes to the source "
            "notebook: choose another -o"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            str(src) if src is not None else nb,
            str(out) if out is not None else None,
            parameters=params or None,
            engine_name="nbmlops",
            kernel_name=kernel,
            progress_bar=progress_bar,
            execution_timeout=timeout,
            nbmlops_run_id=run_id,
            nbmlops_run_name=run_name or (origin.stem if origin else None),
            nbmlops_source=source,
            nbmlops_parent_run_id=parent_run_id,
            nbmlops_store_url=location.url,
            nbmlops_cwd=str(workdir),
            nbmlops_env=env,
            nbmlops_notebook_path=str(origin) if origin else None,
            nbmlops_tags=tags,
            nbmlops_on_kernel=on_kernel,
            nbmlops_result=result,
        )
    except PapermillExecutionError:
        pass  # the engine recorded the failure in ``result``
    except NoSuchKernel:
        raise InvalidArgumentError(f"no Jupyter kernel named {kernel!r}") from None
    except DeadKernelError:
        pass
    except (CellExecutionError, CellTimeoutError):  # a cell timeout; the engine recorded it
        pass
    except Exception:
        if result.get("status") != "failed":  # not an execution failure the engine recorded
            raise
    duration = time.monotonic() - started
    return ExecutionResult(
        result.get("run_id", run_id), out, result.get("status", "failed"), duration,
        result.get("error"), result.get("failed_cell_index"),
    )
