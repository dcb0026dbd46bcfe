"""``models:/NAME@ALIAS`` where a pipeline or `nbmlops run` takes a value: pinned to the version
it points at when the run starts, recorded, read through lineage, keyed in the cache."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_wine
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

from nbmlops.config import resolve_location
from nbmlops.registry import service
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error
from .conftest import make_notebook

pytestmark = pytest.mark.kernel


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert nbmlops("init", cwd=tmp_path).returncode == 0
    X, y = load_wine(return_X_y=True, as_frame=True)
    with Store(resolve_location(None, start=tmp_path)) as store:
        for model in (DecisionTreeClassifier(random_state=0).fit(X, y),
                      DummyClassifier().fit(X, y)):
            path = tmp_path / "m.joblib"
            joblib.dump(model, path)
            service.register(store, str(path), "wine")
        service.promote(store, "wine", 1)
    make_notebook(tmp_path / "score.ipynb", [
        ('model = "models:/wine@champion"', ["parameters"]),
        "import nbmlops\nm = nbmlops.load_model(model)\nprint(type(m).__name__)",
    ])
    (tmp_path / "pipeline.yaml").write_text(
        "name: scoring\nsteps:\n  score:\n    notebook: score.ipynb\n"
        "    params: {model: 'models:/wine@champion'}\n"
        "    inputs: ['models:/wine@champion']\n"
    )
    return tmp_path


def _runs(store: Store, source: str) -> list:
    return [r for r in store.list_runs(limit=100).runs if r.source == source]


def test_a_pipeline_pins_the_alias_records_the_read_and_follows_alias_moves(project: Path) -> None:
    first = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", "--json", cwd=project)
    assert first.returncode == 0, first.stderr
    step_run = json.loads(first.stdout)["steps"][0]["run_id"]
    with Store(resolve_location(None, start=project)) as store:
        run = store.get_run(step_run)
        assert run.params["model"] == "models:/wine/1"  # pinned, not the alias
        parent = store.get_run(run.parent_run_id)
        assert parent.tags["nbmlops.model.wine@champion"] == "models:/wine/1"
        v1 = service.get_version(store, "wine", 1)
        reads = [a for c in store.cell_executions(step_run) for a in c.reads]
        assert any(a.fingerprint == f"sha256:{v1.digest}" for a in reads)

    again = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", "--json", cwd=project)
    assert json.loads(again.stdout)["steps"][0]["state"] == "cached"

    with Store(resolve_location(None, start=project)) as store:
        service.promote(store, "wine", 2, reason="test")
    moved = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", "--json", cwd=project)
    step = json.loads(moved.stdout)["steps"][0]
    assert step["state"] == "ran"  # the alias moved: not served from the cache
    with Store(resolve_location(None, start=project)) as store:
        assert store.get_run(step["run_id"]).params["model"] == "models:/wine/2"


def test_an_unknown_alias_stops_the_run_before_anything_starts(project: Path) -> None:
    text = (project / "pipeline.yaml").read_text().replace("wine@champion'}", "wine@nope'}")
    (project / "pipeline.yaml").write_text(text)
    with Store(resolve_location(None, start=project)) as store:
        before = store.list_runs(limit=100).total
    proc = nbmlops("pipeline", "run", "pipeline.yaml", "--no-progress", cwd=project)
    assert proc.returncode in (2, 4)
    line = one_line_error(proc)
    assert "step score" in line and "nope" in line
    with Store(resolve_location(None, start=project)) as store:
        assert store.list_runs(limit=100).total == before


def test_nbmlops_run_pins_a_model_param(project: Path) -> None:
    proc = nbmlops("run", "score.ipynb", "-p", "model", "models:/wine@champion", "--json",
                   cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["params"]["model"] == "models:/wine/1"
    bad = nbmlops("run", "score.ipynb", "-p", "model", "models:/wine/9", cwd=project)
    assert bad.returncode == 4 and "wine" in one_line_error(bad)
