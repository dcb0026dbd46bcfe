"""The model registry: store tables, service functions and ``nbmlops models`` subprocesses, on
SQLite and (when NBMLOPS_TEST_POSTGRES_URL is set) PostgreSQL. Real stores, real scikit-learn
models, real ``.venv/bin/nbmlops`` processes; concurrent promotions from threads that each open
their own Store (as separate processes would)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import nbmlops
from nbmlops.config import StoreLocation
from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.registry import (
    ModelFileChangedError,
    get_version,
    list_models,
    list_versions,
    load_model,
    model_history,
    parse_model_uri,
    promote,
    record_event,
    register,
    remove_alias,
    remove_version,
    resolve_model_uri,
    rollback,
    set_alias,
    version_lineage,
)
from nbmlops.registry.loading import class_of_file, detect_format
from nbmlops.registry.service import stored_file
from nbmlops.store import Store
from nbmlops.store.entities import ArtifactIO, Estimator

from .test_store import cell, location, sqlite_location, store  # noqa: F401
from .test_store_schedules import race

NBMLOPS = str(Path(sys.executable).with_name("nbmlops"))


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def tree(iris: tuple[Any, Any]) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0, max_depth=3).fit(*iris)


def ns_for(model: Any, iris: tuple[Any, Any]) -> dict[str, Any]:
    """A namespace like a kernel's: the model, its data and the cell history that fitted it."""
    X, y = iris
    return {"model": model, "X_train": X, "y_train": y,
            "In": ["", "X_train, y_train = load()", "model.fit(X_train, y_train)"]}


def snapshot(store: Store) -> Any:  # noqa: F811
    """Everything the registry holds, to prove a refused change touched nothing."""
    out = []
    for m in list_models(store):
        out.append((m, list_versions(store, m.name), model_history(store, m.name)))
    files = sorted(p.relative_to(store.artifacts.root).as_posix()
                   for p in store.artifacts.root.rglob("*") if p.is_file()) \
        if store.artifacts.root.exists() else []
    return out, files


# -- register, aliases, history ------------------------------------------------------------------


