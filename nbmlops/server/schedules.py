"""Schedules and triggers as the panel sees them: the list with the scheduler's state, a
schedule's fire history, pause/resume, and manual fires started by this server.

The server never runs the scheduler loop: schedules outlive the notebook server, so firing them
on time is the job of ``nbmlops scheduler``, a process of its own. The server reads schedules
from its store, edits their pause state through :mod:`nbmlops.schedule.service`, and fires one
when a person asks, through the core's :func:`~nbmlops.schedule.scheduler.start_fire`: the run
is the ``nbmlops run`` / ``nbmlops pipeline run`` process a scheduler would start (no shell, the
server's store through its environment), recorded as a manual fire by the Jupyter user. One
waiter thread per process reaps it (no zombies) and records how the fire ended
(:func:`~nbmlops.schedule.scheduler.finish_fire`). At most ``max_running`` manual fires run at
once; stopping the server cancels the ones still running, like the pipeline runs it started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, StoreUnavailableError
from ..schedule import service as schedule_service
from ..schedule.scheduler import finish_fire, start_fire
from .errmap import LaunchLimitError

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import Schedule, ScheduleFire, SchedulerLease
    from .service import StoreService

log = logging.getLogger(__name__)

__all__ = [
    "FIRE_FIELDS", "SCHEDULE_FIELDS", "ManualFire", "ManualFires", "ScheduleService",
    "fire_view", "schedule_name", "schedule_view", "scheduler_view", "user_name",
]

#: Fields of a Schedule in the API (``docs/server-api.md``), in this order.
SCHEDULE_FIELDS = (
    "id", "name", "kind", "target", "target_path", "target_kind", "cron", "timezone", "watch",
    "watch_path", "params", "overlap", "catchup", "paused", "next_fire_at", "next_fire",
    "next_fire_local", "watched_files", "created_at", "updated_at", "last_fire",
)
#: Fields of a ScheduleFire in the API.
FIRE_FIELDS = (
    "id", "schedule", "status", "due_at", "due", "created_at", "started_at", "ended_at",
    "run_id", "pid", "owner", "reason", "message",
)
#: Most fires one history answer holds.
MAX_HISTORY = 500
RootPath = Callable[[str | None], str | None]


def schedule_name(value: str) -> str:
    """A schedule or trigger name from a URL path, checked like the core checks new names."""
    if not schedule_service.NAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid schedule name {value[:70]!r}: names use letters, digits, '.', '_' and '-' "
            "(at most 128, starting with a letter or digit)")
    return value


def user_name(user: Any) -> str:
    """Who fired a schedule from JupyterLab: the Jupyter user's name (``User.name``, which is
    the username unless the identity provider knows a real name)."""
    if isinstance(user, str):
        name = user
    else:
        name = getattr(user, "name", None) or getattr(user, "username", None) or ""
    name = " ".join(str(name).split())[:200]
    return name or "jupyter"


# -- JSON shapes ---------------------------------------------------------------------------------


def fire_view(fire: ScheduleFire) -> dict[str, Any]:
    d = schedule_service.fire_dict(fire)
    return {key: d.get(key) for key in FIRE_FIELDS}


def schedule_view(sched: Schedule, root_path: RootPath) -> dict[str, Any]:
    """A schedule or trigger, field by field (the same fields for every kind)."""
    d = schedule_service.schedule_dict(sched)
    d["target_path"] = root_path(sched.target)
    d["watch_path"] = root_path(sched.watch) if sched.watch and sched.kind != "drift" else None
    d["last_fire"] = fire_view(sched.last_fire) if sched.last_fire is not None else None
    if sched.paused:
        d["next_fire_local"] = None  # like next_fire: nothing is due while paused
    return {key: d.get(key) for key in SCHEDULE_FIELDS}


def scheduler_view(lease: SchedulerLease | None, now: float) -> dict[str, Any]:
    """Whether a scheduler works on the store: its lease exists and has not run out."""
    if lease is None:
        return {"running": False, "holder": None, "host": None, "pid": None, "expires_at": None}
    return {
        "running": lease.holder is not None and lease.expires_at > now,
        "holder": lease.holder,
        "host": lease.host,
        "pid": lease.pid,
        "expires_at": lease.expires_at,
    }


# -- manual fires --------------------------------------------------------------------------------


@dataclass
class ManualFire:
    """One run this server started because a person pressed "Fire now"."""

    fire_id: int
    run_id: str
    schedule: str
    by: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    exit_code: int | None = None
    #: the fire's status as :func:`finish_fire` recorded it (None while it runs, or if the
    #: store refused the record: the fire's status then follows its run's)
    status: str | None = None
    cancel_requested: bool = False

    @property
    def running(self) -> bool:
        return self.exit_code is None


class ManualFires:
    """Starts manual fires (at most ``max_running`` at once), reaps them, cancels them at stop."""

    def __init__(self, *, max_running: int = 4, keep: int = 200) -> None:
        self.max_running = max(1, max_running)
        self.keep = keep
        self._fires: OrderedDict[int, ManualFire] = OrderedDict()
        self._starting = 0
        self._lock = threading.Lock()
        self._waiters: list[threading.Thread] = []

    def running(self) -> list[ManualFire]:
        with self._lock:
            return [f for f in self._fires.values() if f.running]

    def get(self, fire_id: int) -> ManualFire | None:
        with self._lock:
            return self._fires.get(fire_id)

    def start(self, store: Store, name: str, by: str) -> ManualFire:
        """Fire ``name`` now; :class:`LaunchLimitError` when ``max_running`` fires run already."""
        with self._lock:
            busy = self._starting + sum(1 for f in self._fires.values() if f.running)
            if busy >= self.max_running:
                raise LaunchLimitError(
                    f"{busy} schedule runs fired from JupyterLab are running already (at most "
                    f"{self.max_running}: c.NbmlopsServerApp.max_pipeline_runs); wait for one "
                    "to finish")
            self._starting += 1
        try:
            # die_with_parent=False: the parent-death signal follows the *thread* that spawns,
            # and this is a pool thread; the waiter below and `shutdown` supervise the process
            fire_id, run_id, proc = start_fire(store, name, by=by, die_with_parent=False)
        except BaseException:
            with self._lock:
                self._starting -= 1
            raise
        fire = ManualFire(fire_id, run_id, name, by, proc)
        with self._lock:
            self._starting -= 1
            self._fires[fire_id] = fire
            self._forget_old()
        waiter = threading.Thread(target=self._wait, args=(store, fire), daemon=True,
                                  name=f"nbmlops-fire-{fire_id}")
        waiter.start()
        with self._lock:
            self._waiters = [t for t in self._waiters if t.is_alive()] + [waiter]
        log.info("nbmlops: %s fired %s from JupyterLab: run %s (pid %d)", by, name, run_id,
                 proc.pid)
        return fire

    def _wait(self, store: Store, fire: ManualFire) -> None:
        code = fire.proc.wait()  # reaps the child
        status: str | None = None
        for attempt in range(5):
            try:
                status = finish_fire(store, fire.fire_id, fire.run_id, code)
                break
            except StoreUnavailableError as exc:  # locked for a moment: try again
                log.debug("nbmlops: recording fire %d: %s", fire.fire_id, exc)
                time.sleep(0.5 * (attempt + 1))
            except Exception as exc:  # noqa: BLE001 - the fire then follows its run's status
                log.warning("nbmlops: could not record how fire %d of %s ended: %s",
                            fire.fire_id, fire.schedule, exc)
                break
        with self._lock:
            fire.exit_code = code
            fire.ended = time.time()
            fire.status = status
        level = logging.INFO if status == "finished" else logging.WARNING
        log.log(level, "nbmlops: fire %d of %s (run %s) ended: %s, exit code %s", fire.fire_id,
                fire.schedule, fire.run_id, status, code)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every running fire (SIGTERM: `nbmlops pipeline run` and `nbmlops run` both stop
        their kernels and record their runs cancelled), wait up to ``timeout`` s, then kill what
        is left; the waiters record how each fire ended before the store closes."""
        for fire in self.running():
            fire.cancel_requested = True
            _signal(fire.proc, signal.SIGTERM)
        self._join(timeout)
        for fire in self.running():
            log.warning("nbmlops: fire %d of %s did not stop in %g s: killed", fire.fire_id,
                        fire.schedule, timeout)
            try:
                os.killpg(fire.proc.pid, signal.SIGKILL)  # its own session: the whole group
            except (ProcessLookupError, PermissionError):
                pass
        self._join(10.0)

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            waiters = list(self._waiters)
        for t in waiters:
            t.join(max(0.0, deadline - time.monotonic()))

    def _forget_old(self) -> None:
        """Keep the newest ``keep`` fires (running ones are never forgotten)."""
        extra = len(self._fires) - self.keep
        for fid in [fid for fid, f in self._fires.items() if not f.running][:max(0, extra)]:
            del self._fires[fid]


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:  # exited just now; the waiter records it
        pass


