"""``nbmlops export kfp``: a Kubeflow Pipelines v2 spec compiled with the real kfp SDK, then
reloaded with the SDK and compared with the pipeline (no cluster here: containers are compiled,
never run; ``tests/test_pipeline_step.py`` runs the command each container runs).

kfp pins exact versions of ``requests``/``urllib3``, so it lives in a venv of its own with
nbmlops (``NBMLOPS_KFP_VENV``), unless the test interpreter has kfp itself. Tests needing kfp are
skipped without it, and fail when NBMLOPS_REQUIRE_KFP=1 and it is unusable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nbmlops.pipeline.load import load_pipeline

from ._scripts import BIN, clean_env, nbmlops, one_line_error
from .conftest import make_notebook

EXAMPLE = Path(__file__).resolve().parents[1] / "example_notebooks" / "pipeline"
ORDER = ["prepare", "train_a", "train_b", "evaluate", "pick_best"]
IMAGE = "registry.example.com/wine/nbmlops:1.0"


def _kfp_bin() -> Path:
    """The bin/ directory of an interpreter with kfp and nbmlops; skip or fail without one."""
    venv = os.environ.get("NBMLOPS_KFP_VENV")
    required = os.environ.get("NBMLOPS_REQUIRE_KFP") == "1"
    give_up = pytest.fail if required else pytest.skip
    if not venv:
        if importlib.util.find_spec("kfp") is not None:
            return BIN
        give_up("NBMLOPS_KFP_VENV is not set and kfp is not installed here")
    bin_dir = Path(str(venv)) / "bin"
    if not (bin_dir / "nbmlops").is_file():
        give_up(f"NBMLOPS_KFP_VENV={venv} has no bin/nbmlops")
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import kfp, nbmlops; "
                            "print(kfp.__version__)"],
                           capture_output=True, text=True, timeout=120, env=clean_env())
    if probe.returncode != 0 or not probe.stdout.strip().startswith("2."):
        give_up(f"no usable kfp 2 in {venv}: {probe.stdout.strip()} {probe.stderr[-500:]}")
    return bin_dir


@pytest.fixture(scope="module")
def kfp_bin() -> Path:
    return _kfp_bin()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(EXAMPLE, dest,
                    ignore=shutil.ignore_patterns("data", "models", "reports", ".nbmlops"))
    assert nbmlops("init", cwd=dest).returncode == 0
    return dest


def export(kfp_bin: Path, project: Path, output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kfp_bin / "nbmlops"), "export", "kfp", "pipeline.yaml",
                           "-o", str(output), *args], cwd=project, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


RELOAD = """
import json, sys
from google.protobuf import json_format
from kfp import components
comp = components.load_component_from_file(sys.argv[1])
spec = json_format.MessageToDict(comp.pipeline_spec)
executors = spec["deploymentSpec"]["executors"]
def describe(tasks):
    out = {}
    for key, task in tasks.items():
        ref = task.get("componentRef", {}).get("name")
        component = spec["components"].get(ref, {})
        container = executors.get(component.get("executorLabel"), {}).get("container")
        out[key] = {
            "display": task["taskInfo"]["name"],
            "after": task.get("dependentTasks", []),
            "retries": task.get("retryPolicy", {}).get("maxRetryCount", 0),
            "backoff": task.get("retryPolicy", {}).get("backoffDuration"),
            "caching": task.get("cachingOptions", {}).get("enableCache", False),
            "trigger": task.get("triggerPolicy", {}).get("strategy"),
            "container": container,
            "inner": describe(component["dag"]["tasks"]) if "dag" in component else None,
        }
    return out
