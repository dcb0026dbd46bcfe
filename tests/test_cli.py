"""The ``nbmlops`` CLI: click's CliRunner for breadth, the installed console script for truth."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nbmlops import _format
from nbmlops.cli import cli, main
from nbmlops.config import StoreLocation
from nbmlops.store import ArtifactIO, CellRecord, Estimator, MetricValue, Store

T0 = 1_700_000_000.0


def nbmlops_script() -> str:
    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent))
    assert found, "the nbmlops console script is not installed next to the test interpreter"
    return found


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    return subprocess.run(
        [nbmlops_script(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def location_in(root: Path) -> StoreLocation:
    store_dir = root / ".nbmlops"
    return StoreLocation(
        url=f"sqlite:///{store_dir / 'nbmlops.db'}",
        artifact_root=store_dir / "artifacts",
        store_dir=store_dir,
    )


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBMLOPS_STORE_URL", raising=False)
    monkeypatch.delenv("NBMLOPS_ARTIFACT_URL", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli, list(args), catch_exceptions=False)


class Project:
    """A project directory with a populated store: two runs linked by a file, one running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = location_in(root)
        self.raw = str(root / "raw.csv")
        self.feats = str(root / "features.csv")
        self.model = str(root / "model.pkl")
        with Store(self.location) as s:
            self.prep = s.create_run(
                name="prep", experiment="churn", notebook_path=str(root / "prep.ipynb"),
                start_time=T0, params={"lr": 0.1, "depth": 3}, tags={"team": "risk"},
            )
            s.record_cells(self.prep, [
                CellRecord(seq=1, source="raw = pd.read_csv('raw.csv')", start_time=T0,
                           duration=0.2, status="ok", vars_defined=["raw"],
                           io=[ArtifactIO(self.raw, "read", "pandas.read_csv", "dataset",
                                          "sha256:r1", 2048)]),
                CellRecord(seq=2, source="raw.to_csv('features.csv')", start_time=T0 + 1,
                           duration=0.3, status="ok", vars_used=["raw"], var_sources={"raw": 1},
                           io=[ArtifactIO(self.feats, "wrote", "to_csv", "dataset", "sha256:f1",
                                          1024)]),
            ])
            s.log_batch(self.prep, metrics=[MetricValue("accuracy", 0.8)])
            s.end_run(self.prep, end_time=T0 + 90)

            self.train = s.create_run(
                name="train", experiment="churn", source="papermill",
                notebook_path=str(root / "train.ipynb"), start_time=T0 + 100,
                params={"lr": 0.2, "depth": 3, "api_token": "do-not-store"},
                git_commit="abcdef1234567890", git_dirty=True,
                environment={"python": "3.11.7", "implementation": "CPython",
                             "packages": {"pandas": "3.1.1", "scikit-learn": "1.7"}},
            )
            self.train_cells = s.record_cells(self.train, [
                CellRecord(seq=1, source="X = pd.read_csv('features.csv')", start_time=T0 + 100,
                           duration=0.1, status="ok", vars_defined=["X"],
                           io=[ArtifactIO(self.feats, "read", "pandas.read_csv", "dataset",
                                          "sha256:f1", 1024)]),
                CellRecord(seq=2, source="model = LogisticRegression().fit(X)", start_time=T0 + 101,
                           duration=2.0, status="ok", vars_defined=["model"], vars_used=["X"],
                           var_sources={"X": 1},
                           estimators=[Estimator("model", "LogisticRegression", {"C": 1.0}, ["X"])]),
                CellRecord(seq=3, source="joblib.dump(model, 'model.pkl')", start_time=T0 + 104,
                           duration=0.1, status="ok", vars_used=["model"], var_sources={"model": 2},
                           io=[ArtifactIO(self.model, "wrote", "joblib.dump", "model", "sha256:m1",
                                          4096)]),
            ])
            s.log_batch(self.train, metrics=[MetricValue("accuracy", 0.9), MetricValue("f1", 0.85)])
            s.end_run(self.train, end_time=T0 + 100 + 3700)

            self.explore = s.create_run(name="explore", experiment="fraud", start_time=T0 + 5000)

    @property
    def db(self) -> Path:
        assert self.location.sqlite_path is not None
        return self.location.sqlite_path

    def store(self) -> Store:
        return Store(self.location)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


