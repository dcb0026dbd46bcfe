"""A store written by the previous release opens with this one: migrated, every record kept.

tests/fixtures/prev_release/store.db was written by release d2a2cec (schema 0004) through its
own CLI and kernels (see the README there): captured notebook runs with cells, params, metrics,
an artifact, a validation and a registered model; alias moves and a rollback; a pipeline run;
a schedule with two fires. The test opens a copy with the current code (which migrates it) and
checks counts per table, specific values, and that `runs ls`, `models ls` and lineage work.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbmlops.cli import cli as cli_main
from nbmlops.config import resolve_location
from nbmlops.store import Store
from nbmlops.store.engine import SCHEMA_HEAD

FIXTURE = Path(__file__).parent / "fixtures" / "prev_release" / "store.db"
NB_RUN_1 = "3efe9bf1ab7b45208a628ba84a6acf75"  # train.ipynb -p C 0.5 (model iris v1)
NB_RUN_2 = "07356cc03a7d4241aa7f4ef59134d5d3"  # train.ipynb -p C 2.0 (model iris v2)
PIPE_RUN = "43997a0cda4c421f90e01304681a2e0b"  # pipeline run -p rows 7
FIRE_RUNS = ["7dfd5a61e6454520b382c310e129b9e9", "f9b917a9dd0c46b0aceecfe2c6545df3"]


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        return list(con.execute(sql).fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("prev")
    db = work / ".nbmlops" / "nbmlops.db"
    db.parent.mkdir()
    shutil.copyfile(FIXTURE, db)
    before = _counts(db)
    raw_before = {
        "params": sorted(_rows(db, "SELECT run_id, key, value FROM params")),
        "metrics": sorted(_rows(db, "SELECT run_id, key, value, step FROM metrics")),
        "cells": sorted(_rows(db, "SELECT id, run_id, seq, status FROM cell_executions")),
        "events": _rows(db, "SELECT id, kind, alias, from_version, to_version, reason "
                            "FROM model_events ORDER BY id"),
    }
    url = f"sqlite:///{db}"
    store = Store(resolve_location(url, None, work))
    yield {"db": db, "url": url, "store": store, "before": before, "raw_before": raw_before,
           "work": work}
    store.close()


def test_the_fixture_is_the_previous_schema() -> None:
    assert _rows(FIXTURE, "SELECT version_num FROM alembic_version") == [("0004",)]
    assert FIXTURE.stat().st_size < 1_000_000


def test_opening_migrates_to_head_and_keeps_every_record(migrated: dict) -> None:
    db: Path = migrated["db"]
    assert migrated["store"].schema_revision == SCHEMA_HEAD
    assert _rows(db, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    after = _counts(db)
    before = migrated["before"]
    kept = {t: after[t] for t in before}
    assert kept == before  # every table of the old schema, same row count
    assert before["runs"] == 11 and before["cell_executions"] == 26
    assert after.get("monitor_results") == 0  # the new table exists, empty
    raw = migrated["raw_before"]
    assert sorted(_rows(db, "SELECT run_id, key, value FROM params")) == raw["params"]
    assert sorted(_rows(db, "SELECT run_id, key, value, step FROM metrics")) == raw["metrics"]
    assert sorted(_rows(db, "SELECT id, run_id, seq, status FROM cell_executions")) == raw["cells"]
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(db, "PRAGMA foreign_key_check") == []


def test_runs_cells_params_metrics_read_through_the_current_api(migrated: dict) -> None:
    store: Store = migrated["store"]
    run = store.get_run(NB_RUN_1)
    assert (run.name, run.source, run.status) == ("train", "papermill", "finished")
    assert run.params == {"C": "0.5", "max_iter": "200", "solver": "lbfgs"}
    assert run.metrics["accuracy"] == pytest.approx(0.96666, abs=1e-4)
    assert store.get_run(NB_RUN_2).params["C"] == "2.0"
    cells = store.cell_executions(NB_RUN_1)
    assert len(cells) == 7 and all(c.status == "ok" for c in cells)
    assert any("LogisticRegression" in (c.source or "") for c in cells)
    pipe = store.get_run(PIPE_RUN)
    assert pipe.source == "pipeline" and pipe.params == {"rows": "7"}
    children = store.list_runs(parent_run_id=PIPE_RUN, descending=False).runs
    assert sorted(c.name for c in children) == ["prevpipe/fit", "prevpipe/prep"]
    assert all(c.status == "finished" for c in children)
    assert store.list_runs(limit=100).total == 11


def test_schedule_fires_registry_and_validations_kept(migrated: dict) -> None:
    store: Store = migrated["store"]
    sched = store.schedules.get("nightly")
    assert (sched.kind, sched.cron, sched.timezone) == ("cron", "0 3 * * *", "Europe/Berlin")
    fires = store.schedules.history("nightly")
    assert sorted(f.run_id for f in fires) == sorted(FIRE_RUNS)
    assert all(f.status == "finished" for f in fires)
    versions = store.registry.versions("iris")
    assert sorted(v.version for v in versions) == [1, 2]
    assert {v.version: v.run_id for v in versions} == {1: NB_RUN_1, 2: NB_RUN_2}
    model = store.registry.get_model("iris")
    assert model.aliases == {"champion": 1, "challenger": 1}  # after the rollback
    events = store.registry.events("iris")
    got = sorted(((e.kind, e.alias, e.from_version, e.to_version, e.reason) for e in events), key=repr)
    want = sorted((row[1:] for row in migrated["raw_before"]["events"]), key=repr)
    assert got == want and ("rollback", "champion", 2, 1, "v2 looked worse") in got
    validations = store.validations.for_run(NB_RUN_1)
    assert len(validations) == 1 and validations[0].rows == 100


def _cli(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_runs_ls_models_ls_and_lineage_work(migrated: dict) -> None:
    url = migrated["url"]
    listed = json.loads(_cli(url, "runs", "ls", "--json", "--limit", "100"))
    rows = listed["runs"] if isinstance(listed, dict) else listed
    assert {r["id"] for r in rows} >= {NB_RUN_1, NB_RUN_2, PIPE_RUN, *FIRE_RUNS}
    models = json.loads(_cli(url, "models", "ls", "--json"))
    assert [(m["name"], m["version_count"], m["aliases"]) for m in models] == [
        ("iris", 2, {"champion": 1, "challenger": 1})]
    graph = json.loads(_cli(url, "runs", "lineage", "model", "--run", NB_RUN_1, "--json"))
    labels = " ".join(n["label"] for n in graph["nodes"])
    # the model's cell, the injected parameters cell (C = 0.5) and the data cell before it
    assert "LogisticRegression" in labels and "C = 0.5" in labels and "import nbmlops" in labels
    text = _cli(url, "runs", "show", NB_RUN_2[:8])
    assert "accuracy" in text and "2.0" in text