def test_register_promote_rollback_history(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    ns = ns_for(tree, iris)
    v1 = register(store, tree, "iris", namespace=ns, alias="champion", reason="first")
    assert (v1.model, v1.version, v1.format, v1.uri) == ("iris", 1, "skops", "models:/iris/1")
    assert v1.aliases == ["champion"]
    assert v1.model_class == "sklearn.tree._classes.DecisionTreeClassifier"
    assert v1.digest == hashlib.sha256(stored_file(store, v1).read_bytes()).hexdigest()
    assert v1.stored_path == store.artifacts.uri_for(v1.digest)  # a path, or s3://... (team mode)
    # signature: the columns and dtypes of the data it was fitted on, and the output kind
    sig = v1.signature
    assert sig["fitted_on"] == ["X_train", "y_train"] and sig["source"] == "data"
    assert sig["inputs"]["columns"][0] == {"name": "sepal length (cm)", "dtype": "float64"}
    assert sig["output"]["kind"] == "classification" and sig["output"]["classes"] == [0, 1, 2]
    assert v1.info["variable"] == "model" and v1.info["trusted_types"]

    lr = LogisticRegression(max_iter=300).fit(*iris)
    v2 = register(store, lr, "iris", namespace={"lr": lr})
    v3 = register(store, tree, "iris", namespace=ns)
    assert (v2.version, v2.format, v3.version) == (2, "skops", 3)
    assert promote(store, "iris", 2, reason="better f1") is not None
    assert promote(store, "iris", 2) is None  # already there: no change, no event
    assert set_alias(store, "iris", "champion", 3) is not None
    assert set_alias(store, "iris", "challenger", 1) is not None

    [m] = list_models(store)
    assert (m.name, m.version_count, m.latest_version) == ("iris", 3, 3)
    assert m.aliases == {"challenger": 1, "champion": 3}
    assert [v.version for v in list_versions(store, "iris")] == [3, 2, 1]

    back = rollback(store, "iris", reason="v3 misbehaves")
    assert (back.kind, back.from_version, back.to_version) == ("rollback", 3, 2)
    back = rollback(store, "iris")
    assert (back.from_version, back.to_version) == (2, 1)
    with pytest.raises(InvalidArgumentError, match="no earlier version"):
        rollback(store, "iris")
    assert resolve_model_uri(store, "models:/iris@champion").version == 1

    events = model_history(store, "iris")
    assert [(e.kind, e.alias, e.from_version, e.to_version) for e in events] == [
        ("register", None, None, 1), ("alias", "champion", None, 1),
        ("register", None, None, 2), ("register", None, None, 3),
        ("promote", "champion", 1, 2), ("alias", "champion", 2, 3),
        ("alias", "challenger", None, 1),
        ("rollback", "champion", 3, 2), ("rollback", "champion", 2, 1),
    ]
    assert events[0].reason == "first" and events[4].reason == "better f1"
    assert events[-2].reason == "v3 misbehaves"
    assert all(e.user and e.host for e in events)
    assert [e.id for e in model_history(store, "iris", limit=2)] == [e.id for e in events[-2:]]

    # the loaded model predicts like the registered one
    loaded = load_model("models:/iris/1", store=store)
    assert (loaded.predict(iris[0]) == tree.predict(iris[0])).all()
    assert type(load_model("models:/iris/latest", store=store)).__name__ == "DecisionTreeClassifier"


def test_rollback_skips_removed_versions_and_unalias_clears(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    for _ in range(3):
        register(store, tree, "m", namespace=ns_for(tree, iris))
    promote(store, "m", 1)
    promote(store, "m", 2)
    promote(store, "m", 3)
    set_alias(store, "m", "staging", 2)
    remove_alias(store, "m", "staging", reason="done")
    promote(store, "m", 3)  # no change
    # v2 is removable once no alias points at it; rollback then skips it
    remove_version(store, "m", 2, reason="broken")
    assert rollback(store, "m").to_version == 1
    kinds = [e.kind for e in model_history(store, "m")]
    assert kinds.count("unalias") == 1 and kinds.count("rm") == 1
    set_alias(store, "m", "staging", 3)
    with pytest.raises(InvalidArgumentError, match="no earlier version"):
        rollback(store, "m", alias="staging")


def test_uri_forms_and_bad_uris(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    register(store, tree, "fraud.v2-x", namespace=ns_for(tree, iris), alias="champion")
    assert parse_model_uri("models:/fraud.v2-x@champion") == ("fraud.v2-x", None, "champion")
    assert parse_model_uri("models:/a/7") == ("a", 7, None)
    assert parse_model_uri("models:/a") == ("a", None, None)
    assert parse_model_uri("/tmp/model.joblib") is None
    assert resolve_model_uri(store, "models:/fraud.v2-x/1").aliases == ["champion"]
    for bad in ("models:/a/0", "models:/a/x", "models:/a@1bad", "models:/", "models:/a@latest"):
        with pytest.raises(InvalidArgumentError):
            resolve_model_uri(store, bad)
    with pytest.raises(NotFoundError, match="did you mean fraud.v2-x"):
        resolve_model_uri(store, "models:/fraud.v2/1")
    with pytest.raises(NotFoundError, match=r"no alias 'prod' \(aliases: champion\)"):
        resolve_model_uri(store, "models:/fraud.v2-x@prod")
    with pytest.raises(NotFoundError, match=r"no version 4 \(versions: 1\)"):
        resolve_model_uri(store, "models:/fraud.v2-x/4")


def test_record_event_gate(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    register(store, tree, "m", namespace=ns_for(tree, iris), alias="champion")
    register(store, tree, "m", namespace=ns_for(tree, iris))
    details = {"metric": "f1", "decision": "rejected", "candidate": {"version": 2, "score": 0.7}}
    ev = record_event(store, "m", "gate", details=details, reason="f1 too low", alias="champion",
                      to_version=2)
    assert (ev.kind, ev.details, ev.reason, ev.to_version) == ("gate", details, "f1 too low", 2)
    # a gate decision is not an alias move: champion stays, and rollback does not count it
    assert resolve_model_uri(store, "models:/m@champion").version == 1
    with pytest.raises(InvalidArgumentError, match="no earlier version"):
        rollback(store, "m")
    with pytest.raises(NotFoundError):
        record_event(store, "m", "gate", to_version=9)
    with pytest.raises(InvalidArgumentError):
        record_event(store, "m", "Not A Kind")


# -- lineage of a registered file ------------------------------------------------------------------


def test_register_path_takes_lineage_from_capture(store: Store, tmp_path: Path, tree: Any) -> None:  # noqa: F811
    model_file = tmp_path / "model.joblib"
    joblib.dump(tree, model_file)
    fp = "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    schema = {"shape": [150, 5], "columns": [{"name": "a", "dtype": "float64"},
                                             {"name": "target", "dtype": "int64"}]}
    rid = store.create_run(name="train", git_commit="abc123", params={"depth": 3})
    store.record_cells(rid, [
        cell(0, "df = pd.read_csv('iris.csv')", vars_defined=["df"],
             io=[ArtifactIO(uri="/d/iris.csv", direction="read", via="pandas.read_csv",
                            kind="dataset", fingerprint="sha256:" + "1" * 64, size=10,
                            schema=schema)]),
        cell(1, "model.fit(df, y)", vars_used=["df"], var_sources={"df": 0},
             vars_defined=["model"],
             estimators=[Estimator("model", "DecisionTreeClassifier", {"max_depth": 3}, ["df", "y"])]),
        cell(2, "joblib.dump(model, 'model.joblib')", vars_used=["model"], var_sources={"model": 1},
             io=[ArtifactIO(uri=str(model_file), direction="wrote", via="joblib.dump",
                            kind="model", fingerprint=fp, size=model_file.stat().st_size)]),
    ])
    assert detect_format(model_file) == "joblib"
    assert class_of_file(model_file, "joblib") == "DecisionTreeClassifier"
    v = register(store, str(model_file), "iris", reason="from file")
    assert (v.run_id, v.format, v.source_uri) == (rid, "joblib", str(model_file))
    assert v.info["variable"] == "model" and v.signature["fitted_on"] == ["df", "y"]
    assert v.signature["inputs"]["columns"][1] == {"name": "target", "dtype": "int64"}
    v = get_version(store, "iris", 1)
    fit_cell = store.cell_executions(rid)[1]
    assert (v.cell_execution_id, v.cell_seq) == (fit_cell.id, 1)
    lin = version_lineage(store, v)
    assert lin["run"]["id"] == rid and lin["git_commit"] == "abc123"
    assert lin["params"] == {"depth": "3"}
    assert [c["seq"] for c in lin["cells"]] == [0, 1]
    assert lin["cell"]["source"] == "model.fit(df, y)"
    assert [d["uri"] for d in lin["datasets"]] == ["/d/iris.csv"]
    assert lin["datasets"][0]["schema"] == schema
    # --run of another run: the file is linked to that run only
    other = store.create_run(name="other")
    v2 = register(store, str(model_file), "iris", run_id=other[:8])
    assert (v2.run_id, v2.cell_seq) == (other, None)
    loaded = load_model(str(model_file))
    assert type(loaded).__name__ == "DecisionTreeClassifier"


# -- bad input: one clear error, nothing touched ---------------------------------------------------


def test_register_refuses_what_is_not_a_fitted_model(store: Store, iris: Any, tmp_path: Path) -> None:  # noqa: F811
    before = snapshot(store)
    with pytest.raises(InvalidArgumentError, match=r"model \(DecisionTreeClassifier\) is not fitted yet"):
        register(store, DecisionTreeClassifier(), "m", variable="model")
    with pytest.raises(InvalidArgumentError, match="X_train is a DataFrame, not a fitted model"):
        register(store, iris[0], "m", variable="X_train")
    with pytest.raises(InvalidArgumentError, match="is a dict, not a fitted model"):
        register(store, {"a": 1}, "m")
    with pytest.raises(InvalidArgumentError, match="invalid model name"):
        register(store, DecisionTreeClassifier().fit(*iris), "bad/name")
    with pytest.raises(NotFoundError, match="no model file"):
        register(store, str(tmp_path / "missing.joblib"), "m")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgumentError, match="not a model file"):
        register(store, str(tmp_path / "notes.txt"), "m")
    with pytest.raises(NotFoundError, match="no run"):
        register(store, DecisionTreeClassifier().fit(*iris), "m", run_id="feedbeef")
    assert snapshot(store) == before


def test_alias_to_missing_version_changes_nothing(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    register(store, tree, "m", namespace=ns_for(tree, iris), alias="champion")
    before = snapshot(store)
    with pytest.raises(NotFoundError, match=r"no version 5 \(versions: 1\)"):
        promote(store, "m", 5)
    with pytest.raises(NotFoundError, match="no version 2"):
        set_alias(store, "m", "challenger", 2)
    with pytest.raises(InvalidArgumentError, match="invalid alias"):
        set_alias(store, "m", "bad alias", 1)
    with pytest.raises(NotFoundError, match="no registered model named 'n'"):
        promote(store, "n", 1)
    with pytest.raises(InvalidArgumentError, match="m@champion"):
        remove_version(store, "m", 1)
    assert snapshot(store) == before


def test_changed_model_file_is_refused_and_left_alone(store: Store, tree: Any, iris: Any) -> None:  # noqa: F811
    v = register(store, tree, "m", namespace=ns_for(tree, iris), alias="champion")
    path = stored_file(store, v)  # the local file (team mode: the S3 object's cached copy)
    tampered = path.read_bytes()[:-10] + b"0123456789"
    path.write_bytes(tampered)
    before = snapshot(store)
    with pytest.raises(ModelFileChangedError, match="was changed on disk") as err:
        load_model("models:/m@champion", store=store)
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert path.read_bytes() == tampered and snapshot(store) == before
    path.unlink()
    if store.artifacts.remote:  # team mode: gone from the bucket too, not only from the cache
        store.artifacts._remote().rm(store.artifacts._path(v.digest))
    with pytest.raises(ModelFileChangedError, match="is missing"):
        load_model("models:/m/1", store=store)


# -- concurrency -------------------------------------------------------------------------------------


def test_concurrent_promotions_make_one_event_per_change(location: StoreLocation, tree: Any,  # noqa: F811
                                                         iris: Any) -> None:
    with Store(location) as s:
        for _ in range(4):
            register(s, tree, "m", namespace=ns_for(tree, iris))
        promote(s, "m", 1)

    # everyone promotes the same version: exactly one change, one event
    results = race(location, 6, lambda st, i: promote(st, "m", 2, reason=f"t{i}"))
    assert sum(r is not None for r in results) == 1
    # each promotes a different version: every change is one event, and they chain up
    results = race(location, 6, lambda st, i: promote(st, "m", 1 + i % 4, reason=f"u{i}"))
    changed = [r for r in results if r is not None]
    with Store(location) as s:
        moves = [e for e in model_history(s, "m") if e.kind == "promote"]
        assert len(moves) == 2 + len(changed)
        for a, b in zip(moves, moves[1:], strict=False):
            assert b.from_version == a.to_version  # no move was lost or doubled
        champion = resolve_model_uri(s, "models:/m@champion")
        assert champion.version == moves[-1].to_version
        assert {v.version for v in list_versions(s, "m")} == {1, 2, 3, 4}


def test_concurrent_registers_number_versions_once(location: StoreLocation, tree: Any,  # noqa: F811
                                                   iris: Any) -> None:
    results = race(location, 5, lambda st, i: register(st, tree, "m", namespace=ns_for(tree, iris)))
    assert sorted(v.version for v in results) == [1, 2, 3, 4, 5]
    with Store(location) as s:
        assert [e.kind for e in model_history(s, "m")] == ["register"] * 5


def test_concurrent_promote_and_rm_never_leave_a_dangling_alias(location: StoreLocation,  # noqa: F811
                                                                tree: Any, iris: Any) -> None:
    with Store(location) as s:
        for _ in range(2):
            register(s, tree, "m", namespace=ns_for(tree, iris))
        promote(s, "m", 1)

    def work(st: Store, i: int) -> str:
        try:
            if i % 2:
                promote(st, "m", 2)
            else:
                remove_version(st, "m", 2)
            return "ok"
        except (NotFoundError, InvalidArgumentError) as exc:
            return type(exc).__name__

    race(location, 4, work)
    with Store(location) as s:
        [m] = list_models(s)
        versions = {v.version for v in list_versions(s, "m")}
        assert set(m.aliases.values()) <= versions


# -- the command line ------------------------------------------------------------------------------


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    return subprocess.run([NBMLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


def one_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], proc.stderr


def test_cli_models(tmp_path: Path, tree: Any) -> None:
    with Store(sqlite_location(tmp_path)):
        pass
    joblib.dump(tree, tmp_path / "tree.joblib")
    out = cli(tmp_path, "models", "register", "tree.joblib", "--name", "iris", "--alias",
              "champion", "--reason", "first", "--json")
    assert out.returncode == 0, out.stderr
    v1 = json.loads(out.stdout)
    assert (v1["version"], v1["uri"], v1["aliases"], v1["format"]) == (1, "models:/iris/1",
                                                                      ["champion"], "joblib")
    assert cli(tmp_path, "models", "register", "tree.joblib", "--name", "iris").returncode == 0
    assert "iris@champion: v1 -> v2" in cli(tmp_path, "models", "promote", "iris", "2",
                                           "--reason", "better").stdout
    out = cli(tmp_path, "models", "promote", "iris", "2", "--json")
    assert json.loads(out.stdout) == {"changed": False, "event": None}
    ls = json.loads(cli(tmp_path, "models", "ls", "--json").stdout)
    assert [(m["name"], m["version_count"], m["aliases"]) for m in ls] == [("iris", 2, {"champion": 2})]
    text = cli(tmp_path, "models", "ls").stdout
    assert "iris" in text and "champion=v2" in text
    shown = json.loads(cli(tmp_path, "models", "show", "iris@champion", "--json").stdout)
    assert shown["version"] == 2 and shown["lineage"]["run"] is None
    assert "DecisionTreeClassifier" in cli(tmp_path, "models", "show", "models:/iris/1").stdout
    versions = json.loads(cli(tmp_path, "models", "versions", "iris", "--json").stdout)
    assert [v["version"] for v in versions] == [2, 1]
    out = cli(tmp_path, "models", "rollback", "iris", "--reason", "oops", "--json")
    assert json.loads(out.stdout)["event"]["to_version"] == 1
    assert cli(tmp_path, "models", "alias", "iris", "staging", "2").returncode == 0
    assert cli(tmp_path, "models", "alias", "iris", "staging", "--delete").returncode == 0
    assert cli(tmp_path, "models", "rm", "iris", "2", "--reason", "unused").returncode == 0
    history = json.loads(cli(tmp_path, "models", "history", "iris", "--json").stdout)
    assert [h["kind"] for h in history] == ["register", "alias", "register", "promote", "rollback",
                                            "alias", "unalias", "rm"]
    assert history[3]["reason"] == "better" and history[4]["reason"] == "oops"
    text = cli(tmp_path, "models", "history", "iris").stdout
    assert "rollback  iris@champion: v2 -> v1" in text and "(oops)" in text


def test_cli_bad_input_one_error_line_nothing_touched(tmp_path: Path, tree: Any) -> None:
    with Store(sqlite_location(tmp_path)) as s:
        register(s, tree, "iris", alias="champion")
        before = snapshot(s)
    (tmp_path / "notes.txt").write_text("not a model")
    one_error(cli(tmp_path, "models", "promote", "iris", "7"), 4, "has no version 7 (versions: 1)")
    one_error(cli(tmp_path, "models", "alias", "iris", "x", "3"), 4, "has no version 3")
    one_error(cli(tmp_path, "models", "rollback", "iris"), 2, "no earlier version to roll back to")
    one_error(cli(tmp_path, "models", "rm", "iris", "1"), 2, "iris@champion points at")
    one_error(cli(tmp_path, "models", "show", "irs"), 4, "did you mean iris?")
    one_error(cli(tmp_path, "models", "history", "nope"), 4, "no registered model named 'nope'")
    one_error(cli(tmp_path, "models", "register", "missing.joblib", "--name", "iris"), 4,
              "no model file")
    one_error(cli(tmp_path, "models", "register", "notes.txt", "--name", "iris"), 2,
              "not a model file")
    one_error(cli(tmp_path, "models", "register", "notes.txt", "--name", "a/b"), 2,
              "invalid model name")
    with Store(sqlite_location(tmp_path)) as s:
        assert snapshot(s) == before


def test_cli_refuses_a_missing_store(tmp_path: Path) -> None:
    one_error(cli(tmp_path, "models", "ls"), 3, "no nbmlops store")
    assert not (tmp_path / ".nbmlops").exists()


def test_public_api_register_and_load(tmp_path: Path, tree: Any, iris: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store(sqlite_location(tmp_path)) as s:
        v = nbmlops.register(tree, name="api", alias="champion", store=s)
        assert v.uri == "models:/api/1"
        model = nbmlops.load_model("models:/api@champion", store=s)
    assert (model.predict(iris[0]) == tree.predict(iris[0])).all()
