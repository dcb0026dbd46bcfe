"""The papermill engine ``nbmlops``: papermill's nbclient engine with lineage capture.

``papermill --engine nbmlops in.ipynb out.ipynb -p alpha 0.5`` (and :func:`nbmlops.execute.
execute_notebook`, ``nbmlops run``, every pipeline step) executes through :class:`NbmlopsEngine`:

* the kernel starts with the nbmlops extension (``--ext=nbmlops``) in headless mode: it only
  appends to a crash journal, and a follower thread in this process writes the store
  (:class:`~nbmlops.execute.HeadlessCapture`);
* execute requests carry the cell id and tags (:class:`~nbmlops.execute.CapturingClient`), so the
  ``parameters`` and ``injected-parameters`` cells become the run's params;
* the client side keeps its own log of every cell (start, duration, status). After the kernel is
  gone, cells the store lacks are recorded from that log: the cell in flight when the kernel died,
  or every cell when capture never started in the kernel. A cell that raised or a dead kernel
  marks the run ``failed``.

Engine options are papermill engine keyword arguments named ``nbmlops_*`` (papermill passes
unknown keyword arguments of ``execute_notebook`` to the engine): ``nbmlops_run_id``,
``nbmlops_run_name``, ``nbmlops_source``, ``nbmlops_parent_run_id``, ``nbmlops_store_url``,
``nbmlops_cwd`` (kernel working directory without papermill's process-wide ``chdir``),
``nbmlops_env``, ``nbmlops_notebook_path``, ``nbmlops_tags`` (run tags),
``nbmlops_on_kernel`` (called with the kernel's pid once it runs) and ``nbmlops_result``
(a dict the engine fills: ``run_id``, ``status``, ``error``, ``failed_cell_index``,
``kernel_died``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger as papermill_logger
from papermill.utils import merge_kwargs, remove_args

from .config import StoreLocation, resolve_location
from .execute import CapturingClient, HeadlessCapture
from .redact import redact_cell, redact_source

log = logging.getLogger(__name__)

__all__ = ["NbmlopsEngine", "PARAMETER_CELL_TAGS", "source_cell_index"]

PARAMETER_CELL_TAGS = frozenset({"parameters", "injected-parameters"})


class _Client(PapermillNotebookClient, CapturingClient):
    """papermill's client (progress, per-cell metadata, autosave) + capture's execute requests +
    a client-side log of every cell and a hook that reports the kernel's pid."""

    def __init__(self, nb_man: Any, on_kernel: Callable[[int], None] | None = None, **kw: Any):
        super().__init__(nb_man, **kw)
        self.on_kernel = on_kernel
        #: cell index -> (start epoch, duration, status ok|error|died, error name, error value)
        self.cell_log: dict[int, tuple[float, float, str, str | None, str | None]] = {}

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        await super().async_start_new_kernel(**kwargs)
        pid = _kernel_pid(self.km)
        if self.on_kernel is not None and pid is not None:
            try:
                self.on_kernel(pid)
            except Exception:  # a broken callback must not stop the notebook
                log.warning("on_kernel callback failed", exc_info=True)

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        if cell.get("cell_type") != "code" or not cell.get("source", "").strip():
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        started, t0 = time.time(), time.perf_counter()
        try:
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        except CellExecutionError as exc:
            self.cell_log[cell_index] = (
                started, time.perf_counter() - t0, "error", exc.ename, exc.evalue,
            )
            raise
        except DeadKernelError:
            self.cell_log[cell_index] = (
                started, time.perf_counter() - t0, "died", "DeadKernelError", "the kernel died",
            )
            raise
        except BaseException as exc:  # timeout, interrupt of this process
            self.cell_log[cell_index] = (
                started, time.perf_counter() - t0, "error", type(exc).__name__, str(exc),
            )
            raise
        self.cell_log[cell_index] = (started, time.perf_counter() - t0, "ok", None, None)
        return result

    # nbclient binds its sync wrappers to its own coroutines: rebind them to the overrides
    start_new_kernel = run_sync(async_start_new_kernel)
    execute_cell = run_sync(async_execute_cell)


def _kernel_pid(km: Any) -> int | None:
    provisioner = getattr(km, "provisioner", None)
    pid = getattr(provisioner, "pid", None) or getattr(getattr(provisioner, "process", None), "pid", None)
    return int(pid) if pid else None