def stderr_line(result: Result | subprocess.CompletedProcess[str]) -> str:
    """The error output, which must be exactly one line and no traceback."""
    err = result.stderr
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- init ---------------------------------------------------------------------------------------


def test_init_creates_the_store_and_is_idempotent(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "init")
    assert result.exit_code == 0
    store_dir = tmp_path / ".nbmlops"
    assert result.stdout.strip() == f"Initialized nbmlops store in {store_dir}"
    assert (store_dir / "nbmlops.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert (store_dir / "artifacts").is_dir()
    with sqlite3.connect(store_dir / "nbmlops.db") as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    conn.close()

    again = invoke(runner, "init")
    assert again.exit_code == 0
    assert again.stdout.startswith(f"nbmlops store already exists at {store_dir}")

    nested = invoke(runner, "init", "sub/project")
    assert nested.exit_code == 0
    assert (tmp_path / "sub" / "project" / ".nbmlops" / "nbmlops.db").is_file()
    assert str(tmp_path / "sub" / "project" / ".nbmlops") in nested.stdout


def test_init_with_store_url_initialises_that_database(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "my.db"
    result = invoke(runner, "--store", f"sqlite:///{db}", "init")
    assert result.exit_code == 0, result.output
    assert str(db) in result.stdout
    assert db.is_file() and (db.parent / "artifacts").is_dir()
    assert not (tmp_path / ".nbmlops").exists()


# -- runs ls ------------------------------------------------------------------------------------


def test_runs_ls_on_an_empty_store(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "init").exit_code == 0
    text = invoke(runner, "runs", "ls")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == ["no runs found", "showing 0 of 0 runs"]
    as_json = invoke(runner, "runs", "ls", "--json")
    assert json.loads(as_json.stdout) == {"runs": [], "total": 0, "limit": 50, "offset": 0}


def test_read_commands_never_create_a_store(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "runs", "ls")
    assert result.exit_code == 3
    line = stderr_line(result)
    assert line.startswith("Error: no nbmlops store at ")
    assert "nbmlops init" in line and str(tmp_path) in line
    assert not (tmp_path / ".nbmlops").exists()


def test_runs_ls_table(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "ls")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "SOURCE", "START", "DURATION", "CELLS",
                                "accuracy", "f1"]
    assert lines[-1] == "showing 3 of 3 runs"
    rows = lines[1:-1]
    assert [r.split()[1] for r in rows] == ["explore", "train", "prep"]  # newest first
    train = rows[1]
    start = datetime.fromtimestamp(T0 + 100).strftime("%Y-%m-%d %H:%M:%S")
    assert train.startswith(project.train[:8] + "  train")
    assert start in train
    assert train.split()[2:4] == ["finished", "papermill"]
    assert "1h 01m" in train
    assert train.split()[-3:] == ["3", "0.9", "0.85"]
    assert rows[2].split()[-5:] == ["1m", "30s", "2", "0.8", "-"]
    explore = rows[0]
    assert explore.split()[2] == "running" and explore.split()[6:] == ["-", "0", "-", "-"]
    # all columns line up: every START value begins at the same offset as its header
    col = lines[0].index("START")
    assert {r[col : col + 19] for r in rows} == {
        datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") for t in (T0, T0 + 100, T0 + 5000)
    }


def test_runs_ls_filters_sort_and_paging(runner: CliRunner, project: Project) -> None:
    def names(*args: str) -> list[str]:
        result = invoke(runner, "runs", "ls", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["name"] for r in json.loads(result.stdout)["runs"]]

    assert names("--experiment", "churn") == ["train", "prep"]
    assert names("--status", "running") == ["explore"]
    assert names("--source", "papermill") == ["train"]
    assert names("--notebook", "prep.ipynb") == ["prep"]
    assert names("--search", "rai") == ["train"]
    assert names("--sort", "name", "--asc") == ["explore", "prep", "train"]
    assert names("--asc") == ["prep", "train", "explore"]
    assert names("--limit", "1", "--offset", "1") == ["train"]
    paged = invoke(runner, "runs", "ls", "--limit", "1", "--offset", "1")
    assert paged.stdout.splitlines()[-1] == "showing 2-2 of 3 runs"
    one = invoke(runner, "runs", "ls", "--experiment", "fraud")
    assert one.stdout.splitlines()[-1] == "showing 1 of 1 run"


def test_runs_ls_json_is_the_store_page(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "ls", "--json")
    assert result.exit_code == 0

    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(result.stdout, parse_constant=no_constants)  # strict JSON only
    assert (data["total"], data["limit"], data["offset"]) == (3, 50, 0)
    with project.store() as s:
        expected = _format.json_safe(s.list_runs().to_dict())
    assert data == expected
    train = data["runs"][1]
    assert train["id"] == project.train and train["cell_count"] == 3
    assert train["metrics"] == {"accuracy": 0.9, "f1": 0.85}
    assert train["params"]["api_token"] == "***redacted***"
    assert list(train) == sorted(train)  # stable key order
    assert set(train) == {
        "id", "name", "experiment", "source", "status", "start_time", "end_time", "notebook_path",
        "notebook_hash", "parent_run_id", "git_commit", "git_dirty", "environment", "params",
        "metrics", "tags", "cell_count",
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sort", "accuracy"], "Error: cannot sort runs by 'accuracy'"),
        (["--limit", "0"], "Error: limit must be"),
        (["--status", "done"], "Error: status must be one of"),
    ],
)
def test_runs_ls_bad_arguments_exit_2(
    runner: CliRunner, project: Project, args: list[str], message: str
) -> None:
    result = invoke(runner, "runs", "ls", *args)
    assert result.exit_code == 2
    assert stderr_line(result).startswith(message)
    assert result.stdout == ""