print(json.dumps({
    "name": comp.name,
    "inputs": {k: [v.type, v.default] for k, v in comp.component_spec.inputs.items()},
    "tasks": describe(spec["root"]["dag"]["tasks"]),
}))
"""


def reload(kfp_bin: Path, path: Path) -> dict[str, Any]:
    proc = subprocess.run([str(kfp_bin / "python"), "-c", RELOAD, str(path)], env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.timeout(300)
def test_compiled_spec_has_the_pipelines_dag(kfp_bin: Path, project: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out" / "wine.yaml"
    proc = export(kfp_bin, project, out, "--image", IMAGE, "--project-mount", "/mnt/wine",
                  "--retry-delay", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)
    assert done == {"path": str(out), "name": "wine-quality", "image": IMAGE,
                    "tasks": [*ORDER, "nbmlops-finish"], "inputs": ["seed", "label_noise"]}
    text = out.read_text()
    assert text.startswith("# Generated by nbmlops ")
    assert f"# Source: {project / 'pipeline.yaml'}\n" in text

    spec = reload(kfp_bin, out)
    assert spec["name"] == "wine-quality"
    assert spec["inputs"] == {"seed": ["Integer", 42.0], "label_noise": ["Float", 0.0]}
    root = spec["tasks"]
    (handler,) = [t for k, t in root.items() if t["inner"] is not None]
    finish = root["nbmlops-finish"]
    # the finish task runs after the steps whatever happened to them (an exit handler)
    assert finish["trigger"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert finish["container"]["args"][:3] == ["pipeline", "finish", "/mnt/wine/pipeline.yaml"]

    pipe = load_pipeline(project / "pipeline.yaml")
    inner = handler["inner"]
    by_display = {t["display"]: (key, t) for key, t in inner.items()}
    assert sorted(by_display) == sorted(ORDER)
    for name in ORDER:
        key, task = by_display[name]
        step = pipe.steps[name]
        assert sorted(inner[k]["display"] for k in task["after"]) == sorted(step.depends_on)
        assert task["retries"] == step.retries
        if step.retries:
            assert task["backoff"] == "30s"
        assert task["caching"] is False  # nbmlops caches; KFP would skip nbmlops altogether
        container = task["container"]
        assert container["image"] == IMAGE
        assert container["command"] == ["nbmlops"]
        assert container["args"] == [
            "pipeline", "step", "/mnt/wine/pipeline.yaml", name,
            "--parent-key", "{{$.inputs.parameters['nbmlops_parent_key']}}",
            "--orchestrator", "kfp", "-p", "seed", "{{$.inputs.parameters['seed']}}",
            "-p", "label_noise", "{{$.inputs.parameters['label_noise']}}",
        ]


@pytest.mark.timeout(300)
def test_export_is_deterministic_and_keeps_foreign_files(kfp_bin: Path, project: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "wine.yaml"
    assert export(kfp_bin, project, out, "--image", IMAGE).returncode == 0
    first = out.read_bytes()
    proc = export(kfp_bin, project, out, "--image", IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == first
    mine = tmp_path / "mine.yaml"
    mine.write_text("components: {}\n")
    proc = export(kfp_bin, project, mine, "--image", IMAGE)
    assert proc.returncode == 2
    assert "exists and was not generated by nbmlops" in one_line_error(proc)
    assert mine.read_text() == "components: {}\n"


def test_image_is_required(project: Path, tmp_path: Path) -> None:
    proc = nbmlops("export", "kfp", "pipeline.yaml", "-o", str(tmp_path / "x.yaml"), cwd=project)
    assert proc.returncode == 2
    assert "Missing option '--image'" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("kfp") is not None,
                    reason="kfp is installed in the test interpreter")
def test_without_kfp_the_error_says_what_to_install(project: Path, tmp_path: Path) -> None:
    proc = nbmlops("export", "kfp", "pipeline.yaml", "-o", str(tmp_path / "x.yaml"),
                   "--image", IMAGE, cwd=project)
    assert proc.returncode == 1
    assert "pip install 'nbmlops[kfp]'" in one_line_error(proc)
    assert not (tmp_path / "x.yaml").exists()


CYCLE = """\
name: loop
steps:
  a:
    notebook: ok.ipynb
    depends_on: [b]
  b:
    notebook: ok.ipynb
    depends_on: [a]
"""

UNKNOWN = """\
name: typo
steps:
  prepare:
    notebook: ok.ipynb
  train:
    notebook: ok.ipynb
    depends_on: prepar
"""


@pytest.mark.parametrize("definition", [CYCLE, UNKNOWN], ids=["cycle", "unknown-step"])
def test_bad_pipelines_fail_like_validate(tmp_path: Path, definition: str) -> None:
    """Checked before kfp is even imported: the same error with or without the SDK."""
    (tmp_path / "pipeline.yaml").write_text(definition)
    make_notebook(tmp_path / "ok.ipynb", ["x = 1"])
    validate = nbmlops("pipeline", "validate", "pipeline.yaml", cwd=tmp_path)
    exported = nbmlops("export", "kfp", "pipeline.yaml", "-o", "out.yaml", "--image", IMAGE,
                       cwd=tmp_path)
    assert validate.returncode == exported.returncode == 2
    assert one_line_error(exported) == one_line_error(validate)
    assert ("cycle: a -> b -> a" if definition is CYCLE else "unknown step 'prepar'") in (
        validate.stderr)
    assert not (tmp_path / "out.yaml").exists()
