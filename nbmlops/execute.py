"""Headless execution of a notebook with capture on, through nbclient.

The kernel is started with the nbmlops extension (``--ext nbmlops``), so the notebook itself is
not modified; each execute request carries the cell's id (``metadata.cellId``, as JupyterLab
sends it), so recorded cell executions point back at notebook cells. The run id is chosen
here and passed to the kernel, so the caller knows which run holds the lineage; the executed
notebook's metadata records the run id and the store (papermill's habit, see STYLE.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from .config import StoreLocation, resolve_location
from .errors import InvalidArgumentError

log = logging.getLogger(__name__)

__all__ = ["ExecutionResult", "execute_notebook", "CapturingClient", "HeadlessCapture"]


@dataclass(frozen=True)
class ExecutionResult:
    run_id: str
    output_path: Path | None
    status: str  # finished | failed
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
        from .store import Store

        path = self.location.journal_dir / journal_name(self.run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self  # the kernel's own writer will warn about the store
        self.env["NBMLOPS_JOURNAL"] = str(path)
        location = self.location
        self.follower = JournalFollower(path, lambda: Store(location)).start()
        return self

    def __exit__(self, *exc: object) -> None:
        follower = self.follower
        if follower is not None and not follower.finish(kernel_died=self.kernel_died):
            log.warning(
                "lineage of run %s is kept in %s (%s); nbmlops writes it to the store the next "
                "time it opens the store", self.run_id, follower.path, follower.problem,
            )


def execute_notebook(
    path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    run_name: str | None = None,
    source: str = "papermill",
    parent_run_id: str | None = None,
    timeout: int | None = 600,
    env: dict[str, str] | None = None,
    kernel_name: str = "python3",
    store_url: str | None = None,
    keep_output: bool = False,
) -> ExecutionResult:
    """Execute ``path`` with capture; write the executed copy to ``output_path`` if given
    (with ``keep_output`` and no ``output_path``: to ``.nbmlops/runs/<run-id>/``).

    The source notebook is never written to. The run is marked ``failed`` when a cell raises
    or the kernel dies; the cells before that are recorded either way.
    """
    src = Path(path).resolve()
    try:
        nb = nbformat.read(src, as_version=4)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read notebook {src}: {exc.strerror or exc}") from exc
    except Exception as exc:  # nbformat raises JSON and validation errors of several kinds
        raise InvalidArgumentError(f"{src} is not a valid notebook: {exc}") from exc
    workdir = Path(cwd).resolve() if cwd else src.parent
    location = resolve_location(store_url, start=workdir)
    capture = HeadlessCapture(
        location,
        parameter_cells=[
            c.get("id") for c in nb.cells
            if {"parameters", "injected-parameters"} & set(c.get("metadata", {}).get("tags", []))
        ],
        notebook_path=src,
        source=source,
        run_name=run_name,
        parent_run_id=parent_run_id,
        base_env={**os.environ, **(env or {})},
    )
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise InvalidArgumentError(f"no Jupyter kernel named {kernel_name!r}") from None
    client = CapturingClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(workdir)}},
        extra_arguments=list(HeadlessCapture.EXTRA_ARGUMENTS),
    )
    started = time.monotonic()
    status, error, failed_index = "finished", None, None
    kernel_log = _open_kernel_log(location, capture.run_id)
    with capture:
        try:
            client.execute(env=capture.env, **({"stderr": kernel_log} if kernel_log else {}))
        except CellExecutionError as exc:
            status = "failed"
            error = f"{exc.ename}: {exc.evalue}"
            failed_index = _failed_cell_index(nb)
        except DeadKernelError as exc:
            status, capture.kernel_died = "failed", True
            error = f"kernel died: {exc}"
            failed_index = _failed_cell_index(nb)
            if kernel_log is not None:
                error += f" (kernel log: {kernel_log.name})"
        finally:
            if kernel_log is not None:
                kernel_log.close()
                if os.path.getsize(kernel_log.name) == 0 or _only_noise(kernel_log.name):
                    os.unlink(kernel_log.name)
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.dirname(kernel_log.name))  # only if nothing else is there
    duration = time.monotonic() - started
    run_id = capture.run_id
    nb.metadata["nbmlops"] = {"run_id": run_id, "store": location.describe(), "status": status}
    out: Path | None = None
    if output_path is None and keep_output:
        output_path = location.runs_dir / run_id / src.name
    if output_path is not None:
        out = Path(output_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
    if status != "finished":
        _mark_failed(location, run_id)
    return ExecutionResult(run_id, out, status, duration, error, failed_index)


def _open_kernel_log(location: StoreLocation, run_id: str) -> Any:
    """The kernel's own stderr (ZMQ warnings, crash messages) goes to the run's kernel.log."""
    path = location.runs_dir / run_id / "kernel.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w")  # noqa: SIM115 - closed after the kernel is gone
    except OSError:
        return None  # inherit this process's stderr instead


_NOISE = ("Kernel is running over TCP without encryption",)


def _only_noise(path: str) -> bool:
    with open(path, errors="replace") as fh:
        return all(any(n in line for n in _NOISE) for line in fh if line.strip())


def _failed_cell_index(nb: Any) -> int | None:
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return i
    return None


def _mark_failed(location: Any, run_id: str) -> None:
    """A cell raised (the kernel ended its run as finished) or the kernel died: record it.

    A dead kernel's journal was already written by :class:`HeadlessCapture`'s follower."""
    from .errors import NbmlopsError
    from .store import Store

    try:
        with Store(location) as store:
            if store.run_exists(run_id):
                store.end_run(run_id, "failed")
    except NbmlopsError as exc:
        log.warning("could not mark run %s failed: %s", run_id, exc)
