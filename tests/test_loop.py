"""The continuous-training loop end to end, with real processes on loopback: the example
pipeline makes a champion, `nbmlops serve` answers traffic and logs it, shifted traffic drifts,
the drift trigger fires the retraining pipeline through `nbmlops scheduler --once`, the gate
promotes the challenger and the running service answers with it. This is the script `make
demo-loop` runs (example_notebooks/loop/loop.py), on a copy of the example project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_notebooks"
NBMLOPS = Path(sys.executable).with_name("nbmlops")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    dest.mkdir()
    ignore = shutil.ignore_patterns("data", "models", "reports", ".ipynb_checkpoints",
                                    "__pycache__")
    for sub in ("pipeline", "loop"):
        shutil.copytree(EXAMPLE / sub, dest / sub, ignore=ignore)
    shutil.copytree(EXAMPLE / "pipeline" / "schemas", dest / "pipeline" / "schemas",
                    dirs_exist_ok=True)
    subprocess.run([str(NBMLOPS), "init"], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.mark.timeout(900)
def test_drift_fires_retraining_and_the_service_answers_with_the_promoted_challenger(
    project: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    proc = subprocess.run([sys.executable, "loop/loop.py", "--json"], cwd=project, env=env,
                          text=True, capture_output=True, timeout=850)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    summary = json.loads(out.strip().splitlines()[-1])
    # normal traffic does not drift; the new instrument's does (monitor exits 1 on drift)
    assert summary["monitor_normal_exit"] == 0, out[-4000:]
    assert summary["monitor_shifted_exit"] == 1, out[-4000:]
    assert summary["scheduler_exit"] == 0
    # the challenger was promoted and the running service answers with it, better than before
    assert summary["champion_after"] == summary["champion_before"] + 1
    assert summary["served_after"] == summary["champion_after"]
    assert summary["accuracy_shifted_after"] > summary["accuracy_shifted_before"] + 0.05

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(NBMLOPS), *args], cwd=project, env=env, text=True,
                              capture_output=True, check=True)

    # the fire records the drift that caused it, and there is exactly one fire for the episode
    fires = json.loads(cli("trigger", "history", "retrain-on-drift", "--json").stdout)["fires"]
    assert len(fires) == 1, fires
    reason = fires[0]["reason"]
    assert reason["kind"] == "drift" and reason["model"] == "wine"
    assert reason["version"] == summary["champion_before"]
    assert reason["score"] > 0.2 and reason["features"], reason
    assert set(reason["features"]) & {"flavanoids", "od280/od315_of_diluted_wines", "proline"}
    # the promotion is in the audit log as a gate decision of the retraining run
    events = json.loads(cli("models", "history", "wine", "--json").stdout)
    gates = [e for e in events if e["kind"] == "gate"]
    assert [g["to_version"] for g in gates] == [summary["champion_before"],
                                                summary["champion_after"]], gates
    # the retrained version's signature is the model's real input (its fit read a file that
    # also holds the target: lineage's schema of that file is not the signature)
    shown = json.loads(cli("models", "show", "wine@champion", "--json").stdout)
    columns = [c["name"] for c in shown["signature"]["inputs"]["columns"]]
    assert "target" not in columns and "proline" in columns and len(columns) == 13
    # the drift report is a self-contained HTML file
    report = (project / "loop" / "reports" / "drift.html").read_text()
    assert "<svg" in report and "flavanoids" in report