class NbmlopsEngine(NBClientEngine):
    """papermill engine that records the execution in the nbmlops lineage store."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        **kwargs: Any,
    ) -> Any:
        opts = {k[len("nbmlops_"):]: kwargs.pop(k) for k in list(kwargs) if k.startswith("nbmlops_")}
        if kwargs.get("kernel_manager_class") is None:
            # an unknown kernel is a usage error (NoSuchKernel): raise it before a run is
            # recorded, and before jupyter_client logs its traceback while starting the kernel
            from jupyter_client.kernelspec import KernelSpecManager

            KernelSpecManager().get_kernel_spec(kernel_name)
        input_path = kwargs.get("input_path")
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        nb = nb_man.nb
        cwd = Path(opts.get("cwd") or os.getcwd()).resolve()
        location = resolve_location(opts.get("store_url"), start=cwd)
        notebook_path = opts.get("notebook_path")
        if notebook_path is None and isinstance(input_path, (str, os.PathLike)):
            notebook_path = Path(input_path).resolve()
        given = opts.get("result")
        result: dict[str, Any] = given if isinstance(given, dict) else {}
        capture = HeadlessCapture(
            location,
            notebook_path=notebook_path,
            source=opts.get("source") or "papermill",
            run_name=opts.get("run_name") or (Path(notebook_path).stem if notebook_path else None),
            parent_run_id=opts.get("parent_run_id"),
            run_id=opts.get("run_id"),
            base_env={**os.environ, **(opts.get("env") or {})},
            parameter_cells=[
                c.get("id") for c in nb.cells
                if PARAMETER_CELL_TAGS & set(c.get("metadata", {}).get("tags", []))
            ],
            tags=opts.get("tags"),
        )
        result["run_id"] = capture.run_id
        pm_meta = nb.metadata.get("papermill")
        if pm_meta is not None and not isinstance(pm_meta.get("input_path"), (str, type(None))):
            # papermill records its input; for a notebook given as an object that would be
            # the whole notebook again
            pm_meta["input_path"] = str(notebook_path) if notebook_path else None
        nb.metadata["nbmlops"] = {"run_id": capture.run_id, "store": location.describe()}
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=papermill_logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            extra_arguments=list(HeadlessCapture.EXTRA_ARGUMENTS),
            resources={"metadata": {"path": str(cwd)}},
        )
        client = _Client(nb_man, on_kernel=opts.get("on_kernel"), **final_kwargs)
        kernel_log = _open_kernel_log(location, capture.run_id)
        died = False
        aborted: BaseException | None = None
        try:
            with capture:
                try:
                    client.execute(env=capture.env, **({"stderr": kernel_log} if kernel_log else {}))
                except DeadKernelError:
                    died = capture.kernel_died = True
                    raise
                except BaseException as exc:  # the kernel did not start, Ctrl-C...
                    aborted = exc
                    raise
                finally:
                    if kernel_log is not None:
                        _close_kernel_log(kernel_log)
        finally:
            _finish_run(location, capture.run_id, nb, client.cell_log, died=died, opts=opts,
                        notebook_path=notebook_path, result=result, aborted=aborted,
                        kernel_log=kernel_log.name if kernel_log is not None and died
                        and os.path.exists(kernel_log.name) else None)
            nb.metadata["nbmlops"]["status"] = result.get("status")
        return nb


def source_cell_index(nb: Any, index: int) -> int:
    """Index of cell ``index`` of an executed notebook in the notebook as the user wrote it:
    the index a generated step notebook recorded for the cell (``metadata.nbmlops.source_index``),
    else ``index`` without papermill's injected-parameters cell."""
    recorded = nb.cells[index].get("metadata", {}).get("nbmlops", {}).get("source_index")
    if isinstance(recorded, int):
        return recorded
    return index - sum(
        1 for c in nb.cells[:index] if "injected-parameters" in c.get("metadata", {}).get("tags", [])
    )


