"""Schedules and triggers: create, list, pause, resume, remove, history. Every face (CLI, REST)
calls these; the scheduler daemon (:mod:`nbmlops.schedule.scheduler`) fires what they define.

Drift triggers (``--on-drift NAME@ALIAS``) watch a served model's prediction log: the scheduler
runs :func:`nbmlops.monitoring.monitor` on it each poll that new log files appeared, and fires
when the logged inputs drift past the trigger's threshold (once per drift episode).

A schedule or trigger names a *target*: a pipeline (``pipeline.yaml``, a directory holding one,
or a notebook tagged ``step:NAME``) or a single notebook. The target is checked when the
schedule is added (the pipeline loads, every ``-p`` is a declared parameter), so a typo fails at
``add`` and not at 3 a.m.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NbmlopsError, ScheduleError
from .cron import parse_cron

if TYPE_CHECKING:
    from ..pipeline.spec import Pipeline
    from ..store import Store
    from ..store.entities import Schedule, ScheduleFire

__all__ = [
    "OVERLAP_POLICIES", "CATCHUP_POLICIES", "Target", "resolve_target", "add_schedule",
    "add_trigger", "pause", "resume", "remove", "history", "list_schedules", "schedule_dict",
    "fire_dict", "scan_files", "watched_paths", "file_entry", "parse_drift_watch", "check_window",
    "describe_trigger", "DEFAULT_DRIFT_WINDOW", "DEFAULT_MIN_ROWS",
]

OVERLAP_POLICIES = ("skip", "queue", "allow")
CATCHUP_POLICIES = ("none", "last", "all")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: a change trigger watches at most this many files (a glob matching a whole disk is a mistake)
MAX_WATCHED_FILES = 10_000
#: what a drift trigger judges when no --window is given: the last hour of logged traffic (all
#: traffic ever would keep an episode open for good once shifted rows were logged)
DEFAULT_DRIFT_WINDOW = "1h"
#: fewer logged rows than this in the window: nothing to judge yet
DEFAULT_MIN_ROWS = 100
_WINDOW_RE = re.compile(r"(?:(\d+)|(\d+(?:\.\d+)?)\s*([smhdw]))")
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Target:
    """What a schedule runs: ``kind`` is "pipeline" (``pipeline`` is the loaded definition) or
    "notebook"; ``path`` is absolute."""

    def __init__(self, path: Path, kind: str, name: str, pipeline: Pipeline | None = None) -> None:
        self.path, self.kind, self.name, self.pipeline = path, kind, name, pipeline


def _is_tagged_pipeline(path: Path) -> bool:
    from ..params import read_notebook_light

    try:
        nb = read_notebook_light(path)
    except Exception:
        return False
    for cell in getattr(nb, "cells", []):
        tags = (cell.get("metadata") or {}).get("tags") or []
        if any(str(t).startswith("step:") for t in tags):
            return True
    return False


def resolve_target(path: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> Target:
    """Check that ``path`` is a pipeline or notebook nbmlops can run with ``params``.

    Raises :class:`ScheduleError` for a missing path, and the pipeline loader's / parameter
    checker's own errors (with ``FILE:LINE:COL``) for a broken definition or an undeclared
    parameter."""
    given = Path(path).expanduser()
    if not given.exists():
        raise ScheduleError(f"{path}: no such pipeline or notebook")
    p = Path(os.path.normpath(given.absolute()))  # the form pipeline runs record
    params = dict(params or {})
    if p.is_dir() or p.suffix.lower() in (".yaml", ".yml") or (
        p.suffix.lower() == ".ipynb" and _is_tagged_pipeline(p)
    ):
        from ..pipeline.load import load_pipeline
        from ..pipeline.runner import resolve_step_params

        pipe = load_pipeline(given)  # errors name the file as the user wrote it
        resolve_step_params(pipe, params)  # unknown or mistyped parameters fail now
        return Target(Path(os.path.normpath(pipe.path.absolute())), "pipeline", pipe.name, pipe)
    if p.suffix.lower() == ".ipynb":
        from ..params import check_parameters

        check_parameters(p, params)
        return Target(p, "notebook", p.stem)
    raise ScheduleError(f"{path}: not a pipeline (pipeline.yaml, or a notebook tagged step:NAME) "
                        "or a notebook (.ipynb)")


def _check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ScheduleError(f"invalid name {name!r}: use letters, digits, '.', '_' and '-' "
                            "(at most 128, starting with a letter or digit)")
    return name


def _default_name(store: Store, base: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).lstrip("-._").rstrip("-.")[:120] or "schedule"
    taken = {s.name for s in store.schedules.schedules()}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _check_policy(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ScheduleError(f"invalid {what} {value!r}: choose {', '.join(allowed)}")
    return value


def add_schedule(
    store: Store,
    target: str | os.PathLike[str],
    *,
    cron: str,
    tz: str | None = None,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    overlap: str = "skip",
    catchup: str = "last",
    paused: bool = False,
    now: float | None = None,
) -> Schedule:
    """Add a cron schedule; it first fires at the next due time after ``now``."""
    spec = parse_cron(cron, tz)  # bad expression or zone: ScheduleError before anything else
    _check_policy(overlap, OVERLAP_POLICIES, "--overlap")
    _check_policy(catchup, CATCHUP_POLICIES, "--catchup")
    tgt = resolve_target(target, params)
    name = _check_name(name) if name else _default_name(store, tgt.name)
    now = time.time() if now is None else now
    return store.schedules.add(
        name, kind="cron", target=str(tgt.path), target_kind=tgt.kind, cron=spec.expr,
        timezone=spec.tz_name, params={k: _text(v) for k, v in (params or {}).items()},
        overlap=overlap, catchup=catchup, paused=paused, next_fire_at=spec.next_after(now),
    )


def add_trigger(
    store: Store,
    target: str | os.PathLike[str],
    *,
    on_change: str | None = None,
    after: str | os.PathLike[str] | None = None,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    overlap: str = "queue",
    on_drift: str | None = None,
    threshold: float | str | None = None,
    window: str | int | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> Schedule:
    """Add a trigger: ``on_change`` (a path or glob; fires when a matching file's content
    fingerprint changes or a new file matches), ``after`` (a pipeline; fires when one of its
    runs succeeds) or ``on_drift`` (``NAME@ALIAS`` of a served model; fires when its logged
    traffic drifts: max feature PSI beyond noise above ``threshold``, over the last ``window``
    (``"1h"``, ``"30m"``, ``"2d"`` or a row count), judged only from ``min_rows`` rows).
    Exactly one of the three.

    A drift trigger is checked before anything is written: the threshold and window
    (:class:`ScheduleError`, exit 2), then the model and alias (:class:`NotFoundError`, exit 4)."""
    if sum(x is not None for x in (on_change, after, on_drift)) != 1:
        raise ScheduleError("give exactly one of --on-change PATH_OR_GLOB, --after PIPELINE and "
                            "--on-drift NAME@ALIAS")
    if on_drift is None and (threshold is not None or window is not None):
        raise ScheduleError("--threshold and --window go with --on-drift NAME@ALIAS")
    _check_policy(overlap, OVERLAP_POLICIES, "--overlap")
    drift_config: dict[str, Any] | None = None
    if on_drift is not None:  # cheap checks of the arguments first, then the store
        model, alias = parse_drift_watch(on_drift)
        drift_config = {"threshold": _check_threshold(threshold),
                        "window": check_window(DEFAULT_DRIFT_WINDOW if window is None else window),
                        "min_rows": _check_min_rows(min_rows)}
    tgt = resolve_target(target, params)
    clean = {k: _text(v) for k, v in (params or {}).items()}
    if drift_config is not None:
        model_version = store.registry.version(model, alias=alias)  # NotFoundError, exit 4
        state: dict[str, Any] = {"config": drift_config, "episode": None,
                                 "added_version": model_version.version}
        base = f"{tgt.name}-on-drift-{model}"
        kind, watch = "drift", f"{model}@{alias}"
    elif on_change is not None:
        pattern = os.path.abspath(os.path.expanduser(on_change))
        if glob.has_magic(pattern) and os.path.isfile(pattern):
            pattern = glob.escape(pattern)  # a file whose name holds [ ] * ?: watch that file
        _check_not_own_output(tgt, pattern)
        state = {"files": scan_files(pattern)}
        base = f"{tgt.name}-on-change"
        kind, watch = "change", pattern
    else:
        assert after is not None
        up = resolve_target(after)
        if up.kind != "pipeline":
            raise ScheduleError(f"--after {after}: not a pipeline (a notebook run is not a "
                                "pipeline run; schedule the notebook as a one-step pipeline)")
        _check_no_cycle(store, str(tgt.path), str(up.path))
        latest = store.schedules.finished_runs_since(str(up.path), 0.0, limit=1, newest=True)
        state = {"since": latest[0][1] if latest else time.time(),
                 "seen": [latest[0][0]] if latest else []}
        base = f"{tgt.name}-after-{up.name}"
        kind, watch = "after", str(up.path)
    name = _check_name(name) if name else _default_name(store, base)
    return store.schedules.add(
        name, kind=kind, target=str(tgt.path), target_kind=tgt.kind, watch=watch, params=clean,
        overlap=overlap, catchup="none", state=state,
    )


def parse_drift_watch(text: str) -> tuple[str, str]:
    """``(model, alias)`` of ``--on-drift NAME@ALIAS``; :class:`ScheduleError` for another form
    (a version number is not watched: a drift trigger follows what an alias serves)."""
    from ..errors import InvalidArgumentError
    from ..registry.service import check_alias, check_name

    model, sep, alias = str(text).partition("@")
    if not sep or not model or not alias:
        raise ScheduleError(f"--on-drift {text!r}: give NAME@ALIAS, the alias the model is served "
                            "under, e.g. wine@champion")
    try:
        return check_name(model), check_alias(alias)
    except InvalidArgumentError as exc:
        raise ScheduleError(f"--on-drift {text!r}: {exc}") from exc


def _check_threshold(value: Any) -> float:
    import math

    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if value is None or isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ScheduleError(f"--threshold {value!r}: give the drift score (PSI) above which it "
                            "fires, a number above 0, e.g. 0.2")
    return number


def check_window(value: str | int) -> str:
    """A monitoring window as the monitor reads it: ``"1h"``, ``"30m"``, ``"2d"``, ``"90s"``,
    ``"1w"`` or a number of rows (``"10000"``); :class:`ScheduleError` otherwise."""
    text = str(value).strip().lower()
    match = _WINDOW_RE.fullmatch(text)
    if isinstance(value, bool) or match is None or (
        match.group(1) is not None and int(match.group(1)) < 1
    ) or (match.group(2) is not None and float(match.group(2)) <= 0):
        raise ScheduleError(f"--window {value!r}: give a duration (30m, 1h, 2d) or a number of "
                            "logged rows (10000)")
    return text.replace(" ", "")


def window_seconds(window: str) -> float | None:
    """Seconds of a duration window, None for a row-count window."""
    match = _WINDOW_RE.fullmatch(window)
    if match is None or match.group(1) is not None:
        return None
    return float(match.group(2)) * _WINDOW_UNITS[match.group(3)]


def _check_min_rows(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScheduleError(f"--min-rows {value!r}: give a whole number from 1")
    return value


def describe_trigger(s: Schedule) -> str:
    """What a trigger fires on, in words: ``change data/*.csv``, ``after train/pipeline.yaml``,
    ``drift of wine@champion > 0.2 (last 1h, from 100 rows)``."""
    if s.kind == "change":
        return f"change {s.watch}"
    if s.kind == "after":
        path = Path(s.watch or "")
        return f"after {path.parent.name}/{path.name}"
    if s.kind == "drift":
        cfg = (s.state or {}).get("config") or {}
        window = str(cfg.get("window") or DEFAULT_DRIFT_WINDOW)
        span = f"last {window}" if window_seconds(window) is not None else f"last {window} rows"
        threshold = cfg.get("threshold")
        limit = f"{threshold:g}" if isinstance(threshold, (int, float)) else "?"
        text = (f"drift of {s.watch} > {limit} ({span}, "
                f"from {cfg.get('min_rows', DEFAULT_MIN_ROWS)} rows)")
        episode = (s.state or {}).get("episode")
        if episode:
            text += f"; drifting: v{episode.get('version')} since fire {episode.get('fire_id')}"
        return text
    return s.kind


def _check_not_own_output(tgt: Target, pattern: str) -> None:
    """Refuse a change trigger on files its own target writes: every run would fire it again."""
    pipe = tgt.pipeline
    if pipe is None:
        return
    from pathlib import PurePath

    existing = set(watched_paths(pattern))
    for name, step in pipe.steps.items():
        for out in step.outputs:
            path = os.path.normpath(os.path.join(pipe.root, out))
            if path in existing or path == pattern or PurePath(path).match(pattern):
                raise ScheduleError(
                    f"--on-change {pattern} matches {out}, an output of step {name} of "
                    f"{pipe.name}: each run would trigger the next; watch the inputs instead")


def _check_no_cycle(store: Store, target: str, upstream: str) -> None:
    """Refuse an after-trigger that would make pipelines trigger each other forever."""
    edges: dict[str, set[str]] = {}
    for s in store.schedules.schedules(kinds=["after"]):
        if s.watch:
            edges.setdefault(s.watch, set()).add(s.target)
    edges.setdefault(upstream, set()).add(target)
    seen, todo = set(), [target]
    while todo:
        node = todo.pop()
        if node == upstream:
            raise ScheduleError(
                f"--after would make a loop: {Path(upstream).name} triggers "
                f"{Path(target).name}, which (through after-triggers) triggers "
                f"{Path(upstream).name} again")
        if node in seen:
            continue
        seen.add(node)
        todo.extend(edges.get(node, ()))


def watched_paths(pattern: str) -> list[str]:
    """The regular files ``pattern`` matches (``**`` spans directories), never nbmlops' own
    ``.nbmlops/`` files: the store changes with every run."""
    paths = [pattern] if not glob.has_magic(pattern) else sorted(glob.glob(pattern, recursive=True))
    return [p for p in paths
            if f"{os.sep}.nbmlops{os.sep}" not in p and os.path.isfile(p)]


def file_entry(path: str) -> dict[str, Any] | None:
    """``{"fp", "size", "mtime_ns"}`` of one file (a real path, never read as a pattern)."""
    from ..fingerprint import fingerprint_file

    try:
        st = os.stat(path)
    except OSError:
        return None
    fp = fingerprint_file(path)
    if fp is None:
        return None
    return {"fp": fp[0], "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def scan_files(pattern: str) -> dict[str, dict[str, Any]]:
    """``{path: {"fp", "size", "mtime_ns"}}`` of the regular files matching ``pattern``."""
    paths = watched_paths(pattern)
    if len(paths) > MAX_WATCHED_FILES:
        raise ScheduleError(f"{pattern} matches more than {MAX_WATCHED_FILES} files; "
                            "watch a narrower path")
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        entry = file_entry(path)
        if entry is not None:
            out[path] = entry
    return out


def _text(value: Any) -> str:
    """Parameters are kept as the text the user gave; the run coerces them to the declared type
    (exactly like ``nbmlops pipeline run -p``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def pause(store: Store, name: str) -> Schedule:
    return store.schedules.update(name, paused=True)


def resume(store: Store, name: str, *, now: float | None = None) -> Schedule:
    """Un-pause. A cron schedule's next due time is recomputed from now: what was due while it
    was paused does not fire."""
    sched = store.schedules.get(name)
    fields: dict[str, Any] = {"paused": False}
    if sched.kind == "cron" and sched.cron:
        fields["next_fire_at"] = parse_cron(sched.cron, sched.timezone).next_after(
            time.time() if now is None else now)
    if sched.kind == "change" and sched.watch:
        fields["state"] = {"files": scan_files(sched.watch)}  # changes while paused don't count
    if sched.kind == "after" and sched.watch:  # nor upstream runs that ended while paused
        latest = store.schedules.finished_runs_since(sched.watch, 0.0, limit=1, newest=True)
        fields["state"] = {"since": latest[0][1] if latest else time.time(),
                           "seen": [latest[0][0]] if latest else []}
    return store.schedules.update(name, **fields)


def remove(store: Store, name: str) -> Schedule:
    return store.schedules.remove(name)


def history(store: Store, name: str, limit: int = 50) -> list[ScheduleFire]:
    return store.schedules.history(name, limit=limit)


def list_schedules(store: Store, kinds: Sequence[str] | None = None) -> list[Schedule]:
    return store.schedules.schedules(kinds)


def schedule_dict(s: Schedule) -> dict[str, Any]:
    """The JSON form of a schedule (what ``--json`` and the REST API print)."""
    from .cron import utc_iso

    d = s.to_dict()
    d.pop("state", None)
    d["next_fire"] = utc_iso(s.next_fire_at) if not s.paused else None
    if s.kind == "cron" and s.next_fire_at is not None and s.cron:
        from .cron import local_iso

        try:
            d["next_fire_local"] = local_iso(s.next_fire_at, s.timezone)
        except NbmlopsError:
            d["next_fire_local"] = None
    if s.kind == "change":
        d["watched_files"] = len((s.state or {}).get("files") or {})
    if s.kind == "drift":
        state = s.state or {}
        d["drift"] = {**dict(state.get("config") or {}), "episode": state.get("episode"),
                      "last_check": state.get("last_check")}
    d["last_fire"] = fire_dict(s.last_fire) if s.last_fire else None
    return d


def fire_dict(f: ScheduleFire) -> dict[str, Any]:
    from .cron import utc_iso

    d = f.to_dict()
    d["due"] = utc_iso(f.due_at)
    return d
