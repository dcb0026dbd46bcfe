"""``nbmlops scheduler``: the one process per store that fires schedules and triggers.

Exactly one scheduler works on a store at a time: it holds the store's lease row
(``scheduler_lease``), renewed every ``lease_ttl / 3`` seconds. A second scheduler exits with a
message (or, with ``wait``, stands by until the lease is free). A lease whose holder died on
this host is taken over at once; one held on another host (``host``: the name a scheduler goes
by, default the machine's host name) is taken over when it expires, ``lease_ttl`` seconds after
its last renewal. Lease times are the schedulers' own clocks: hosts that share a store keep them
in step (NTP), within a fraction of ``lease_ttl``.

While the store is unreachable (a PostgreSQL server restarting) the scheduler keeps running: it
logs one ``store-unavailable`` line, retries every poll and logs ``store-back`` when it answers
again. A lease that expired meanwhile is still its own unless another scheduler took it.

Each tick:

1. reap finished child processes and record how their fires ended;
2. fire the cron schedules that are due, under their catch-up policy (``none``: only a fire
   that is less than ``misfire_grace`` seconds late; ``last``: the newest missed due time;
   ``all``: every missed due time) and overlap policy (``skip``, ``queue`` or ``allow`` when the
   previous fire's run is still running). A due time is claimed in the same transaction that
   moves ``next_fire_at`` on, so a restart never fires it twice;
3. fire change triggers (a watched file's content fingerprint changed and its size and mtime
   held still for one poll) and after-triggers (a run of the upstream pipeline finished);
4. drift triggers: when new prediction-log files appeared (or the alias moved), hand a drift
   check (:func:`nbmlops.monitoring.monitor`) to the drift worker thread, and act on the checks
   it finished: fire when the traffic drifted and no episode is open for that version, close
   the episode when a check finds no drift or the alias moved. The check runs off the loop's
   thread, so a monitor that reads a big log does not delay due cron schedules;
5. start queued fires whose schedule has nothing running any more.

Runs are separate processes (:mod:`nbmlops.schedule.launch`) that the scheduler watches. On
start, fires left ``started`` by a scheduler that died are settled: their process is stopped if it
still runs, the fire becomes ``abandoned`` and a run still marked running becomes ``failed``.
SIGTERM or SIGINT stops the scheduler: with ``on_stop="cancel"`` running runs are cancelled
(they record themselves as cancelled), with ``"wait"`` they are waited for (a second signal
cancels them).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import NbmlopsError, NotFoundError, SchedulerBusyError, StoreError
from .cron import parse_cron, utc_iso
from .launch import run_command, spawn, tail_lines
from .service import file_entry, watched_paths

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import Schedule, ScheduleFire

log = logging.getLogger(__name__)

__all__ = ["Scheduler", "TickStats", "fire_now", "start_fire", "finish_fire"]

#: how long a stopping scheduler gives cancelled runs to record themselves, then kills them
STOP_GRACE = 30.0
ENDED = ("finished", "failed", "cancelled", "abandoned")
#: at most this many missed due times fire at once under ``catchup all``
MAX_CATCHUP = 100
LOG_NAME = "scheduler.log"


@dataclass
class _Child:
    fire_id: int
    schedule_id: int
    schedule: str
    run_id: str
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.time)
    #: the scheduler stopped it (SIGTERM on shutdown)
    cancelled: bool = False


@dataclass
class _DriftCheck:
    """One drift check handed to the drift worker, and what it found."""

    schedule: str
    watch: str
    config: dict[str, Any]
    #: what the check covers: the newest log part, the number of parts, the alias's version
    seen: dict[str, Any]
    report: dict[str, Any] | None = None
    #: no traffic logged for it yet (the monitor's NotFoundError): nothing to judge
    nothing: str | None = None
    error: NbmlopsError | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class TickStats:
    """What one tick did (for tests, benchmarks and ``--once``)."""

    fired: int = 0
    skipped: int = 0
    queued: int = 0
    ended: int = 0
    failed: int = 0
    duration: float = 0.0


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Scheduler:
    """Fires the schedules and triggers of one store. Use :meth:`run` (a loop) or :meth:`tick`."""

    def __init__(
        self,
        store: Store,
        *,
        poll: float = 1.0,
        lease_ttl: float = 30.0,
        on_stop: str = "cancel",
        misfire_grace: float = 60.0,
        lead: float = 3.0,
        wait_for_lease: bool = False,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        if on_stop not in ("cancel", "wait"):
            raise ValueError("on_stop must be cancel or wait")
        self.store = store
        self.repo = store.schedules
        self.poll = max(0.05, poll)
        self.lease_ttl = max(3 * self.poll, lease_ttl)
        self.on_stop = on_stop
        self.misfire_grace = misfire_grace
        #: runs are started this many seconds before they are due and wait, loaded, for their
        #: due time (papermill, nbformat and the pipeline load take a second or more)
        self.lead = max(0.0, lead)
        self.wait_for_lease = wait_for_lease
        self.out = out if out is not None else sys.stderr
        self.clock = clock
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.holder = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.children: dict[int, _Child] = {}  # fire id -> child
        self._stop = threading.Event()
        self._stops = 0
        self._wake = threading.Event()
        self._lease_renewed = 0.0
        self._has_lease = False
        self._stat_seen: dict[str, dict[str, tuple[int, int]]] = {}  # trigger -> path -> stat
        self.failed_runs = 0
        self._errors: dict[str, str] = {}  # schedule -> the error it last failed with
        self._drift_checks: dict[str, _DriftCheck] = {}  # trigger -> its check in flight
        self._drift_queue: queue.Queue[_DriftCheck | None] = queue.Queue()
        self._drift_worker: threading.Thread | None = None
        self._log_dirs: dict[str, tuple[int, dict[str, Any]]] = {}  # dir -> (mtime_ns, newest)
        self._quiet: dict[str, str] = {}  # trigger -> "nothing to judge" message logged once
        self._store_down: str | None = None  # the store error logged once while it lasts

    # -- logging --------------------------------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        """One line per event: ``TIME EVENT key=value ...``."""
        parts = [utc_iso(self.clock()) or "", event]
        for key, value in fields.items():
            if value is None:
                continue
            text = str(value)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        try:
            self.out.write(" ".join(parts) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    # -- lease ----------------------------------------------------------------------------------

    def acquire_lease(self) -> None:
        """Become the store's scheduler, or raise :class:`SchedulerBusyError`."""
        announced = False
        while True:
            try:
                if self.repo.acquire_lease(self.holder, host=self.host, pid=self.pid,
                                           ttl=self.lease_ttl):
                    break
                lease = self.repo.lease()
            except StoreError as exc:
                if not self.wait_for_lease:
                    raise
                self._store_unavailable(exc)  # a standby outlives a server restart
                if self._stop.wait(min(2.0, self.lease_ttl / 3)):
                    raise SchedulerBusyError("stopped while waiting for the scheduler lease") from exc
                continue
            self._store_is_back()
            if lease is not None and lease.host == self.host and (
                not _pid_alive(lease.pid) or lease.pid == self.pid  # our pid: a restarted container
            ):
                if self._try(lambda dead=lease.holder: self.repo.acquire_lease(  # type: ignore[misc]
                        self.holder, host=self.host, pid=self.pid, ttl=self.lease_ttl,
                        steal_from=dead)):
                    self.emit("lease-taken-over", previous=lease.holder, reason="holder is dead")
                    break
                continue
            if lease is None:
                continue
            left = max(0.0, lease.expires_at - self.clock())
            if not self.wait_for_lease:
                raise SchedulerBusyError(
                    f"another scheduler runs on this store ({self.store.location.describe()}): "
                    f"pid {lease.pid} on host {lease.host}, since {utc_iso(lease.acquired_at)}; "
                    f"its lease runs out in {left:.0f} s unless renewed. Stop it first, or "
                    "start this one with --wait to take over when it stops")
            if not announced:
                self.emit("waiting-for-lease", holder=lease.holder, host=lease.host, pid=lease.pid)
                announced = True
            if self._stop.wait(min(2.0, self.lease_ttl / 3)):
                raise SchedulerBusyError("stopped while waiting for the scheduler lease")
        self._has_lease = True
        self._lease_renewed = time.monotonic()
        self.emit("started", holder=self.holder, store=self.store.location.describe(),
                  poll=self.poll, lease_ttl=f"{self.lease_ttl:g}s")

    def _try(self, fn: Callable[[], bool]) -> bool:
        """``fn()``, False when the store is away for a moment (logged once)."""
        try:
            return fn()
        except StoreError as exc:
            self._store_unavailable(exc)
            return False

    def _store_unavailable(self, exc: NbmlopsError) -> None:
        """Log a store outage once while it lasts (a poll-rate stream of the same line helps
        nobody); :meth:`_store_is_back` logs its end."""
        text = str(exc)
        if self._store_down is None:
            self.emit("store-unavailable", error=text, retry_every=f"{self.poll:g}s")
        elif text != self._store_down:
            log.debug("store still unavailable: %s", text)
        self._store_down = text

    def _store_is_back(self) -> None:
        if self._store_down is not None:
            self._store_down = None
            self.emit("store-back", store=self.store.location.describe())

    def _renew_lease(self) -> None:
        if time.monotonic() - self._lease_renewed < self.lease_ttl / 3:
            return
        if not self.repo.renew_lease(self.holder, ttl=self.lease_ttl):
            self._has_lease = False
            raise SchedulerBusyError("lost the scheduler lease to another scheduler; stopping")
        self._lease_renewed = time.monotonic()

    def _keep_lease(self) -> None:
        """Renew the lease while stopping (a successor must not take over the runs we wait
        for); problems are logged, never raised."""
        if not self._has_lease:
            return
        try:
            self._renew_lease()
        except NbmlopsError as exc:
            self.emit("error", error=exc)

    def release_lease(self) -> None:
        if self._has_lease:
            try:
                self.repo.release_lease(self.holder)
            except NbmlopsError as exc:
                self.emit("lease-release-failed", error=exc)
            self._has_lease = False

    # -- recovery -------------------------------------------------------------------------------

    def recover(self) -> None:
        """Settle fires a dead scheduler left ``started``: stop their process if it still runs;
        a run that finished or failed on its own keeps that status, anything else (still marked
        running, never created, or cancelled because its scheduler died) makes the fire
        ``abandoned`` and a run still marked running ``failed``."""
        for fire, run_status in self.repo.started_fires():
            if fire.owner is None or fire.owner == self.holder or fire.owner.startswith("manual@"):
                continue  # manual fires: settled by _settle_lost_manual_fires
            here = _owner_host(fire.owner) == self.host  # a pid means something only here
            if (here and fire.pid and _pid_alive(fire.pid) and fire.run_id
                    and fire.run_id in _cmdline(fire.pid)):
                self._stop_orphan(fire.pid)
                run_status = self._run_status(fire.run_id) if fire.run_id else None
            if run_status in ("finished", "failed"):
                continue  # it ended by itself; settle_fires below copies how
            reason = (f"abandoned: the scheduler that started it ({fire.owner}) stopped before "
                      "the run ended")
            self._end_run(fire.run_id, "failed", reason)
            self.repo.update_fire(fire.id, status="abandoned", ended_at=self.clock(), message=reason)
            self.emit("abandoned", schedule=fire.schedule, fire=fire.id, run=_short(fire.run_id),
                      previous_owner=fire.owner, run_status=run_status or "none")
        self.repo.settle_fires()

    def _recover_when_reachable(self) -> None:
        """:meth:`recover`, again each poll while the store is unreachable (a server restarting
        just after the lease was taken must not stop the scheduler)."""
        while True:
            try:
                self.recover()
            except StoreError as exc:
                if "locked" in str(exc):
                    self.emit("error", error=exc, retry_in=f"{self.poll:g}s")
                else:
                    self._store_unavailable(exc)
                if self._stop.wait(self.poll):
                    return
                continue
            self._store_is_back()
            return

    def _stop_orphan(self, pid: int) -> None:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _pid_alive(pid) and _cmdline(pid):
                time.sleep(0.1)
            if not _cmdline(pid):
                return

    def _end_run(self, run_id: str | None, status: str, reason: str) -> None:
        """End run ``run_id`` and its step runs that are still marked running."""
        if run_id:
            _end_stale_run(self.store, run_id, status, reason)

    # -- the loop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop (what SIGTERM does). A second call cancels running runs even
        under ``on_stop="wait"``."""
        self._stops += 1
        self._stop.set()
        self._wake.set()

    def run(self, *, once: bool = False, install_signals: bool = True) -> int:
        """Acquire the lease, recover, then tick until stopped (``once``: fire what is due now,
        wait for those runs, exit). Returns 0, or 1 when ``once`` and a run failed."""
        previous: dict[signal.Signals, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        try:
            self.acquire_lease()
            try:
                self._recover_when_reachable()
                started = self.clock()
                while not self._stop.is_set():
                    try:
                        self.tick(cron_until=started if once else None)
                    except SchedulerBusyError:
                        raise  # the lease is gone: another scheduler works on this store
                    except StoreError as exc:  # the store is locked or away for a moment
                        if "locked" in str(exc):
                            self.emit("error", error=exc, retry_in=f"{self.poll:g}s")
                        else:
                            self._store_unavailable(exc)
                    except NbmlopsError as exc:
                        self.emit("error", error=exc, retry_in=f"{self.poll:g}s")
                    else:
                        self._store_is_back()
                    if once and not self.children and not self._drift_checks:
                        break
                    self._sleep(once=once)
            finally:
                self._stop_drift_worker()
                self._shutdown()
                self.release_lease()
                self.emit("stopped", holder=self.holder)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if once and self.failed_runs else 0

    def _sleep(self, *, once: bool = False) -> None:
        """Wait one poll, or less when a run must start sooner. A due time that is already
        past was handled (or failed) in the tick just done: it never shortens the wait, so a
        schedule that keeps failing cannot make the loop spin."""
        now = self.clock()
        wake = now + self.poll
        if not once:  # --once fires nothing that falls due after it started
            try:
                due = self.repo.next_due()
            except NbmlopsError:
                due = None
            if due is not None and now < due - self.lead < wake:
                wake = due - self.lead
        self._wake.wait(max(0.0, wake - now))
        self._wake.clear()

    def _shutdown(self) -> None:
        if not self.children:
            return
        if self.on_stop == "wait" and self._stops < 2:
            self.emit("stopping", waiting_for=len(self.children))
            while self.children and self._stops < 2:
                self._keep_lease()
                self._reap()
                time.sleep(min(self.poll, 0.5))
        if self.children:
            self.emit("stopping", cancelling=len(self.children))
            for child in self.children.values():
                child.cancelled = True
                _signal(child.proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while self.children and time.monotonic() < deadline:
                self._keep_lease()
                self._reap()
                time.sleep(0.1)
            for child in list(self.children.values()):
                _killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
            self._reap()

    # -- one tick -------------------------------------------------------------------------------

    def tick(self, *, now: float | None = None, cron_until: float | None = None) -> TickStats:
        """Reap, fire due schedules and triggers, start queued fires. ``cron_until`` limits cron
        fires to due times up to it (``--once``)."""
        t0 = time.perf_counter()
        stats = TickStats()
        self._renew_lease()
        stats.ended = self._reap()
        now = self.clock() if now is None else now
        limit = now + self.lead if cron_until is None else min(now, cron_until)
        schedules = self.repo.candidates(limit)
        open_fires = self._settle_lost_manual_fires(self.repo.open_fires())
        running = {c.schedule_id for c in self.children.values()}
        running |= {f.schedule_id for f in open_fires if f.status == "started"}
        for sched in schedules:
            try:
                if sched.kind == "cron":
                    if sched.next_fire_at is not None and sched.next_fire_at <= limit:
                        self._fire_cron(sched, now, limit, running, stats)
                elif sched.kind == "change":
                    self._check_change(sched, running, stats)
                elif sched.kind == "after":
                    self._check_after(sched, running, stats)
                elif sched.kind == "drift":
                    self._check_drift(sched, running, stats)
            except NbmlopsError as exc:
                if self._errors.get(sched.name) != str(exc):  # once per distinct error
                    self._errors[sched.name] = str(exc)
                    self.emit("error", schedule=sched.name, error=exc)
            else:
                self._errors.pop(sched.name, None)
        active = {s.name for s in schedules}
        for name in [n for n, c in self._drift_checks.items() if c.done.is_set()]:
            if name not in active:  # paused or removed while its check ran: forget the check
                del self._drift_checks[name]
        if any(f.status == "queued" for f in open_fires) or stats.queued:
            self._start_queued(running, stats)
        stats.duration = time.perf_counter() - t0
        return stats

    def _settle_lost_manual_fires(self, fires: list[ScheduleFire]) -> list[ScheduleFire]:
        """Manual fires of this host whose process is gone without ending its run (killed
        before the run existed, a `trigger fire --no-wait` whose run failed to start...): end
        them, so that they do not count as running for ever. Returns the fires still open."""
        mine = manual_owner()
        still = []
        for fire in fires:
            lost = (
                fire.status == "started" and fire.owner == mine
                and self.clock() - (fire.started_at or fire.created_at) > 5.0
                and not (fire.pid and _pid_alive(fire.pid) and fire.run_id
                         and fire.run_id in _cmdline(fire.pid))
            )
            if not lost:
                still.append(fire)
                continue
            reason = "its process exited before the run recorded its end"
            self._end_run(fire.run_id, "failed", reason)
            status = self._run_status(fire.run_id) if fire.run_id else None
            self.repo.update_fire(fire.id, status=status if status in ENDED else "failed",
                                  ended_at=self.clock(), message=reason)
            self.emit("ended", schedule=fire.schedule, fire=fire.id, run=_short(fire.run_id),
                      status=status if status in ENDED else "failed", error=reason)
        return still

    def _fire_cron(
        self, sched: Schedule, now: float, horizon: float, running: set[int], stats: TickStats
    ) -> None:
        """Fire the due times of ``sched`` up to ``horizon`` (a little after now: runs start
        early and wait) under its catch-up and overlap policies."""
        assert sched.cron is not None and sched.next_fire_at is not None
        spec = parse_cron(sched.cron, sched.timezone)
        first = sched.next_fire_at
        due = [first] + spec.times_between(first, horizon, limit=1000)
        older = 0  # missed due times older than a day, counted roughly (not enumerated)
        if len(due) > 1000 and due[-1] < now - 86400:
            older = len(due)
            due = spec.times_between(now - 86400, horizon, limit=100_000) or [due[-1]]
        next_at = spec.next_after(max(horizon, due[-1]))
        past = [t for t in due if t <= now - 1.0]  # late by more than a second: missed once
        upcoming = [t for t in due if t > now - 1.0]
        if sched.catchup == "all":
            chosen, missed = past[-MAX_CATCHUP:], past[:-MAX_CATCHUP]
        elif sched.catchup == "last":
            chosen, missed = past[-1:], past[:-1]
        else:  # none: only what is (nearly) on time
            chosen = [t for t in past[-1:] if now - t <= self.misfire_grace]
            missed = [t for t in past if t not in chosen]
        fire_times = chosen + upcoming
        records: list[dict[str, Any]] = []
        if missed:
            records.append({
                "status": "skipped", "due_at": missed[-1],
                "reason": {"kind": "schedule", "due": utc_iso(missed[-1]),
                           "missed": len(missed) + older, "missed_at_least": bool(older),
                           "first_missed": utc_iso(missed[0])},
                "message": f"{'more than ' if older else ''}{len(missed) + older} due time(s) "
                           "missed while no scheduler ran "
                           f"(catch-up {sched.catchup})",
            })
        busy = sched.id in running
        for t in fire_times:
            reason = {"kind": "schedule", "due": utc_iso(t), "due_local": spec.local_iso(t),
                      "cron": sched.cron, "timezone": sched.timezone}
            if busy and sched.overlap == "skip":
                records.append({"status": "skipped", "due_at": t, "reason": reason,
                                "message": "the previous run is still running (overlap skip)"})
            elif busy and sched.overlap == "queue":
                records.append({"status": "queued", "due_at": t, "reason": reason})
            else:
                records.append({"status": "started", "due_at": t, "reason": reason,
                                "run_id": uuid.uuid4().hex})
                busy = True
        ids = self.repo.fire_many(sched.id, records, expect_next_fire_at=first,
                                  next_fire_at=next_at, owner=self.holder)
        if ids is None:
            return  # somebody else claimed this due time
        for fid, rec in zip(ids, records, strict=True):
            if rec["status"] == "started":
                at = rec["due_at"]
                self._launch(sched, fid, rec["run_id"], rec["reason"], stats,
                             not_before=at if at > now else None)
                running.add(sched.id)
            elif rec["status"] == "queued":
                stats.queued += 1
                self.emit("queued", schedule=sched.name, fire=fid, due=rec["reason"]["due"])
            else:
                stats.skipped += 1
                self.emit("skipped", schedule=sched.name, fire=fid, due=utc_iso(rec["due_at"]),
                          why=rec.get("message"))
        self.emit("next", schedule=sched.name, at=spec.local_iso(next_at))

    def _fire_event(
        self, sched: Schedule, reason: dict[str, Any], running: set[int], stats: TickStats,
        *, state: dict[str, Any],
    ) -> int:
        """Record a trigger's fire (started, queued or skipped under its overlap policy) with
        the trigger's new ``state`` in one transaction; returns the fire's id."""
        busy = sched.id in running
        if busy and sched.overlap == "skip":
            rec: dict[str, Any] = {"status": "skipped", "reason": reason,
                                   "message": "the previous run is still running (overlap skip)"}
        elif busy and sched.overlap == "queue":
            rec = {"status": "queued", "reason": reason}
        else:
            rec = {"status": "started", "reason": reason, "run_id": uuid.uuid4().hex}
        ids = self.repo.fire_many(sched.id, [rec], state=state, owner=self.holder)
        assert ids is not None
        if rec["status"] == "started":
            self._launch(sched, ids[0], rec["run_id"], reason, stats)
            running.add(sched.id)
        elif rec["status"] == "queued":
            stats.queued += 1
            self.emit("queued", schedule=sched.name, fire=ids[0], trigger=reason["kind"])
        else:
            stats.skipped += 1
            self.emit("skipped", schedule=sched.name, fire=ids[0], why=rec["message"])
        return ids[0]

    def _check_change(self, sched: Schedule, running: set[int], stats: TickStats) -> None:
        """Fire when a watched file's content changed. A changed file is fingerprinted once it
        held still (same size and mtime) since the previous look, which may have been taken by
        an earlier process (``state["pending"]``: ``--once`` from cron settles on its next run)."""
        assert sched.watch is not None
        state = dict(sched.state or {})
        known: dict[str, dict[str, Any]] = dict(state.get("files") or {})
        pending = {p: tuple(v) for p, v in (state.get("pending") or {}).items()}
        seen = self._stat_seen.get(sched.name) or pending
        current: dict[str, tuple[int, int]] = {}
        for path in watched_paths(sched.watch):
            try:
                st = os.stat(path)
            except OSError:
                continue
            current[path] = (st.st_size, st.st_mtime_ns)
        changed: dict[str, dict[str, Any]] = {}
        new_files = dict(known)
        unsettled: dict[str, list[int]] = {}
        for path, stat in current.items():
            old = known.get(path)
            if old is not None and (old.get("size"), old.get("mtime_ns")) == stat:
                continue  # untouched since its last fingerprint
            if tuple(seen.get(path) or ()) != stat:
                unsettled[path] = list(stat)  # still changing, or first seen: look again
                continue
            fresh = file_entry(path)  # the path itself, never read as a pattern
            if fresh is None:
                continue
            new_files[path] = fresh
            if old is None or old.get("fp") != fresh["fp"]:
                changed[path] = {"old": old.get("fp") if old else None, "new": fresh["fp"]}
        for path in set(known) - set(current):
            new_files.pop(path)  # a deleted file does not fire; it is forgotten
        self._stat_seen[sched.name] = current
        new_state = {"files": new_files, **({"pending": unsettled} if unsettled else {})}
        if changed:
            reason = {"kind": "change", "watch": sched.watch, "files": changed}
            self._fire_event(sched, reason, running, stats, state=new_state)
        elif new_state != state:
            self.repo.update(sched.name, state=new_state)

    def _check_after(self, sched: Schedule, running: set[int], stats: TickStats) -> None:
        assert sched.watch is not None
        since = float((sched.state or {}).get("since") or 0.0)
        seen = list((sched.state or {}).get("seen") or [])
        for run_id, end in self.repo.finished_runs_since(sched.watch, since, seen=seen):
            seen = ([*seen, run_id] if end == since else [run_id])[-50:]
            since = end
            reason = {"kind": "after", "upstream_pipeline": sched.watch, "upstream_run": run_id}
            self._fire_event(sched, reason, running, stats,
                             state={"since": since, "seen": seen})

    # -- drift triggers -------------------------------------------------------------------------

    def _check_drift(self, sched: Schedule, running: set[int], stats: TickStats) -> None:
        """Act on the trigger's finished drift check, then start the next one when there is
        something new to judge: prediction-log files that appeared since the last check, or the
        alias pointing at another version. One check per trigger at a time."""
        assert sched.watch is not None
        check = self._drift_checks.get(sched.name)
        if check is not None:
            if not check.done.is_set():
                return  # still running: the loop goes on, the worker wakes it when done
            del self._drift_checks[sched.name]
            self._drift_done(sched, check, running, stats)
            sched = self.repo.get(sched.name)  # the state that result left
        watch = sched.watch or ""
        model, _, alias = watch.partition("@")
        state = dict(sched.state or {})
        version = self.store.registry.get_model(model).aliases.get(alias)
        episode = state.get("episode")
        if episode and episode.get("version") != version:
            state["episode"] = None  # a promoted challenger starts a new baseline
            self.repo.update(sched.name, state=state)
            self.emit("drift-over", trigger=sched.name, watch=sched.watch,
                      version=episode.get("version"), why=f"{alias} now points at "
                      + (f"version {version}" if version is not None else "no version"))
        if version is None:
            raise NotFoundError(f"model {model!r} has no alias {alias!r} any more: nothing to "
                                "watch until it is set again (nbmlops models alias)")
        newest = self._newest_log_part(self.store.location.predictions_dir / model)
        seen = {**newest, "version": version}
        if not newest.get("part"):
            self._nothing_to_judge(sched.name, f"no prediction log for {model} yet")
            return
        if seen == state.get("seen"):
            return  # nothing new since the last check
        check = _DriftCheck(sched.name, watch, dict(state.get("config") or {}), seen)
        self._drift_checks[sched.name] = check
        self._start_drift_worker()
        self._drift_queue.put(check)

    def _newest_log_part(self, directory: Path) -> dict[str, Any]:
        """``{"part": newest part file name, "parts": count}`` of a prediction-log directory;
        the directory is listed again only when its mtime changed (a new part was renamed in),
        or is less than a second old (timestamps are coarse: two renames can share one)."""
        key = str(directory)
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            self._log_dirs.pop(key, None)
            return {}
        cached = self._log_dirs.get(key)
        if cached is not None and cached[0] == mtime and time.time_ns() - mtime > 1_000_000_000:
            return cached[1]
        newest, count = "", 0
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("part-") and entry.name.endswith(".parquet"):
                        count += 1
                        newest = max(newest, entry.name)
        except OSError:
            return {}
        found = {"part": newest, "parts": count} if count else {}
        self._log_dirs[key] = (mtime, found)
        return found

    def _nothing_to_judge(self, name: str, why: str) -> None:
        """No traffic yet is a normal state, not an error: logged once at debug level."""
        if self._quiet.get(name) != why:
            self._quiet[name] = why
            log.debug("drift trigger %s: nothing to judge yet (%s)", name, why)

    def _drift_done(
        self, sched: Schedule, check: _DriftCheck, running: set[int], stats: TickStats
    ) -> None:
        """Fire, keep or close the drift episode from what one check found."""
        state = dict(sched.state or {})
        state["seen"] = check.seen  # judged (or found nothing to judge): wait for new files
        if check.error is not None:
            self.repo.update(sched.name, state=state)
            raise check.error
        report = check.report
        if report is None:
            self._nothing_to_judge(sched.name, check.nothing or "no traffic logged")
            self.repo.update(sched.name, state=state)
            return
        self._quiet.pop(sched.name, None)
        cfg = check.config
        version = report.get("version")
        rows = int(report.get("rows") or 0)
        score = float(report.get("score") or 0.0)
        monitor_id = report.get("id")
        judged = bool(report.get("judged", True)) and rows >= int(cfg.get("min_rows") or 1)
        drifted = bool(report.get("drifted")) and judged
        state["last_check"] = {"at": self.clock(), "version": version, "rows": rows,
                               "score": score, "drifted": drifted, "judged": judged,
                               "monitor_id": monitor_id, "seconds": round(check.seconds, 3)}
        log.debug("drift trigger %s: %s v%s rows=%d score=%.4f drifted=%s (%.2f s)", sched.name,
                  sched.watch, version, rows, score, drifted, check.seconds)
        episode = state.get("episode")
        if version != check.seen.get("version"):
            self.repo.update(sched.name, state=state)  # the alias moved while it ran: look again
            return
        if not judged:
            self._nothing_to_judge(sched.name, f"{rows} rows logged, fewer than "
                                   f"--min-rows {cfg.get('min_rows')}")
            self.repo.update(sched.name, state=state)
            return
        if not drifted:
            state["episode"] = None
            self.repo.update(sched.name, state=state)
            if episode:
                self.emit("drift-over", trigger=sched.name, watch=sched.watch, version=version,
                          score=f"{score:.4g}", why="no drift")
            return
        if episode and episode.get("version") == version:
            self.repo.update(sched.name, state=state)  # the same episode: never fires twice
            return
        features = {}
        for f in report.get("features") or []:
            if isinstance(f, dict) and f.get("drifted") and f.get("psi") is not None:
                features[str(f.get("name"))] = round(float(f["psi"]), 6)
        model, _, alias = sched.watch.partition("@") if sched.watch else ("", "", "")
        reason = {"kind": "drift", "model": model, "alias": alias, "version": version,
                  "score": round(score, 6), "threshold": cfg.get("threshold"),
                  "window": cfg.get("window"), "rows": rows, "monitor_id": monitor_id,
                  "features": features}
        state["episode"] = {"version": version, "opened_at": self.clock(), "fire_id": None,
                            "monitor_id": monitor_id, "score": round(score, 6)}
        self.emit("drift", trigger=sched.name, watch=sched.watch, version=version,
                  score=f"{score:.4g}", threshold=cfg.get("threshold"), rows=rows,
                  monitor=monitor_id)
        fire_id = self._fire_event(sched, reason, running, stats, state=state)
        state["episode"] = {**state["episode"], "fire_id": fire_id}
        self.repo.update(sched.name, state=state)

    def _start_drift_worker(self) -> None:
        if self._drift_worker is None or not self._drift_worker.is_alive():
            self._drift_worker = threading.Thread(target=self._drift_loop, daemon=True,
                                                  name="nbmlops-drift-checks")
            self._drift_worker.start()

    def _stop_drift_worker(self) -> None:
        if self._drift_worker is not None:
            self._drift_queue.put(None)  # a check in progress ends on its own; nobody waits
            self._drift_worker = None

    def _drift_loop(self) -> None:
        """The drift worker: runs the checks the loop hands it, one at a time."""
        while True:
            check = self._drift_queue.get()
            if check is None:
                return
            self._run_drift_check(check)

    def _run_drift_check(self, check: _DriftCheck) -> None:
        t0 = time.perf_counter()
        try:
            from ..monitoring.monitor import monitor  # the function (the package attribute
            # of that name is the submodule once it is imported)

            cfg = check.config
            report = monitor(self.store, check.watch, window=cfg.get("window"),
                             threshold=cfg.get("threshold"), min_rows=int(cfg.get("min_rows") or 1),
                             record=True, source=f"trigger:{check.schedule}")
            data = report.to_dict()
            if data.get("id") is None:
                data["id"] = getattr(report, "id", None)
            check.report = data
        except NotFoundError as exc:
            if str(exc).startswith("no predictions logged"):  # none in the window: not yet
                check.nothing = str(exc)
            else:  # no training data to compare with, the model removed...: worth a line
                check.error = exc
        except NbmlopsError as exc:
            check.error = exc
        except Exception as exc:  # noqa: BLE001 - a failed check never stops the scheduler
            log.debug("drift check of %s failed", check.schedule, exc_info=True)
            check.error = NbmlopsError(f"drift check of {check.watch} failed: "
                                       f"{type(exc).__name__}: {exc}")
        finally:
            check.seconds = time.perf_counter() - t0
            check.done.set()
            self._wake.set()  # act on it now, not a poll later

    def wait_drift_checks(self, timeout: float = 60.0) -> bool:
        """Wait until the drift checks in flight are done (tests, benchmarks); the next
        :meth:`tick` acts on them. False on timeout."""
        deadline = time.monotonic() + timeout
        for check in list(self._drift_checks.values()):
            if not check.done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _start_queued(self, running: set[int], stats: TickStats) -> None:
        queued = [f for f in self.repo.open_fires() if f.status == "queued"]
        if not queued:
            return
        by_id = {s.id: s for s in self.repo.active()}
        for fire in queued:
            if fire.schedule_id in running:
                continue
            sched = by_id.get(fire.schedule_id)
            if sched is None:
                continue  # paused: it waits
            run_id = uuid.uuid4().hex
            self.repo.update_fire(fire.id, status="started", run_id=run_id,
                                  started_at=self.clock(), owner=self.holder)
            self._launch(sched, fire.id, run_id, fire.reason, stats)
            running.add(fire.schedule_id)

    # -- processes ------------------------------------------------------------------------------

    def _launch(
        self, sched: Schedule, fire_id: int, run_id: str, reason: dict[str, Any], stats: TickStats,
        *, not_before: float | None = None,
    ) -> None:
        try:
            proc = _start_run(self.store, sched, fire_id, run_id, reason, not_before=not_before)
        except OSError as exc:
            self.repo.update_fire(fire_id, status="failed", ended_at=self.clock(),
                                  message=f"could not start: {exc}")
            self.emit("failed-to-start", schedule=sched.name, fire=fire_id, error=exc)
            self.failed_runs += 1
            return
        self.repo.update_fire(fire_id, pid=proc.pid)
        self.children[fire_id] = _Child(fire_id, sched.id, sched.name, run_id, proc)
        stats.fired += 1
        self.emit("fired", schedule=sched.name, fire=fire_id, run=_short(run_id),
                  trigger=reason.get("kind"), due=reason.get("due_local") or reason.get("due"),
                  pid=proc.pid)

    def _reap(self) -> int:
        ended = 0
        for fid, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[fid]
            ended += 1
            status, message = _settle_fire(self.store, fid, child.run_id, code,
                                           stopped=child.cancelled, clock=self.clock)
            self.failed_runs += status == "failed"
            self.emit("ended", schedule=child.schedule, fire=fid, run=_short(child.run_id),
                      status=status, seconds=f"{time.time() - child.started:.1f}",
                      exit=code, error=message)
        return ended

    def _run_status(self, run_id: str) -> str | None:
        try:
            return self.store.get_run(run_id).status
        except NbmlopsError:
            return None


def _owner_host(owner: str | None) -> str | None:
    """The host of a fire's owner (``HOST:PID:TAG``, a scheduler's holder name)."""
    if not owner or owner.count(":") < 2:
        return None
    return owner.rsplit(":", 2)[0]


def _short(run_id: str | None) -> str | None:
    return run_id[:8] if run_id else None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def manual_owner() -> str:
    """Who owns a manual fire: this host (a scheduler here can tell whether its process lives)."""
    return f"manual@{socket.gethostname()}"


def start_fire(
    store: Store, name: str, *, by: str = "cli", die_with_parent: bool = True,
) -> tuple[int, str, subprocess.Popen[bytes]]:
    """Fire schedule or trigger ``name`` now, whatever its policy or pause state says (a person
    asked for it): record a manual fire and start its run. Returns ``(fire id, run id,
    process)``; the caller waits for the process and calls :func:`finish_fire`."""
    sched = store.schedules.get(name)
    run_id = uuid.uuid4().hex
    reason = {"kind": "manual", "by": by}
    ids = store.schedules.fire_many(sched.id, [{"status": "started", "reason": reason,
                                                "run_id": run_id}], owner=manual_owner())
    assert ids is not None
    fire_id = ids[0]
    try:
        proc = _start_run(store, sched, fire_id, run_id, reason, die_with_parent=die_with_parent)
    except OSError as exc:
        store.schedules.update_fire(fire_id, status="failed", ended_at=time.time(),
                                    message=f"could not start: {exc}")
        raise NbmlopsError(f"could not start {name}: {exc}") from exc
    store.schedules.update_fire(fire_id, pid=proc.pid)
    return fire_id, run_id, proc


def finish_fire(store: Store, fire_id: int, run_id: str, exit_code: int) -> str:
    """Record how a manual fire's process ended; returns the fire's status."""
    return _settle_fire(store, fire_id, run_id, exit_code)[0]


def trigger_tags(sched: Schedule, fire_id: int, reason: dict[str, Any]) -> dict[str, str]:
    """The ``nbmlops.trigger*`` tags of a run: what fired it (see docs/schedules.md)."""
    tags = {"nbmlops.trigger": str(reason.get("kind", "schedule")),
            "nbmlops.trigger.name": sched.name, "nbmlops.trigger.fire": str(fire_id)}
    if reason.get("due"):
        tags["nbmlops.trigger.due"] = str(reason.get("due_local") or reason["due"])
    if reason.get("upstream_run"):
        tags["nbmlops.trigger.upstream_run"] = str(reason["upstream_run"])
    if reason.get("by"):
        tags["nbmlops.trigger.by"] = str(reason["by"])
    if reason.get("kind") == "drift":
        tags["nbmlops.trigger.drift"] = drift_tag(reason)
    if reason.get("files"):
        files = json.dumps(reason["files"], sort_keys=True)
        if len(files) > 4000:  # still JSON: the count and the first paths
            names = sorted(reason["files"])
            files = json.dumps({"changed": len(names), "first": names[:20],
                                "see": f"schedule history {sched.name} --json"})
        tags["nbmlops.trigger.files"] = files
    return tags


def drift_tag(reason: dict[str, Any]) -> str:
    """The ``nbmlops.trigger.drift`` tag: the drift figures that fired the run, as JSON
    (the features with the highest PSI first, at most 4,000 characters)."""
    keys = ("model", "alias", "version", "score", "threshold", "window", "rows", "monitor_id")
    out: dict[str, Any] = {k: reason.get(k) for k in keys}
    features = sorted((reason.get("features") or {}).items(), key=lambda kv: -float(kv[1] or 0))
    out["features"] = dict(features)
    text = json.dumps(out, sort_keys=True)
    while len(text) > 4000 and features:
        features = features[:len(features) // 2]
        out["features"] = dict(features)
        out["features_left_out"] = len(reason.get("features") or {}) - len(features)
        text = json.dumps(out, sort_keys=True)
    return text


def _start_run(
    store: Store, sched: Schedule, fire_id: int, run_id: str, reason: dict[str, Any], *,
    not_before: float | None = None, die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start the run of a fire as its own process: the target's CLI with the fire's run id and
    trigger tags, the store through the environment, output to the run's scheduler.log."""
    cmd = run_command(sched.target, sched.target_kind, run_id, sched.params,
                      trigger_tags(sched, fire_id, reason), not_before=not_before)
    env = {"NBMLOPS_STORE_URL": store.location.url,
           "NBMLOPS_ARTIFACT_URL": str(store.location.artifact_root)}
    return spawn(cmd, cwd=Path(sched.target).parent,
                 log_path=store.location.runs_dir / run_id / LOG_NAME, env=env,
                 die_with_parent=die_with_parent)


