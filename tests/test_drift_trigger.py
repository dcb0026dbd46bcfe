"""Drift triggers end to end: a real store, real models registered by a captured notebook run
(so the monitor finds their training data), real prediction-log files written with the
serving side's :class:`PredictionLogWriter`, the real :class:`Scheduler` ticking (and `nbmlops
scheduler --once` as cron runs it), and a tiny target notebook whose fired runs are real."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.schedule.scheduler import Scheduler
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error
from .conftest import make_notebook

pytest.importorskip("sklearn")
pytest.importorskip("pyarrow")
pytestmark = pytest.mark.timeout(600)

#: one model name per test, so that each test has its own prediction log
MODELS = ("wa", "wb", "wc", "wd", "we", "wf")
#: a new lab instrument reads these low (the demo's shift)
SHIFT = {"flavanoids": 0.5, "od280/od315_of_diluted_wines": 0.6, "proline": 0.6}
TRAIN = [
    "import pandas as pd\nimport nbmlops\nfrom sklearn.datasets import load_wine\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler",
    "load_wine(as_frame=True).frame.to_csv('train.csv', index=False)",
    "df = pd.read_csv('train.csv')\nX = df.drop(columns=['target'])\ny = df['target']",
    "model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))\nmodel.fit(X, y)",
    f"for name in {list(MODELS)!r}:\n"
    "    nbmlops.register(model, name=name, alias='champion')\n"
    "    nbmlops.register(model, name=name)  # v2: a challenger with no alias yet",
]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift") / "proj"
    root.mkdir()
    assert nbmlops("init", cwd=root).returncode == 0
    make_notebook(root / "train.ipynb", TRAIN)
    trained = nbmlops("run", "train.ipynb", cwd=root, timeout=300)
    assert trained.returncode == 0, trained.stderr
    make_notebook(root / "retrain.ipynb", [("label = 'x'", ["parameters"]), "print(label * 2)"])
    return root


@pytest.fixture
def store(project: Path) -> Iterator[Store]:
    s = Store.open(start=project)
    yield s
    for sched in s.schedules.schedules():  # each test starts with no triggers
        s.schedules.remove(sched.name)
    s.close()


@pytest.fixture
def scheduler(store: Store) -> Iterator[Scheduler]:
    sched = Scheduler(store, poll=0.1, out=io.StringIO(), lead=0)
    sched.acquire_lease()
    yield sched
    sched.stop()
    sched._stop_drift_worker()
    for child in sched.children.values():
        child.proc.kill()
        child.proc.wait(10)
    sched.release_lease()


def log_traffic(store: Store, model: str, n: int = 300, *, shift: bool, seed: int,
                version: int = 1, alias: str = "champion", per_request: int = 20) -> None:
    """``n`` wines scored by the real model and logged as a served model logs them (requests
    of ``per_request`` rows; one part file)."""
    import numpy as np
    from sklearn.datasets import load_wine

    from nbmlops import load_model
    from nbmlops.monitoring.predlog import PredictionLogWriter

    wine = load_wine(as_frame=True).frame.drop(columns=["target"])
    rows = wine.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    rows = rows * np.random.default_rng(seed).normal(1.0, 0.03, rows.shape)
    if shift:
        for column, factor in SHIFT.items():
            rows[column] = rows[column] * factor
    predicted = load_model(f"models:/{model}/{version}", store=store).predict(rows)
    writer = PredictionLogWriter(store.location.predictions_dir / model, flush_rows=10**6,
                                 flush_seconds=600)
    writer.start()
    for start in range(0, n, per_request):
        part = rows.iloc[start:start + per_request]
        assert writer.append(
            request_id=f"{seed}-{start}", ts=time.time(), model=model, version=version,
            alias=alias, role="primary", latency_ms=1.0,
            inputs={c: part[c].tolist() for c in part.columns},
            predictions=[str(p) for p in predicted[start:start + per_request]], proba=None)
    writer.close()
    assert writer.written == n and writer.errors == 0, writer.last_error


def poll(sched: Scheduler, times: int = 3) -> int:
    """``times`` scheduler polls, each waiting for the drift checks it started; the fires."""
    fired = 0
    for _ in range(times):
        fired += sched.tick().fired
        assert sched.wait_drift_checks(120)
        fired += sched.tick().fired
    return fired


def drain(sched: Scheduler, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while sched.children and time.monotonic() < deadline:
        sched.tick()
        time.sleep(0.1)
    assert not sched.children, "runs did not end"


def add(project: Path, model: str, *args: str) -> dict[str, Any]:
    proc = nbmlops("trigger", "add", "retrain.ipynb", "--on-drift", f"{model}@champion",
                   "--threshold", "0.2", "--window", "300", "--min-rows", "100", *args,
                   "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def fires(store: Store, name: str) -> list[Any]:
    return list(reversed(store.schedules.history(name)))  # oldest first


def events(sched: Scheduler, kind: str) -> list[str]:
    assert isinstance(sched.out, io.StringIO)
    return [ln for ln in sched.out.getvalue().splitlines() if ln.split(" ")[1:2] == [kind]]


# -- tests --------------------------------------------------------------------------------------


def test_fires_once_per_episode_and_again_after_the_drift_ended(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    added = add(project, "wa", "--name", "retrain-wa", "-p", "label", "drift")
    assert added["kind"] == "drift" and added["watch"] == "wa@champion"
    assert added["drift"]["threshold"] == 0.2 and added["drift"]["window"] == "300"
    assert poll(scheduler) == 0  # no traffic logged yet: nothing to judge, no error
    assert not events(scheduler, "error")
    log_traffic(store, "wa", shift=False, seed=1)
    assert poll(scheduler) == 0  # normal traffic does not drift
    last = store.schedules.get("retrain-wa").state["last_check"]
    assert last["judged"] and not last["drifted"] and last["rows"] == 300

    log_traffic(store, "wa", shift=True, seed=2)
    assert poll(scheduler) == 1
    drain(scheduler)
    [fire] = fires(store, "retrain-wa")
    assert fire.status == "finished"
    reason = fire.reason
    assert reason["kind"] == "drift" and (reason["model"], reason["alias"]) == ("wa", "champion")
    assert reason["version"] == 1 and reason["threshold"] == 0.2 and reason["score"] > 0.2
    assert set(reason["features"]) >= {"flavanoids", "proline"}
    assert all(psi > 0 for psi in reason["features"].values())
    recorded = store.monitoring.get(reason["monitor_id"])  # the check is in the store
    assert recorded.drifted and recorded.source == "trigger:retrain-wa"
    run = store.get_run(fire.run_id)
    assert run.status == "finished" and run.params["label"] == "drift"
    assert run.tags["nbmlops.trigger"] == "drift"
    tag = json.loads(run.tags["nbmlops.trigger.drift"])
    assert {k: tag[k] for k in ("model", "version", "score", "monitor_id")} == {
        k: reason[k] for k in ("model", "version", "score", "monitor_id")}
    assert tag["features"] == reason["features"]
    episode = store.schedules.get("retrain-wa").state["episode"]
    assert episode["version"] == 1 and episode["fire_id"] == fire.id

    for seed in (3, 4):  # the episode lasts: more shifted traffic, several polls, no new fire
        log_traffic(store, "wa", shift=True, seed=seed)
        assert poll(scheduler) == 0
    assert len(fires(store, "retrain-wa")) == 1
    assert len(events(scheduler, "drift")) == 1

    log_traffic(store, "wa", shift=False, seed=5)  # back to normal: the episode ends
    assert poll(scheduler) == 0
    assert store.schedules.get("retrain-wa").state["episode"] is None
    [over] = events(scheduler, "drift-over")
    assert "why=\"no drift\"" in over

    log_traffic(store, "wa", shift=True, seed=6)  # a new shift is a new episode
    assert poll(scheduler) == 1
    drain(scheduler)
    assert [f.reason["kind"] for f in fires(store, "retrain-wa")] == ["drift", "drift"]
    assert not events(scheduler, "error")

    # the faces say what it watches and why it fired
    ls = nbmlops("trigger", "ls", cwd=project)
    assert "drift of wa@champion > 0.2 (last 300 rows, from 100 rows)" in ls.stdout
    history = nbmlops("trigger", "history", "retrain-wa", cwd=project)
    n = len(fires(store, "retrain-wa")[0].reason["features"])
    assert f" > 0.2, {n} features " in history.stdout and "drift wa@champion v1 " in history.stdout


def test_a_moved_alias_closes_the_episode_and_the_new_version_is_judged_afresh(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    add(project, "wb", "--name", "retrain-wb")
    log_traffic(store, "wb", shift=True, seed=7)
    assert poll(scheduler) == 1
    drain(scheduler)
    assert store.schedules.get("retrain-wb").state["episode"]["version"] == 1
    promoted = nbmlops("models", "promote", "wb", "2", cwd=project)
    assert promoted.returncode == 0, promoted.stderr
    assert poll(scheduler, 1) == 0
    assert store.schedules.get("retrain-wb").state["episode"] is None
    [over] = events(scheduler, "drift-over")
    assert "champion now points at version 2" in over
    log_traffic(store, "wb", shift=True, seed=8, version=2)  # v2 serves the same shift
    assert poll(scheduler) == 1
    drain(scheduler)
    assert [f.reason["version"] for f in fires(store, "retrain-wb")] == [1, 2]


def test_min_rows_no_judgement_before_the_window_holds_enough(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    proc = nbmlops("trigger", "add", "retrain.ipynb", "--on-drift", "wc@champion", "--threshold",
                   "0.2", "--window", "2000", "--min-rows", "450", "--name", "retrain-wc",
                   cwd=project)
    assert proc.returncode == 0, proc.stderr
    log_traffic(store, "wc", shift=True, seed=9)
    assert poll(scheduler) == 0  # 300 shifted rows, but fewer than 450
    last = store.schedules.get("retrain-wc").state["last_check"]
    assert last["rows"] == 300 and not last["judged"] and not last["drifted"]
    log_traffic(store, "wc", 200, shift=True, seed=10)
    assert poll(scheduler) == 1
    drain(scheduler)
    assert fires(store, "retrain-wc")[0].reason["rows"] == 500


def test_no_traffic_logged_fires_nothing_and_reports_no_error(project: Path, store: Store) -> None:
    add(project, "wd", "--name", "retrain-wd")
    once = nbmlops("scheduler", "--once", "--poll", "0.2", cwd=project)
    assert once.returncode == 0, once.stderr
    assert " error " not in once.stderr and " fired " not in once.stderr
    assert fires(store, "retrain-wd") == []
    # an empty log directory (a service that logged nothing yet) is no traffic either
    (store.location.predictions_dir / "wd").mkdir(parents=True)
    once = nbmlops("scheduler", "--once", "--poll", "0.2", cwd=project)
    assert once.returncode == 0 and " error " not in once.stderr, once.stderr


def test_scheduler_once_judges_new_traffic_and_fires_as_cron_runs_it(
    project: Path, store: Store
) -> None:
    add(project, "we", "--name", "retrain-we")
    log_traffic(store, "we", shift=True, seed=11)
    once = nbmlops("scheduler", "--once", "--poll", "0.2", cwd=project, timeout=300)
    assert once.returncode == 0, once.stderr
    assert " drift " in once.stderr and " fired " in once.stderr
    [fire] = fires(store, "retrain-we")
    assert fire.status == "finished" and fire.reason["kind"] == "drift"
    # the next --once: nothing new logged, so the monitor is not even run
    before = len(store.monitoring.list(model="we"))
    again = nbmlops("scheduler", "--once", "--poll", "0.2", cwd=project)
    assert again.returncode == 0 and " fired " not in again.stderr
    assert len(store.monitoring.list(model="we")) == before
    # a manual fire of a drift trigger runs its target now
    manual = nbmlops("trigger", "fire", "retrain-we", "--json", cwd=project)
    assert manual.returncode == 0, manual.stderr
    assert json.loads(manual.stdout)["status"] == "finished"
    assert fires(store, "retrain-we")[-1].reason["kind"] == "manual"


@pytest.mark.parametrize(("args", "code", "text"), [
    (["--on-drift", "nosuch@champion", "--threshold", "0.2"], 4, "no registered model"),
    (["--on-drift", "wf@nosuch", "--threshold", "0.2"], 4, "has no alias 'nosuch'"),
    (["--on-drift", "wf", "--threshold", "0.2"], 2, "give NAME@ALIAS"),
    (["--on-drift", "wf@champion", "--threshold", "0"], 2, "--threshold '0'"),
    (["--on-drift", "wf@champion", "--threshold", "-1"], 2, "a number above 0"),
    (["--on-drift", "wf@champion", "--threshold", "abc"], 2, "a number above 0"),
    (["--on-drift", "wf@champion"], 2, "--on-drift needs --threshold"),
    (["--on-drift", "wf@champion", "--threshold", "0.2", "--window", "1x"], 2, "--window '1x'"),
    (["--on-drift", "wf@champion", "--threshold", "0.2", "--window", "0"], 2, "--window '0'"),
    (["--on-drift", "wf@champion", "--threshold", "0.2", "--min-rows", "0"], 2, "--min-rows"),
    (["--on-drift", "wf@champion", "--threshold", "0.2", "--on-change", "x"], 2, "exactly one"),
    (["--on-change", "x", "--threshold", "0.2"], 2, "go with --on-drift"),
])
def test_bad_drift_triggers_are_refused_with_one_line_and_nothing_stored(
    project: Path, store: Store, args: list[str], code: int, text: str
) -> None:
    proc = nbmlops("trigger", "add", "retrain.ipynb", *args, cwd=project)
    assert proc.returncode == code, proc.stderr
    assert text in one_line_error(proc)
    assert proc.stdout == ""
    assert store.schedules.schedules() == []


def test_a_cron_schedule_stays_on_time_while_a_drift_check_runs(
    project: Path, store: Store
) -> None:
    """The monitor runs on the drift worker thread: a cron schedule due while it reads a big
    log still starts within its usual lead."""
    add(project, "wf", "--name", "retrain-wf", "--window", "1d")
    for seed in (12, 13):  # a bigger log: the check takes a while
        log_traffic(store, "wf", 100_000, shift=False, seed=seed, per_request=2000)
    nbmlops("schedule", "add", "retrain.ipynb", "--cron", "@yearly", "--name", "yearly",
            cwd=project)
    sched = Scheduler(store, poll=0.2, out=io.StringIO(), lead=0.5)
    loop = threading.Thread(target=sched.run, kwargs={"install_signals": False}, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while "retrain-wf" not in sched._drift_checks and time.monotonic() < deadline:
            time.sleep(0.01)
        due = time.time() + 0.6
        store.schedules.update("yearly", next_fire_at=due)
        sched._wake.set()
        deadline = time.monotonic() + 30
        while not fires(store, "yearly") and time.monotonic() < deadline:
            time.sleep(0.01)
        check_running = not sched._drift_checks["retrain-wf"].done.is_set() if (
            "retrain-wf" in sched._drift_checks) else False
        [fire] = fires(store, "yearly")
        late = fire.started_at - due
        assert -0.6 <= late <= 0.3, late  # started within the lead, the run waits for `due`
        assert check_running  # the check did overlap the due time
        assert sched.wait_drift_checks(120)
        time.sleep(0.5)
        seconds = store.schedules.get("retrain-wf").state["last_check"]["seconds"]
        print(f"cron fire started {late:+.3f} s from its due time; the drift check over "
              f"200,000 rows took {seconds:.2f} s (still running at the fire: {check_running})")
    finally:
        sched.stop()
        loop.join(60)
