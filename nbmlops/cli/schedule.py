"""``nbmlops schedule ...``, ``nbmlops trigger ...`` and ``nbmlops scheduler``: faces over
:mod:`nbmlops.schedule`.

JSON forms (``--json``; times are UNIX epoch seconds, ``next_fire``/``due`` ISO 8601 UTC):

* ``schedule ls`` / ``trigger ls``: ``{"schedules": [SCHEDULE...]}``, SCHEDULE =
  ``{id, name, kind, target, target_kind, cron, timezone, watch, params, overlap, catchup,
  paused, next_fire_at, next_fire, next_fire_local, created_at, updated_at, last_fire: FIRE}``
* ``schedule history``: ``{"schedule": NAME, "fires": [FIRE...]}``, FIRE = ``{id, schedule,
  status, due_at, due, created_at, started_at, ended_at, run_id, pid, owner, reason, message}``
* ``add``/``pause``/``resume``/``rm``: the SCHEDULE; ``trigger fire``: ``{"fire", "run_id",
  "status"}``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import echo_json, json_option, writable_store

if TYPE_CHECKING:
    from ..store.entities import Schedule, ScheduleFire

__all__ = ["schedule_group", "trigger_group", "scheduler_command"]

params_option = click.option(
    "-p", "--param", "param_pairs", nargs=2, multiple=True, metavar="NAME VALUE",
    help="Parameter for every run it starts (checked against the notebooks now). Repeatable.")
target_arg = click.argument("target", metavar="PIPELINE_OR_NOTEBOOK",
                            type=click.Path(path_type=Path))


def _store(ctx: click.Context) -> Any:
    from ._common import store_from as open_store

    return open_store(ctx)






def _when(ts: float | None) -> str:
    from .. import _format

    return _format.format_timestamp(ts) if ts else "-"


def _last(f: ScheduleFire | None) -> str:
    if f is None:
        return "-"
    run = f" {f.run_id[:8]}" if f.run_id else ""
    return f"{f.status}{run} {_when(f.started_at or f.created_at)}"


def _table(items: Sequence[Schedule], triggers: bool) -> str:
    from .. import _format
    from ..schedule.cron import local_iso
    from ..schedule.service import describe_trigger

    rows: list[list[Any]] = []
    for s in items:
        target = Path(s.target).name if s.target_kind == "notebook" else (
            f"{Path(s.target).parent.name}/{Path(s.target).name}")
        if triggers:
            on = describe_trigger(s)
            rows.append([s.name, target, on, s.overlap, "paused" if s.paused else "active",
                         _last(s.last_fire)])
        else:
            nxt = "-" if s.paused or s.next_fire_at is None else local_iso(
                s.next_fire_at, s.timezone)
            rows.append([s.name, target, s.cron, s.timezone, nxt,
                         "paused" if s.paused else "active", _last(s.last_fire)])
    headers = (["NAME", "TARGET", "ON", "OVERLAP", "STATE", "LAST FIRE"] if triggers
               else ["NAME", "TARGET", "CRON", "TZ", "NEXT FIRE", "STATE", "LAST FIRE"])
    return _format.render_table(headers, rows, max_width=60,
                                right_align=[False] * len(headers))


def _print_schedule(s: Schedule, as_json: bool, verb: str) -> None:
    from ..schedule.service import schedule_dict

    if as_json:
        echo_json(schedule_dict(s))
        return
    what = "schedule" if s.kind == "cron" else "trigger"
    line = f"{verb} {what} {s.name}: {s.target}"
    if s.kind == "drift":
        from ..schedule.service import describe_trigger

        line += f"; on {describe_trigger(s)}"
    if s.kind == "cron" and s.next_fire_at is not None and not s.paused:
        from ..schedule.cron import parse_cron

        line += f"; next fire {parse_cron(s.cron or '', s.timezone).local_iso(s.next_fire_at)}"
    click.echo(line)


# -- schedule -----------------------------------------------------------------------------------


@click.group("schedule")
def schedule_group() -> None:
    """Cron schedules of pipelines and notebooks (fired by `nbmlops scheduler`)."""


@schedule_group.command("add")
@target_arg
@click.option("--cron", "cron", required=True, metavar="EXPR",
              help='Cron expression (5 fields or @daily/@hourly...), e.g. "0 3 * * *".')
@click.option("--tz", "tz", default="UTC", show_default=True, metavar="ZONE",
              help="IANA time zone the expression is read in, e.g. Europe/Berlin.")
@params_option
@click.option("--name", help="Schedule name (default: the pipeline's or notebook's name).")
@click.option("--overlap", type=click.Choice(["skip", "queue", "allow"]), default="skip",
              show_default=True, help="When the previous run still runs at the next due time.")
@click.option("--catchup", type=click.Choice(["none", "last", "all"]), default="last",
              show_default=True,
              help="Due times missed while no scheduler ran: fire none, the newest, or all.")
@click.option("--paused", is_flag=True, help="Add it paused (`schedule resume` starts it).")
@json_option
@click.pass_context
def schedule_add(
    ctx: click.Context, target: Path, cron: str, tz: str, param_pairs: Sequence[tuple[str, str]],
    name: str | None, overlap: str, catchup: str, paused: bool, as_json: bool,
) -> None:
    """Run PIPELINE_OR_NOTEBOOK on a cron schedule.

    The target is checked now: the pipeline must load and every -p must be a declared
    parameter. Daylight-saving changes: a time skipped by spring-forward fires at the first
    valid instant; a fixed-hour time repeated by fall-back fires once.
    """
    from ..schedule.service import add_schedule

    store = writable_store(ctx)
    sched = add_schedule(store, target, cron=cron, tz=tz, params=dict(param_pairs), name=name,
                         overlap=overlap, catchup=catchup, paused=paused)
    _print_schedule(sched, as_json, "added")


def _ls(ctx: click.Context, kinds: Sequence[str], as_json: bool, triggers: bool) -> None:
    from ..schedule.service import list_schedules, schedule_dict

    items = list_schedules(_store(ctx), kinds)
    if as_json:
        echo_json({"schedules": [schedule_dict(s) for s in items]})
    elif not items:
        click.echo("no triggers" if triggers else "no schedules")
    else:
        click.echo(_table(items, triggers))


@schedule_group.command("ls")
@json_option
@click.pass_context
def schedule_ls(ctx: click.Context, as_json: bool) -> None:
    """List schedules with their next fire time (in their zone) and last fire."""
    _ls(ctx, ["cron"], as_json, triggers=False)


def _simple(verb: str, doc: str, group: click.Group) -> None:
    @group.command(verb, help=doc)
    @click.argument("name")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        from ..schedule import service

        store = _store(ctx)
        fn = {"pause": service.pause, "resume": service.resume, "rm": service.remove}[verb]
        done = {"pause": "paused", "resume": "resumed", "rm": "removed"}[verb]
        _print_schedule(fn(store, name), as_json, done)


_simple("pause", "Stop firing NAME until `resume` (a running run is not stopped).", schedule_group)
_simple("resume", "Fire NAME again; what was due while paused does not fire.", schedule_group)
_simple("rm", "Remove NAME and its fire history (the runs stay in the store).", schedule_group)


def _history(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    from .. import _format
    from ..schedule.service import fire_dict, history

    fires = history(_store(ctx), name, limit)
    if as_json:
        echo_json({"schedule": name, "fires": [fire_dict(f) for f in fires]})
        return
    if not fires:
        click.echo(f"{name} has not fired yet")
        return
    rows = []
    for f in fires:
        why = f.reason.get("kind", "")
        if why == "change":
            why = "change " + ", ".join(Path(p).name for p in (f.reason.get("files") or {}))
        elif why == "after":
            why = f"after run {str(f.reason.get('upstream_run', ''))[:8]}"
        elif why == "manual":
            why = f"manual ({f.reason.get('by', '?')})"
        elif why == "drift":
            why = _drift_cause(f.reason)
        duration = (f.ended_at - f.started_at) if f.ended_at and f.started_at else None
        rows.append([f.id, f.reason.get("due_local") or f.reason.get("due") or "-", why, f.status,
                     f.run_id[:8] if f.run_id else "-", _when(f.started_at),
                     _format.format_duration(duration) if duration is not None else "-",
                     f.message or ""])
    click.echo(_format.render_table(
        ["FIRE", "DUE", "TRIGGER", "STATUS", "RUN", "STARTED", "TOOK", "NOTE"], rows,
        max_width=60, right_align=[True] + [False] * 7))


def _drift_cause(reason: dict[str, Any]) -> str:
    """``drift wine@champion v3 0.41 > 0.2, 3 features``: what a drift fire answered (the
    features and their PSI: ``--json``)."""
    def num(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, (int, float)) else "?"

    count = len(reason.get("features") or {})
    return (f"drift {reason.get('model', '?')}@{reason.get('alias', '?')} "
            f"v{reason.get('version', '?')} {num(reason.get('score'))} > "
            f"{num(reason.get('threshold'))}"
            + (f", {count} feature{'s' if count != 1 else ''}" if count else ""))


def _history_command(group: click.Group, doc: str) -> None:
    @group.command("history", help=doc)
    @click.argument("name")
    @click.option("--limit", default=50, show_default=True, metavar="N", help="Newest N fires.")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
        _history(ctx, name, limit, as_json)


_history_command(schedule_group,
                 "Fires of schedule (or trigger) NAME, newest first: due time, status, run.")


# -- trigger ------------------------------------------------------------------------------------


@click.group("trigger")
def trigger_group() -> None:
    """Run pipelines when files change, another pipeline succeeds or a served model's traffic
    drifts (fired by `nbmlops scheduler`), or now by hand."""


@trigger_group.command("add")
@target_arg
@click.option("--on-change", metavar="PATH_OR_GLOB",
              help="Fire when the content of a matching file changes or a new file matches "
              "(** matches directories). Touching a file without changing it does not fire.")
@click.option("--after", metavar="PIPELINE", type=click.Path(path_type=Path),
              help="Fire when a run of PIPELINE finishes successfully.")
@click.option("--on-drift", metavar="NAME@ALIAS",
              help="Fire when the logged traffic of served model NAME@ALIAS drifts from its "
              "training data (see --threshold), once per drift episode.")
@click.option("--threshold", type=str, metavar="PSI",
              help="--on-drift: fire when the drift score (max feature PSI beyond noise) is "
              "above this, e.g. 0.2.")
@click.option("--window", metavar="1h|N",
              help="--on-drift: judge the last 30m/1h/2d of traffic or the last N logged rows "
              "[default: 1h].")
@click.option("--min-rows", type=int, default=100, show_default=True, metavar="N",
              help="--on-drift: judge nothing before the window holds N logged rows.")
@params_option
@click.option("--name", help="Trigger name (default: TARGET-on-change / TARGET-after-PIPELINE "
              "/ TARGET-on-drift-MODEL).")
@click.option("--overlap", type=click.Choice(["skip", "queue", "allow"]), default="queue",
              show_default=True, help="When it fires while its previous run still runs.")
@json_option
@click.pass_context
def trigger_add(
    ctx: click.Context, target: Path, on_change: str | None, after: Path | None,
    on_drift: str | None, threshold: str | None, window: str | None, min_rows: int,
    param_pairs: Sequence[tuple[str, str]], name: str | None, overlap: str, as_json: bool,
) -> None:
    """Run PIPELINE_OR_NOTEBOOK when files change (--on-change), after a pipeline (--after) or
    when a served model's traffic drifts (--on-drift NAME@ALIAS --threshold PSI).

    A change trigger remembers the fingerprints the files have now: only later changes fire.
    A drift trigger fires once per episode: again only after a check found no drift, or after
    the alias moved to another version.
    """
    from ..schedule.service import add_trigger

    if on_drift is not None and threshold is None:
        from ..errors import ScheduleError

        raise ScheduleError("--on-drift needs --threshold PSI (the drift score above which it "
                            "fires, e.g. 0.2)")
    store = writable_store(ctx)
    trig = add_trigger(store, target, on_change=on_change, after=after, on_drift=on_drift,
                       threshold=threshold, window=window,
                       min_rows=min_rows, params=dict(param_pairs), name=name, overlap=overlap)
    _print_schedule(trig, as_json, "added")


@trigger_group.command("ls")
@json_option
@click.pass_context
def trigger_ls(ctx: click.Context, as_json: bool) -> None:
    """List triggers and their last fire."""
    _ls(ctx, ["change", "after", "drift"], as_json, triggers=True)


_simple("pause", "Stop NAME firing until `resume`.", trigger_group)
_simple("resume", "Fire NAME again; changes made while paused do not fire.", trigger_group)
_simple("rm", "Remove NAME and its fire history (the runs stay in the store).", trigger_group)


_history_command(trigger_group, "Fires of trigger (or schedule) NAME, newest first.")


@trigger_group.command("fire")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Start the run and return at once.")
@json_option
@click.pass_context
def trigger_fire(ctx: click.Context, name: str, no_wait: bool, as_json: bool) -> None:
    """Fire schedule or trigger NAME now, with its parameters, recorded as a manual fire.

    Runs even when NAME is paused or its previous run still runs (you asked for it). Waits
    for the run and exits 1 when it fails (--no-wait: returns at once).
    """
    import getpass

    from ..errors import ExecutionFailedError
    from ..schedule.scheduler import fire_now, start_fire

    store = _store(ctx)
    try:
        by = getpass.getuser()
    except (KeyError, OSError):
        by = "cli"
    if no_wait:
        fire_id, run_id, proc = start_fire(store, name, by=by, die_with_parent=False)
        status = "started"
    else:
        fire_id, run_id, status = fire_now(store, name, by=by)
    if as_json:
        echo_json({"fire": fire_id, "run_id": run_id, "status": status})
    else:
        click.echo(f"fired {name}: run {run_id[:8]} {status}")
    if status not in ("started", "finished"):
        raise ExecutionFailedError(f"{name}: run {run_id[:8]} {status} (see `nbmlops runs show "
                                   f"{run_id[:8]}` and .nbmlops/runs/{run_id}/scheduler.log)")


# -- scheduler ----------------------------------------------------------------------------------


@click.command("scheduler")
@click.option("--once", is_flag=True,
              help="Fire what is due now, wait for those runs, exit (for cron/systemd timers). "
              "Exits 1 when one of them failed.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              metavar="SECONDS", help="How often to look for new schedules and changed files.")
@click.option("--on-stop", type=click.Choice(["cancel", "wait"]), default="cancel",
              show_default=True,
              help="On SIGTERM/Ctrl-C: cancel running runs (recorded cancelled) or wait for "
              "them (a second signal cancels).")
@click.option("--wait", "wait_for_lease", is_flag=True,
              help="When another scheduler runs on this store, wait and take over when it "
              "stops (default: exit with a message).")
@click.option("--lease-ttl", type=click.FloatRange(min=1.0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="How long the lease outlives a scheduler that stops renewing it (a standby "
              "on another host takes over after at most this long).")
@click.option("--host", "host", metavar="NAME", default=None,
              help="The name this scheduler goes by in the lease (default: the host name); "
              "give each machine sharing a store its own.")
@click.option("--misfire-grace", type=click.FloatRange(min=0.0), default=60.0,
              show_default=True, metavar="SECONDS",
              help="How late a fire may be and still count as on time (catch-up none).")
@click.pass_context
def scheduler_command(
    ctx: click.Context, once: bool, poll: float, on_stop: str, wait_for_lease: bool,
    lease_ttl: float, misfire_grace: float, host: str | None,
) -> None:
    """Fire schedules and triggers: a foreground daemon, one per store.

    Logs one line per event (fired, skipped, queued, ended, next...) to stderr. Every run it
    starts is a normal run in the store, tagged with what triggered it. A second scheduler on the
    same store exits with a message (or waits, with --wait). After a crash, runs the previous
    scheduler left running are marked failed (their fire: abandoned) and due times are not
    fired twice.
    """
    from ..schedule.scheduler import Scheduler

    store = _store(ctx)  # never a new, empty store: a scheduler there would fire nothing
    sched = Scheduler(store, poll=poll, lease_ttl=lease_ttl, on_stop=on_stop,
                      misfire_grace=misfire_grace, wait_for_lease=wait_for_lease, out=sys.stderr,
                      host=host)
    code = sched.run(once=once)
    if code:
        ctx.exit(code)