def _settle_fire(
    store: Store, fire_id: int, run_id: str, exit_code: int, *, stopped: bool = False,
    clock: Callable[[], float] = time.time,
) -> tuple[str, str | None]:
    """Record how a fire's process ended: the run's own status, or (when the process left its
    run running or never created it) cancelled/failed from the exit code, ending the run too.
    Returns ``(status, message)``; the message is the last line of the run's log."""
    try:
        status = store.get_run(run_id).status
    except NbmlopsError:
        status = "running"
    if status == "running":  # never created, or not ended by its process
        cancelled = stopped or exit_code in (130, -signal.SIGTERM, -signal.SIGINT)
        status = "cancelled" if cancelled else "failed"
        _end_stale_run(store, run_id, status, "cancelled: the scheduler stopped" if stopped
                       else f"the run's process exited ({exit_code}) before recording its end")
    message = None
    if status != "finished":
        tail = tail_lines(store.location.runs_dir / run_id / LOG_NAME, 3)
        message = tail[-1][:500] if tail else f"exit code {exit_code}"
    store.schedules.update_fire(fire_id, status=status, ended_at=clock(), message=message)
    return status, message


def _end_stale_run(store: Store, run_id: str, status: str, reason: str) -> None:
    """End run ``run_id`` (and its step runs) if its process left it marked running."""
    try:
        run = store.get_run(run_id)
    except NbmlopsError:
        return
    ids = [run_id] if run.status == "running" else []
    ids += [r.id for r in store.list_runs(parent_run_id=run_id, status="running", limit=1000).runs]
    for rid in ids:
        try:
            store.log_batch(rid, tags={"nbmlops.error": reason})
            store.end_run(rid, status)
        except NbmlopsError as exc:
            log.warning("could not end run %s: %s", rid, exc)


def fire_now(store: Store, name: str, *, by: str = "cli") -> tuple[int, str, str]:
    """Fire ``name`` now and wait for its run (Ctrl-C cancels it). Returns ``(fire id, run id,
    status)``."""
    fire_id, run_id, proc = start_fire(store, name, by=by)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    return fire_id, run_id, finish_fire(store, fire_id, run_id, code)
