"""`nbmlops runs ls` without SQLAlchemy (nbmlops/store/fastread.py): the fast path answers
exactly what ``Store.list_runs`` answers, on a real SQLite store and on the session's throwaway
PostgreSQL; the CLI prints the same with it on and off (``NBMLOPS_NO_FASTREAD=1``); every case
it does not handle (old schema, a crash journal to replay, a URL it does not know, a missing or
unreachable store, bad arguments) falls back to the full store with the full store's output;
and a `runs ls` process never imports SQLAlchemy."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbmlops.cli import cli
from nbmlops.config import resolve_location
from nbmlops.store import Store, fastread
from nbmlops.store.entities import CellRecord, MetricValue

from ._postgres import _free_port, fresh_database

pytestmark = pytest.mark.timeout(300)

# names and paths with LIKE wildcards, a backslash, unicode and mixed case
NAMES = ["train", "Train-2", "50%_done", "a_b", "a\\b", "é-t", "日本", "plain", "100%", "x_y%z"]
NOTEBOOKS = [None, "/w/train.ipynb", "/w/sub/train.ipynb", "/w/50%.ipynb", "/w/a_b.ipynb",
             "train.ipynb", "/w/日本.ipynb", "/w/a\\b.ipynb"]
EXPERIMENTS = ["Default", "exp", "ëxp_%"]
SEARCH_ALPHABET = ["%", "_", "\\", "a", "b", "t", "T", "r", "é", "日", "/", "0", "-", ".", "ipynb"]


def _fill(store: Store) -> None:
    """~60 runs with params, tags, metrics over steps, cells, every status and source."""
    statuses = ["finished", "failed", "cancelled", "abandoned", None]
    sources = ["interactive", "papermill", "pipeline", "schedule"]
    parent: str | None = None
    for i in range(60):
        rid = store.create_run(
            name=f"{NAMES[i % len(NAMES)]}{i // len(NAMES) or ''}",
            experiment=EXPERIMENTS[i % 3],
            source=sources[i % 4],
            notebook_path=NOTEBOOKS[i % len(NOTEBOOKS)],
            notebook_hash=f"{i:064x}" if i % 2 else None,
            parent_run_id=parent if i % 5 == 1 else None,
            git_commit="abc123" if i % 3 else None,
            git_dirty=[None, True, False][i % 3],
            environment=None if i % 4 == 0 else {"python": "3.11", "packages": {"x": str(i)}},
            params={"lr": i / 7, "naïve": "ü" * (i % 3), "opt": ["sgd", "adam"][i % 2]}
            if i % 6 else None,
            # secret-looking values: if the store ever redacted on read, both paths must
            tags={"team": "a_b" if i % 2 else "%", "k": str(i),
                  "token": "ghp_" + "A1b2C3d4" * 4 + "e5F6"} if i % 4 else None,
            start_time=1_700_000_000.0 + (i * 37) % 23,  # ties: the id breaks them
        )
        parent = parent or rid
        if i % 3:
            store.log_batch(rid, metrics=[
                MetricValue("acc", i / 100, 0, 1.0), MetricValue("acc", i / 50, 2, 2.0),
                MetricValue("acc", -1.0, 1, 3.0), MetricValue("loss", 1 / (i + 1), 0, 1.0),
                *([MetricValue(f"m{i % 4}", 0.5, 0, 1.0)] if i % 2 else []),
            ])
        if i % 7 == 2:  # same step twice: the later id wins
            store.log_batch(rid, metrics=[MetricValue("f1", 0.1, 3, 5.0),
                                          MetricValue("f1", 0.2, 3, 4.0)])
        if i % 5 == 0:
            store.record_cells(rid, [
                CellRecord(seq=s, source=f"x = {s}", start_time=1.0, duration=0.1, status="ok")
                for s in range(i % 4 + 1)])
        st_ = statuses[i % 5]
        if st_ is not None:
            store.end_run(rid, st_, end_time=1_700_000_100.0 + i % 9)


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    d = tmp_path_factory.mktemp("fastread")
    s = Store.open(f"sqlite:///{d / 'store' / 'nbmlops.db'}", d / "art")
    _fill(s)
    yield s
    s.close()


def _pg_url(prefix: str) -> str:
    base = os.environ.get("NBMLOPS_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("no PostgreSQL server (install postgresql, or set NBMLOPS_TEST_POSTGRES_URL)")
    return fresh_database(base, f"{prefix}_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store.open(_pg_url("fr"), tmp_path_factory.mktemp("fastread-pg"))
    _fill(s)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "pg"])
def filled(request: pytest.FixtureRequest) -> Store:
    store: Store = request.getfixturevalue(f"{request.param}_store")
    return store


queries = st.fixed_dictionaries({}, optional={
    "experiment": st.sampled_from([*EXPERIMENTS, "nope"]),
    "notebook": st.sampled_from(["train.ipynb", "/w/train.ipynb", "50%.ipynb", "a_b.ipynb",
                                 "a\\b.ipynb", "日本.ipynb", "%.ipynb", "_.ipynb", "b.ipynb"]),
    "status": st.sampled_from(["running", "finished", "failed", "cancelled", "abandoned"]),
    "source": st.sampled_from(["interactive", "papermill", "pipeline", "schedule", "other"]),
    "search": st.lists(st.sampled_from(SEARCH_ALPHABET), max_size=4).map("".join),
    "order_by": st.sampled_from(["start_time", "end_time", "name", "status", "notebook"]),
    "descending": st.booleans(),
    "limit": st.sampled_from([1, 3, 7, 50, 10_000]),
    "offset": st.sampled_from([0, 1, 5, 20, 59, 100]),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=queries)
def test_fast_path_answers_what_list_runs_answers(filled: Store, q: dict[str, Any]) -> None:
    fast = fastread.list_runs_fast(filled.location, **q)
    full = filled.list_runs(**q)
    assert fast is not None
    assert fast == full
    assert json.dumps(fast.to_dict(), sort_keys=True) == json.dumps(full.to_dict(), sort_keys=True)


def test_the_filled_store_has_what_the_listing_must_carry(filled: Store) -> None:
    """The equivalence above is not vacuous: the pages hold params, tags, metrics, cells,
    environments, booleans, unicode and wildcard names, and a search for `%` finds only `%`."""
    page = fastread.list_runs_fast(filled.location, limit=10_000)
    assert page is not None and page.total == len(page.runs) == 60
    runs = page.runs
    assert any(r.params.get("naïve") == "üü" for r in runs)
    assert any(r.tags.get("team") == "%" for r in runs)
    assert any(r.cell_count == 4 for r in runs)
    assert {r.git_dirty for r in runs} == {None, True, False}
    assert any(r.environment == {"python": "3.11", "packages": {"x": "5"}} for r in runs)
    acc = [r.metrics["acc"] for r in runs if "acc" in r.metrics]
    assert acc and all(v >= 0 for v in acc)  # the highest step, not the latest written
    assert {r.metrics["f1"] for r in runs if "f1" in r.metrics} == {0.2}
    found = fastread.list_runs_fast(filled.location, search="%", limit=10_000)
    assert found is not None and found.total > 0
    assert all("%" in r.name or "%" in (r.notebook_path or "") for r in found.runs)
    under = fastread.list_runs_fast(filled.location, search="a_b", limit=10_000)
    assert under is not None and under.total > 0
    assert all("a_b" in f"{r.name} {r.notebook_path}".lower() for r in under.runs)


def test_constants_kept_in_step_with_the_store() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from nbmlops.store import engine, store

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(engine.__file__).with_name("migrations")))
    assert fastread.SCHEMA_HEAD == engine.SCHEMA_HEAD == ScriptDirectory.from_config(
        cfg).get_current_head()
    assert {k: c.key for k, c in store.RUN_SORT_KEYS.items()} == fastread.SORT_COLUMNS


def test_postgres_url_becomes_the_same_connection_arguments() -> None:
    from sqlalchemy.engine import make_url

    for url in ["postgresql+psycopg://u:p%40ss%3Aw@db.example.org:5433/nb%20db?sslmode=require",
                "postgresql+psycopg://u@[::1]/nb", "postgresql+psycopg:///nb?host=/tmp/sock",
                "postgresql+psycopg://db/nb?application_name=mine"]:
        kwargs = fastread._postgres_kwargs(url)
        assert kwargs is not None
        u = make_url(url)
        want = {"application_name": "nbmlops",
                **u.translate_connect_args(username="user", database="dbname"), **u.query,
                "connect_timeout": fastread.FAST_CONNECT_TIMEOUT}
        assert kwargs == want
    assert fastread._postgres_kwargs("postgresql+psycopg://a,b/nb") is None


# -- the CLI ------------------------------------------------------------------------------------


def _ls(url: str, args: list[str], *, fast: bool, env: dict[str, str] | None = None
        ) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--store", url, "runs", "ls", *args],
        env={"NBMLOPS_NO_FASTREAD": "" if fast else "1", **(env or {})})
    return result.exit_code, result.output


CLI_CASES = [
    [], ["--json"], ["-e", "exp", "--sort", "name", "--asc"], ["--search", "%", "--json"],
    ["--search", "a_b", "--limit", "3", "--offset", "2"], ["-n", "train.ipynb", "-s", "finished"],
    ["--source", "papermill", "--sort", "notebook", "--json", "--limit", "5"],
    ["--search", "日本"], ["-e", "nope"], ["--offset", "1000"],
    # refused arguments: the full store's error, the same way
    ["--sort", "bogus"], ["--limit", "0"], ["--offset", "-1"], ["-s", "weird"],
]


@pytest.mark.parametrize("args", CLI_CASES, ids=lambda a: " ".join(a) or "plain")
def test_cli_prints_the_same_with_the_fast_path_on_and_off(filled: Store, args: list[str]) -> None:
    on = _ls(filled.url, args, fast=True)
    off = _ls(filled.url, args, fast=False)
    assert on == off
    refused = args and args[-1] in ("bogus", "0", "-1", "weird")
    assert on[0] == (2 if refused else 0), on[1]


def test_fast_path_is_taken_for_the_simple_case(filled: Store) -> None:
    assert fastread.list_runs_fast(filled.location) is not None
    assert fastread.list_runs_fast(filled.location, order_by="bogus") is None
    assert fastread.list_runs_fast(filled.location, limit=0) is None


def _run_sql(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(sql)
    finally:
        conn.close()


def test_old_schema_falls_back_and_the_full_store_migrates(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from nbmlops.store import engine as store_engine

    db = tmp_path / "old" / "nbmlops.db"
    db.parent.mkdir()
    eng = create_engine(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location",
                        str(Path(store_engine.__file__).with_name("migrations")))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    eng.dispose()
    _run_sql(db, "PRAGMA journal_mode=WAL; INSERT INTO experiments (id, name, created_at) "
                 "VALUES (1, 'Default', 1.0); INSERT INTO runs (id, experiment_id, name, source, "
                 "status, start_time) VALUES ('" + "a" * 32 + "', 1, 'old-run', 'interactive', "
                 "'finished', 1700000000.0);")
    url = f"sqlite:///{db}"
    loc = resolve_location(url)
    assert fastread.list_runs_fast(loc) is None  # 0004: not the simple case
    code, out = _ls(url, [], fast=True)
    assert code == 0 and "old-run" in out and "showing 1 of 1 run" in out
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0005"
    raw.close()
    assert fastread.list_runs_fast(loc) is not None  # migrated: fast from now on
    assert _ls(url, ["--json"], fast=True) == _ls(url, ["--json"], fast=False)


def test_a_store_not_in_wal_mode_falls_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w' / 'nbmlops.db'}"
    with Store.open(url, tmp_path / "art") as s:
        s.create_run(name="r")
    _run_sql(tmp_path / "w" / "nbmlops.db", "PRAGMA journal_mode=DELETE;")
    assert fastread.list_runs_fast(resolve_location(url)) is None
    code, out = _ls(url, [], fast=True)
    assert code == 0 and "showing 1 of 1 run" in out
    assert fastread.list_runs_fast(resolve_location(url)) is not None  # the store set WAL again


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_crash_journal_to_replay_falls_back_and_is_replayed(tmp_path: Path) -> None:
    from nbmlops.capture.journal import Journal, journal_name
    from nbmlops.capture.writer import StartRun

    url = f"sqlite:///{tmp_path / 'j' / 'nbmlops.db'}"
    with Store.open(url, tmp_path / "art") as s:
        s.create_run(name="before")
    loc = resolve_location(url)
    # a journal of this (live) process: nothing to replay, the fast path answers
    live = Journal(loc.journal_dir, "live")
    live.append(StartRun("b" * 32, {"name": "still-running"}))
    live.close(delete=False)
    assert fastread.list_runs_fast(loc) is not None
    live.path.unlink()
    # a journal left by a process that died: opening the store replays it
    rid = "c" * 32
    dead = Journal(loc.journal_dir, "k", path=loc.journal_dir / journal_name("k", _dead_pid()))
    dead.append(StartRun(rid, {"name": "crashed", "source": "interactive"}))
    dead.close(delete=False)
    assert fastread.list_runs_fast(loc) is None
    code, out = _ls(url, ["--json"], fast=True)
    assert code == 0
    listed = {r["name"]: r["status"] for r in json.loads(out)["runs"]}
    assert listed == {"before": "running", "crashed": "failed"}
    assert not dead.path.exists()
    assert fastread.list_runs_fast(loc) is not None
    assert _ls(url, [], fast=True) == _ls(url, [], fast=False)


@pytest.mark.parametrize("url", [
    "sqlite:///:memory:",
    "mysql+pymysql://u:secret@127.0.0.1:1/nb",
    "postgresql+psycopg://u:secret@127.0.0.1:{port}/nb",  # nobody listens there
    "sqlite:///{tmp}/missing/nbmlops.db",
    "sqlite:///{tmp}/notsqlite.db",
])
def test_stores_it_does_not_handle_give_the_full_stores_answer(tmp_path: Path, url: str) -> None:
    (tmp_path / "notsqlite.db").write_text("hello, I am not a database\n" * 10)
    url = url.format(port=_free_port(), tmp=tmp_path)
    assert fastread.list_runs_fast(resolve_location(url)) is None
    on = _ls(url, [], fast=True, env={"NBMLOPS_PG_CONNECT_TIMEOUT": "2"})
    off = _ls(url, [], fast=False, env={"NBMLOPS_PG_CONNECT_TIMEOUT": "2"})
    assert on == off
    assert "secret" not in on[1]
    if ":memory:" not in url:
        assert on[0] == 3 and on[1].startswith("Error: ") and on[1].count("\n") == 1, on


def test_no_fastread_variable() -> None:
    for value, on in [("", True), ("0", True), ("1", False), ("yes", False)]:
        os.environ["NBMLOPS_NO_FASTREAD"] = value
        try:
            assert fastread.enabled() is on
        finally:
            del os.environ["NBMLOPS_NO_FASTREAD"]


# -- the process --------------------------------------------------------------------------------

_WRAPPER = """
import sys
from nbmlops.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("sqlalchemy", "alembic", "pandas") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + " CODE=" + str(code) + "\\n")
"""


def test_runs_ls_process_does_not_import_sqlalchemy(filled: Store, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBMLOPS_NO_FASTREAD"}
    for fast in (True, False):
        if not fast:
            env["NBMLOPS_NO_FASTREAD"] = "1"
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, "--store", filled.url, "runs", "ls", "--json"],
            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        m = re.search(r"HEAVY=(\S*) CODE=(\S+)", proc.stderr)
        assert m is not None, proc.stderr
        assert m.group(2) == "0"
        assert json.loads(proc.stdout)["total"] == 60
        if fast:
            assert m.group(1) == "", proc.stderr  # neither SQLAlchemy nor Alembic nor pandas
        else:
            assert "sqlalchemy" in m.group(1)  # the check can fail: the full path imports it