# -- the service ---------------------------------------------------------------------------------


class ScheduleService:
    """Answers the schedule endpoints; called in the server's thread pool, never on the loop.

    Schedules live in the store the server itself uses (``c.NbmlopsServerApp.store_url``, else
    the nearest ``.nbmlops/`` from the server root), the one ``nbmlops scheduler`` started in
    the project would fire."""

    def __init__(self, stores: StoreService, *, max_fires: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self.stores = stores
        self.fires = ManualFires(max_running=max_fires)
        self.clock = clock

    def _store(self) -> Store:
        return self.stores.store(None)

    def _view(self, sched: Schedule) -> dict[str, Any]:
        return schedule_view(sched, self.stores.root_path)

    def schedules(self) -> dict[str, Any]:
        """Every schedule and trigger (by name) with its last fire, and the scheduler's state."""
        store = self._store()
        items = schedule_service.list_schedules(store)
        lease = store.schedules.lease()
        return {"schedules": [self._view(s) for s in items],
                "scheduler": scheduler_view(lease, self.clock())}

    def history(self, name: str, limit: int = 50) -> dict[str, Any]:
        fires = schedule_service.history(self._store(), name, limit)
        return {"schedule": name, "fires": [fire_view(f) for f in fires]}

    def fire(self, name: str, by: str) -> dict[str, Any]:
        """Start a manual fire of ``name`` (whatever its pause state or overlap policy says)."""
        store = self._store()
        store.schedules.get(name)  # an unknown name is a 404 even at the limit
        fire = self.fires.start(store, name, by)
        return {"fire": fire.fire_id, "run_id": fire.run_id, "status": "started"}

    def pause(self, name: str) -> dict[str, Any]:
        store = self._store()
        schedule_service.pause(store, name)
        return self._view(store.schedules.get(name))  # with its last fire

    def resume(self, name: str) -> dict[str, Any]:
        store = self._store()
        schedule_service.resume(store, name, now=self.clock())
        return self._view(store.schedules.get(name))

    def shutdown(self) -> None:
        self.fires.shutdown()