def _finish_run(
    location: StoreLocation, run_id: str, nb: Any,
    cell_log: dict[int, tuple[float, float, str, str | None, str | None]], *, died: bool,
    opts: dict[str, Any], notebook_path: Any, result: dict[str, Any], kernel_log: str | None,
    aborted: BaseException | None = None,
) -> None:
    """Record from the client side what the kernel could not, and the run's final status.

    ``aborted`` is what stopped the execution outside of any cell (a kernel that died before
    it replied, a start-up timeout...): the run failed even though no cell did."""
    from .errors import NbmlopsError
    from .store import Store
    from .store.entities import CellRecord

    failed = [i for i, entry in sorted(cell_log.items()) if entry[2] != "ok"]
    status = "failed" if failed or died or aborted is not None else "finished"
    cancelled = isinstance(aborted, KeyboardInterrupt) and not died  # Ctrl-C, SIGTERM
    if cancelled and not failed and _every_cell_ran(nb, cell_log):
        # the stop came while the kernel shut down after the last cell: the run is complete
        cancelled, aborted, status = False, None, "finished"
    if cancelled:
        status = "cancelled"
    result.update(status=status, kernel_died=died, error=None, failed_cell_index=None)
    if cancelled:
        result["error"] = "cancelled (interrupted)"
        if failed:
            result["failed_cell_index"] = source_cell_index(nb, failed[0])
    elif failed:
        i = failed[0]
        _, _, how, ename, evalue = cell_log[i]
        result["failed_cell_index"] = source_cell_index(nb, i)
        result["error"] = (
            f"kernel died while running the cell (kernel log: {kernel_log})" if how == "died" and kernel_log
            else "kernel died while running the cell" if how == "died"
            else f"{ename}: {_last_line(evalue)}"
        )
    elif died:
        result["error"] = "kernel died"
    elif aborted is not None:
        result["error"] = f"{type(aborted).__name__}: {_last_line(str(aborted))}".rstrip(": ")
    try:
        with Store(location) as store:
            existed = store.run_exists(run_id)
            if not existed:
                # capture never started in the kernel (extension failed to load, kernel died
                # at start-up): the client side is all there is
                store.create_run(
                    run_id=run_id,
                    name=opts.get("run_name") or (Path(notebook_path).stem if notebook_path else "notebook"),
                    source=opts.get("source") or "papermill",
                    notebook_path=str(notebook_path) if notebook_path else None,
                    parent_run_id=opts.get("parent_run_id"),
                    params=dict(nb.metadata.get("papermill", {}).get("parameters") or {}),
                    tags={"nbmlops.capture": "client-side only"},
                )
            recorded = store.cell_executions(run_id) if cell_log else []
            have = {c.cell_id for c in recorded}
            seq = max((c.seq for c in recorded), default=0)
            missing = []
            for i, (start, duration, how, ename, evalue) in sorted(cell_log.items()):
                cell = nb.cells[i]
                if cell.get("id") in have or (existed and how == "ok"):
                    continue  # capture recorded it, or chose not to (e.g. capture paused)
                seq += 1
                source, original_hash, _ = redact_cell(cell.get("source", ""))  # no secret stored
                missing.append(CellRecord(
                    seq=seq, source=source, source_hash=original_hash, start_time=start, duration=duration,
                    status="ok" if how == "ok" else "error", cell_id=cell.get("id"),
                    execution_count=cell.get("execution_count"),
                    error_name=ename, error_value=redact_source(_last_line(evalue))[0] if evalue else None,
                    tags={"nbmlops.recorded_by": "client"},
                ))
            if missing:
                store.record_cells(run_id, missing)
            if status != "finished":  # also over the end the kernel recorded as it stopped
                store.end_run(run_id, status)
            else:
                store.end_run(run_id, "finished", only_if_running=True)
            tags = opts.get("tags")
            if tags:
                store.log_batch(run_id, tags=tags)
    except NbmlopsError as exc:
        log.warning("could not finish run %s in the store: %s", run_id, exc)


def _every_cell_ran(
    nb: Any, cell_log: dict[int, tuple[float, float, str, str | None, str | None]]
) -> bool:
    """Whether every code cell with source ran to completion."""
    return all(
        cell_log.get(i, (0.0, 0.0, "", None, None))[2] == "ok"
        for i, cell in enumerate(nb.cells)
        if cell.get("cell_type") == "code" and str(cell.get("source", "")).strip()
    )


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _open_kernel_log(location: StoreLocation, run_id: str) -> Any:
    """The kernel's own stderr (ZMQ warnings, crash messages) goes to the run's kernel.log."""
    path = location.runs_dir / run_id / "kernel.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w")  # noqa: SIM115 - closed after the kernel is gone
    except OSError:
        return None  # inherit this process's stderr instead


_NOISE = ("Kernel is running over TCP without encryption",)


def _close_kernel_log(fh: Any) -> None:
    """Close the kernel log; remove it (and its directory, if empty) when it says nothing."""
    fh.close()
    with contextlib.suppress(OSError):
        with open(fh.name, errors="replace") as f:
            noise = all(any(n in line for n in _NOISE) for line in f if line.strip())
        if noise:
            os.unlink(fh.name)
            os.rmdir(os.path.dirname(fh.name))  # only if nothing else is there
