"""`gate:` in pipeline.yaml, through real `nbmlops pipeline run` subprocesses and real kernels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nbmlops.config import resolve_location
from nbmlops.registry import service
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error
from .conftest import make_notebook

pytestmark = pytest.mark.kernel

TRAIN = """\
from pathlib import Path
import joblib
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier
wine = load_wine(as_frame=True).frame
train, test = train_test_split(wine, test_size=0.3, random_state=0, stratify=wine["target"])
model = DecisionTreeClassifier(max_depth=depth, random_state=0)
model.fit(train.drop(columns=["target"]), train["target"])
Path("out").mkdir(exist_ok=True)
test.to_csv("out/test.csv", index=False)
joblib.dump(model, "out/model.joblib")
"""

GATE = """\
    gate:
      model: out/model.joblib
      name: tree
      data: out/test.csv
      target: target
      metric: {metric}
      min: 0.5
      must_beat: champion
{extra}"""


def write_pipeline(root: Path, metric: str = "f1_macro", extra: str = "",
                   model: str = "out/model.joblib") -> None:
    gate = GATE.format(metric=metric, extra=extra).replace("out/model.joblib", model)
    (root / "pipeline.yaml").write_text(
        "name: gated\nparams: {depth: 4}\nsteps:\n  train:\n    notebook: train.ipynb\n"
        "    outputs: [out/model.joblib, out/test.csv]\n" + gate
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_notebook(tmp_path / "train.ipynb", [("depth = 4", ["parameters"]), TRAIN])
    assert nbmlops("init", cwd=tmp_path).returncode == 0
    write_pipeline(tmp_path)
    return tmp_path


def run(root: Path, *args: str) -> tuple[int, dict]:
    proc = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", "--json", *args, cwd=root,
                   timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def test_first_run_promotes_a_worse_one_is_rejected_and_recorded(project: Path) -> None:
    code, first = run(project)
    assert code == 0, first
    gate = first["steps"][0]["gate"]
    assert gate["decision"] == "promoted" and gate["candidate_version"] == 1

    code, worse = run(project, "-p", "depth", "1")
    assert code == 0  # a rejection is an outcome (on_reject: pass)
    gate = worse["steps"][0]["gate"]
    assert gate["decision"] == "rejected" and gate["candidate_version"] == 2
    assert gate["champion_version"] == 1 and gate["candidate_score"] < gate["champion_score"]

    with Store(resolve_location(None, start=project)) as store:
        assert service.resolve_model_uri(store, "models:/tree@champion").version == 1
        v2 = service.get_version(store, "tree", 2)
        step_run = store.get_run(worse["steps"][0]["run_id"])
        assert v2.run_id == step_run.id  # the version's lineage is the step's run
        assert v2.signature["inputs"]["n_features"] == 13
        assert step_run.tags["nbmlops.gate.tree"].startswith("rejected: ")
        kinds = [e.kind for e in service.model_history(store, "tree")]
        assert kinds == ["register", "gate", "promote", "register", "gate"]

    code, cached = run(project)  # depth 4 again: the step's outputs changed, so it runs
    assert cached["steps"][0]["gate"]["decision"] == "unchanged"
    with Store(resolve_location(None, start=project)) as store:
        assert len(service.list_versions(store, "tree")) == 2  # same file: same version


def test_on_reject_fail_fails_the_step(project: Path) -> None:
    assert run(project)[0] == 0
    write_pipeline(project, extra="      on_reject: fail\n")
    proc = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", "-p", "depth", "1",
                   cwd=project, timeout=180)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "tree v2 rejected by the gate" in line


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "f1_macor"}, r"pipeline.yaml:\d+:\d+: steps.train.gate: metric 'f1_macor' is not "
                             r"computed by the gate \(did you mean 'f1_macro'\?\)"),
    ({"model": "out/other.joblib"}, r"pipeline.yaml:\d+:\d+: .*'out/other.joblib' is not among "
                                    r"this step's outputs"),
])
def test_a_bad_gate_is_refused_before_anything_runs(project: Path, kwargs: dict,
                                                    message: str) -> None:
    write_pipeline(project, **kwargs)
    for command in ("validate", "run"):
        proc = nbmlops("pipeline", command, "pipeline.yaml", cwd=project)
        assert proc.returncode == 2
        assert re.search(message, one_line_error(proc)), proc.stderr
    with Store(resolve_location(None, start=project)) as store:
        assert store.list_runs(limit=10).total == 0
        assert service.list_models(store) == []


def test_a_reproduction_moves_no_alias(project: Path) -> None:
    code, first = run(project)
    assert code == 0
    with Store(resolve_location(None, start=project)) as store:
        events = len(service.model_history(store, "tree"))
        service.register(store, str(project / "out" / "model.joblib"), "tree")  # v2, same file
        service.promote(store, "tree", 2)
        events += 2
    proc = nbmlops("reproduce", first["run_id"], "--json", cwd=project, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["reproducible"] is True
    with Store(resolve_location(None, start=project)) as store:
        assert len(service.model_history(store, "tree")) == events  # no gate, no promotion
        assert service.resolve_model_uri(store, "models:/tree@champion").version == 2
        steps = [r for r in store.list_runs(limit=20).runs
                 if r.parent_run_id == report["run_id"]]
        assert steps and steps[0].tags["nbmlops.gate.tree"].startswith("skipped")