# -- runs show ----------------------------------------------------------------------------------


def test_runs_show_text(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "show", project.train[:6])
    assert result.exit_code == 0, result.output
    fields = {}
    for line in result.stdout.split("\n\n")[0].splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    assert fields["id"] == project.train
    assert fields["name"] == "train"
    assert fields["experiment"] == "churn"
    assert fields["status"] == "finished"
    assert fields["source"] == "papermill"
    assert fields["start"] == datetime.fromtimestamp(T0 + 100).strftime("%Y-%m-%d %H:%M:%S")
    assert fields["duration"] == "1h 01m"
    assert fields["git"] == "abcdef123456 (dirty)"
    assert fields["python"] == "3.11.7"
    assert fields["packages"] == "2"
    assert fields["cells"] == "3"
    sections = result.stdout.split("\n\n")[1:]
    assert sections[0].splitlines() == [
        "params:", "  api_token  ***redacted***", "  depth      3", "  lr         0.2"]
    assert sections[1].splitlines() == [
        "metrics:", "  accuracy  0.9", "  f1        0.85"]
    assert sections[2].splitlines() == ["tags:", "  (none)"]


def test_runs_show_json(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "show", project.prep, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    with project.store() as s:
        assert data == _format.json_safe(s.get_run(project.prep).to_dict())
    assert data["params"] == {"lr": "0.1", "depth": "3"}
    assert data["tags"] == {"team": "risk"}
    assert (data["start_time"], data["end_time"]) == (T0, T0 + 90)


def test_unknown_or_ambiguous_run_exits_4(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "show", "deadbeef")
    assert result.exit_code == 4
    assert stderr_line(result) == "Error: no run 'deadbeef'"
    assert result.stdout == ""
    short = invoke(runner, "runs", "show", "ab")
    assert short.exit_code == 4 and "at least 4 characters" in stderr_line(short)
    with project.store() as s:
        s.create_run(name="twin1", run_id="abcd0001" + "0" * 24)
        s.create_run(name="twin2", run_id="abcd0002" + "0" * 24)
    ambiguous = invoke(runner, "runs", "show", "abcd")
    assert ambiguous.exit_code == 4
    assert stderr_line(ambiguous).startswith("Error: run id prefix 'abcd' matches several runs")


# -- runs compare -------------------------------------------------------------------------------


def test_runs_compare_text(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "compare", project.prep[:8], project.train[:8])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [project.prep[:8], project.train[:8]]
    rows = {line[2:].split()[0]: line for line in lines[1:] if line[2:].strip()}
    assert rows["name"].split()[1:] == ["prep", "train"]
    assert rows["lr"].startswith("*") and rows["lr"].split()[2:] == ["0.1", "0.2"]
    assert rows["api_token"].startswith("*")  # only one run has it
    assert rows["api_token"].split()[2:] == ["-", "***redacted***"]
    assert rows["depth"].startswith(" ") and rows["depth"].split()[1:] == ["3", "3"]
    assert rows["accuracy"].split()[1:] == ["0.8", "0.9"]
    assert rows["f1"].split()[1:] == ["-", "0.85"]
    assert lines[-1] == "* 2 param(s) differ"
    # the value columns line up under their run ids
    col = lines[0].index(project.train[:8])
    assert rows["lr"][col : col + 3] == "0.2"


def test_runs_compare_json_and_errors(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "compare", project.prep, project.train, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"runs", "params", "params_differ", "metrics"}
    assert [r["id"] for r in data["runs"]] == [project.prep, project.train]
    assert data["params"]["lr"] == ["0.1", "0.2"]
    assert sorted(data["params_differ"]) == ["api_token", "lr"]
    assert data["metrics"] == {"accuracy": [0.8, 0.9], "f1": [None, 0.85]}
    one = invoke(runner, "runs", "compare", project.prep)
    assert one.exit_code == 2 and "at least two runs" in stderr_line(one)
    missing = invoke(runner, "runs", "compare", project.prep, "feedface")
    assert missing.exit_code == 4 and stderr_line(missing) == "Error: no run 'feedface'"


# -- runs lineage -------------------------------------------------------------------------------


def test_runs_lineage_upstream_tree(runner: CliRunner, project: Project) -> None:
    result = invoke(runner, "runs", "lineage", project.model)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model.pkl (model, 4.0 KB)")
    assert lines[0].endswith("]") and "[artifact:" in lines[0]

    def depth_of(fragment: str) -> int:
        (line,) = [x for x in lines if fragment in x]
        return (len(line) - len(line.lstrip(" │├└─"))) // 3

    assert depth_of("written by: train [3] joblib.dump") == 1
    assert depth_of("uses model from: train [2] model = LogisticRegression") == 2
    assert depth_of("fitted: model LogisticRegression (model)") == 3
    assert depth_of("uses X from: train [1] X = pd.read_csv") == 3
    assert depth_of("reads: features.csv (dataset, 1.0 KB)") == 4
    assert depth_of("written by: prep [2] raw.to_csv") == 5
    assert depth_of("uses raw from: prep [1]") == 6
    assert depth_of("reads: raw.csv (dataset, 2.0 KB)") == 7
    assert f"run {project.prep[:8]}" in next(x for x in lines if "prep [1]" in x)
    assert len(lines) == 9


def test_runs_lineage_downstream_variable_and_json(runner: CliRunner, project: Project) -> None:
    down = invoke(runner, "runs", "lineage", project.raw, "--downstream")
    assert down.exit_code == 0, down.output
    assert down.stdout.splitlines()[0].startswith("raw.csv (dataset, 2.0 KB)")
    assert "read by: prep [1]" in down.stdout
    assert "writes: model.pkl (model, 4.0 KB)" in down.stdout

    var = invoke(runner, "runs", "lineage", "model", "--run", project.train[:8])
    assert var.exit_code == 0, var.output
    var_lines = var.stdout.splitlines()
    assert var_lines[0] == "variable model"
    assert "defined by: train [2]" in var_lines[1]
    assert any("raw.csv" in x for x in var_lines)

    as_json = invoke(runner, "runs", "lineage", project.model, "--json")
    data = json.loads(as_json.stdout)
    assert set(data) == {"root", "nodes", "edges"}
    assert data["root"].startswith("artifact:")
    assert {n["label"] for n in data["nodes"] if n["type"] == "artifact"} == {
        "model.pkl", "features.csv", "raw.csv"}
    assert all(set(e) == {"source", "target", "label"} for e in data["edges"])
    assert all(set(n) == {"id", "type", "label", "attrs"} for n in data["nodes"])


def test_runs_lineage_errors(runner: CliRunner, project: Project) -> None:
    no_run = invoke(runner, "runs", "lineage", "model")
    assert no_run.exit_code == 2 and "name the run" in stderr_line(no_run)
    unknown = invoke(runner, "runs", "lineage", "/nowhere/x.csv")
    assert unknown.exit_code == 4 and "/nowhere/x.csv" in stderr_line(unknown)


# -- store location and broken stores -----------------------------------------------------------


def test_store_option_overrides_environment(
    runner: CliRunner, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    monkeypatch.setenv("NBMLOPS_STORE_URL", f"sqlite:///{other / 'empty.db'}")
    via_env = invoke(runner, "runs", "ls", "--json")
    assert via_env.exit_code == 3  # the env store does not exist, and is not created
    assert "as given by --store or NBMLOPS_STORE_URL" in stderr_line(via_env)
    assert not (other / "empty.db").exists()
    via_option = invoke(runner, "--store", project.location.url, "runs", "ls", "--json")
    assert via_option.exit_code == 0
    assert json.loads(via_option.stdout)["total"] == 3


def test_discovery_walks_up_from_a_subdirectory(
    runner: CliRunner, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = project.root / "notebooks" / "exploration"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    result = invoke(runner, "runs", "ls", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["total"] == 3
    assert not (deep / ".nbmlops").exists()


def test_corrupt_store_file_exits_3_untouched(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / ".nbmlops" / "nbmlops.db"
    db.parent.mkdir()
    db.write_bytes(b"not a database")
    for args in (["runs", "ls"], ["runs", "show", "abcd"], ["init"]):
        result = invoke(runner, *args)
        assert result.exit_code == 3, args
        line = stderr_line(result)
        assert line.startswith("Error: ") and str(db) in line
        assert "not a SQLite database" in line
    assert db.read_bytes() == b"not a database"
    assert sorted(p.name for p in db.parent.iterdir()) == ["nbmlops.db"]


def test_future_version_store_exits_3_and_says_upgrade(
    runner: CliRunner, project: Project
) -> None:
    with sqlite3.connect(project.db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    conn.close()
    before = project.db.read_bytes()
    result = invoke(runner, "runs", "ls")
    assert result.exit_code == 3
    line = stderr_line(result)
    assert str(project.db) in line and "upgrade nbmlops" in line.lower()
    assert project.db.read_bytes() == before


def test_main_exits_with_the_error_code(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "show", "feedface"])
    assert exit_info.value.code == 4
    assert capsys.readouterr().err == "Error: no run 'feedface'\n"
    with pytest.raises(SystemExit) as ok:
        main(["runs", "ls", "--json", "--limit", "1"])
    assert ok.value.code == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["name"] == "explore"


# -- the installed console script ---------------------------------------------------------------


def test_console_script_init_then_ls(tmp_path: Path) -> None:
    init = run_script("init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert init.stdout.strip() == f"Initialized nbmlops store in {tmp_path / '.nbmlops'}"
    Project(tmp_path)  # add runs to the store the script created
    sub = tmp_path / "notebooks"
    sub.mkdir()
    ls = run_script("runs", "ls", "--json", cwd=sub)
    assert ls.returncode == 0, ls.stderr
    data = json.loads(ls.stdout)
    assert [r["name"] for r in data["runs"]] == ["explore", "train", "prep"]
    text = run_script("runs", "ls", cwd=sub)
    assert text.returncode == 0 and text.stdout.splitlines()[-1] == "showing 3 of 3 runs"


def test_console_script_errors_are_one_line(tmp_path: Path) -> None:
    project = Project(tmp_path)
    missing = run_script("runs", "show", "feedface", cwd=tmp_path)
    assert missing.returncode == 4
    assert stderr_line(missing) == "Error: no run 'feedface'"
    bad_sort = run_script("runs", "ls", "--sort", "nope", cwd=tmp_path)
    assert bad_sort.returncode == 2 and "cannot sort runs by 'nope'" in stderr_line(bad_sort)
    project.db.write_bytes(b"not a database")
    corrupt = run_script("runs", "ls", cwd=tmp_path)
    assert corrupt.returncode == 3
    assert str(project.db) in stderr_line(corrupt)
    assert project.db.read_bytes() == b"not a database"


def test_console_script_help_is_fast_and_lists_commands(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = run_script("--help", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0
    assert "init" in result.stdout and "runs" in result.stdout
    assert elapsed < 2.0  # generous: the CLI must not import the store or pandas for --help
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, nbmlops.cli; print(sorted(m for m in ('sqlalchemy', 'pandas', 'alembic') "
         "if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip() == "[]"


# -- formatting helpers the magics reuse ----------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "-"), (0.42, "0.42s"), (4.25, "4.2s"), (42.4, "42s"), (185, "3m 05s"),
     (7380, "2h 03m"), (93_600, "1d 02h"), (float("nan"), "-")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert _format.format_duration(seconds) == text


def test_render_table_aligns_columns() -> None:
    table = _format.render_table(["NAME", "N"], [["a", 1], ["long name", 1234.5], ["b", None]])
    assert table.splitlines() == [
        "NAME            N",
        "a               1",
        "long name  1234.5",
        "b               -",
    ]



@pytest.mark.parametrize(
    "env, summary",
    [
        (None, {"python": None, "packages": None}),
        ({"python": "3.12.1", "packages": {"a": "1"}}, {"python": "3.12.1", "packages": 1}),
        ({"python_version": "3.10.4 (main, Jan 1)", "packages": ["a==1", "b==2"]},
         {"python": "3.10.4", "packages": 2}),
        ({"python": {"version": "3.11.0"}, "package_count": 140}, {"python": "3.11.0", "packages": 140}),
    ],
)
def test_environment_summary_shapes(env: dict[str, Any] | None, summary: dict[str, Any]) -> None:
    assert _format.environment_summary(env) == summary


def test_lineage_tree_both_directions(project: Project) -> None:
    with project.store() as s:
        graph = s.lineage(project.feats, direction="both")
    text = _format.lineage_tree(graph, direction="both")
    up, down = text.split("\n\ndownstream:\n")
    assert up.startswith("upstream:\nfeatures.csv (dataset, 1.0 KB)")
    assert "reads: raw.csv" in up and "model.pkl" not in up
    assert down.startswith("features.csv (dataset, 1.0 KB)")
    assert "writes: model.pkl" in down and "raw.csv" not in down


def test_json_is_strict_and_stable() -> None:
    text = _format.to_json({"b": float("nan"), "a": [float("inf"), 1.5], "c": {"z": 1, "y": None}})
    assert text == '{\n  "a": [\n    null,\n    1.5\n  ],\n  "b": null,\n  "c": {\n    "y": null,\n    "z": 1\n  }\n}'


# -- nbmlops run (a real kernel) ----------------------------------------------------------------


def _notebook(path: Path, cells: list[str]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.kernel
def test_run_executes_with_capture_and_leaves_the_source_untouched(tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "analysis.ipynb", ["x = 20", "y = x * 2 + 2\nprint(y)"])
    before = nb.read_bytes()
    out = run_script("init", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = run_script("run", "analysis.ipynb", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["status"] == "finished" and info["error"] is None
    assert nb.read_bytes() == before  # the source notebook is never written to
    executed = Path(info["output"])
    assert executed == tmp_path / ".nbmlops" / "runs" / info["run_id"] / "analysis.ipynb"
    import nbformat

    done = nbformat.read(executed, as_version=4)
    assert done.metadata["nbmlops"]["run_id"] == info["run_id"]
    assert "42" in done.cells[1].outputs[0]["text"]
    with Store(location_in(tmp_path)) as store:
        run = store.get_run(info["run_id"])
        assert (run.name, run.status, run.cell_count) == ("analysis", "finished", 2)
        assert store.cell_executions(run.id)[1].vars_used == ["x"]


@pytest.mark.kernel
def test_run_of_a_failing_notebook_exits_1_names_the_cell_and_records_the_run(tmp_path: Path) -> None:
    _notebook(tmp_path / "bad.ipynb", ["a = 1", "raise ValueError('no good')", "b = 2"])
    res = run_script("run", "bad.ipynb", "-o", "out/bad.ipynb", cwd=tmp_path)
    assert res.returncode == 1
    line = stderr_line(res)
    assert "bad.ipynb: cell 1 failed: ValueError: no good" in line and "Traceback" not in res.stderr
    assert (tmp_path / "out" / "bad.ipynb").exists()  # the partial output is kept
    with Store(location_in(tmp_path)) as store:
        [run] = store.list_runs().runs
        assert run.status == "failed" and run.cell_count == 2


def test_run_rejects_a_file_that_is_not_a_notebook(tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_text("{not json")
    res = run_script("run", "broken.ipynb", cwd=tmp_path)
    assert res.returncode == 2
    assert "is not a valid notebook" in stderr_line(res) and "Traceback" not in res.stderr
    assert not (tmp_path / ".nbmlops" / "runs").exists()


def test_run_rejects_an_unknown_kernel(tmp_path: Path) -> None:
    _notebook(tmp_path / "a.ipynb", ["x = 1"])
    res = run_script("run", "a.ipynb", "--kernel", "no-such-kernel", cwd=tmp_path)
    assert res.returncode == 2 and "no Jupyter kernel named 'no-such-kernel'" in stderr_line(res)


def test_runs_ls_replays_the_journal_of_a_dead_kernel(runner: CliRunner, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmlops.capture.journal import Journal, journal_name
    from nbmlops.capture.writer import Cells, StartRun

    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "init").exit_code == 0
    loc = location_in(tmp_path)
    dead = loc.journal_dir / journal_name("e" * 32, pid=999_999_999)
    journal = Journal(loc.journal_dir, "", path=dead)
    journal.append(StartRun("e" * 32, {"name": "crashed-kernel", "source": "interactive"}))
    journal.append(Cells("e" * 32, [CellRecord(seq=0, source="x = 1", start_time=T0,
                                               duration=0.1, status="ok")]))
    journal.close(delete=False)
    result = invoke(runner, "runs", "ls", "--json")
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.output)["runs"]
    assert (run["name"], run["status"], run["cell_count"]) == ("crashed-kernel", "failed", 1)
    assert not dead.exists()


def test_a_deleted_working_directory_is_one_clear_error(tmp_path: Path) -> None:
    """A shell left in a removed directory: one line and exit 2, not a FileNotFoundError
    traceback from os.getcwd(), and nothing created anywhere."""
    gone = tmp_path / "gone"
    gone.mkdir()
    exe = Path(sys.executable).with_name("nbmlops")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    proc = subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "{exe}" runs ls'],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("Error: the working directory no longer exists (deleted?): "
                                   "cd to your project, or set NBMLOPS_STORE_URL or --store")
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []
