"""How fast the model registry answers, at 1,000 versions.

Builds a temporary store with 1,000 model versions (20 models x 50 versions, two aliases each
moved a few times, so the audit log has ~1,300 events) plus 200 runs, through the public API,
then measures as real subprocesses of the installed console script (wall time, median of 5):

* ``nbmlops models ls`` (target < 0.5 s) and ``--json``, against ``nbmlops runs ls`` on the same
  store (the ratio is the figure that travels between machines);
* ``nbmlops models versions NAME`` (50 versions) and ``nbmlops models history NAME``;

and in process (median of 20): ``list_models``, ``resolve_model_uri``, ``register`` of a fitted
scikit-learn model (skops and joblib) and ``load_model`` (digest check + load), plus the one-time
cost of importing ``skops.io``.

Usage::

    .venv/bin/python benchmarks/registry.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nbmlops.config import StoreLocation
from nbmlops.store import Store

TARGET_MODELS_LS_S = 0.5
MODELS, VERSIONS, RUNS = 20, 50, 200


def console_script() -> str:
    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent)) or shutil.which("nbmlops")
    if not found:
        raise SystemExit("the nbmlops console script is not installed next to this interpreter")
    return found


def build(root: Path) -> tuple[StoreLocation, float]:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    from nbmlops.registry import register, set_alias

    store_dir = root / ".nbmlops"
    loc = StoreLocation(url=f"sqlite:///{store_dir / 'nbmlops.db'}",
                        artifact_root=store_dir / "artifacts", store_dir=store_dir)
    t0 = time.perf_counter()
    X, y = load_iris(return_X_y=True, as_frame=True)
    with Store(loc) as store:
        for i in range(RUNS):
            rid = store.create_run(name=f"train-{i}", params={"seed": i})
            store.end_run(rid, "finished")
        model = DecisionTreeClassifier(max_depth=3).fit(X, y)
        first = register(store, model, "model-00", namespace={"model": model, "X": X, "y": y,
                                                             "In": ["model.fit(X, y)"]})
        stored = Path(first.stored_path)
        actor = {"user": "bench", "host": "bench", "reason": None, "run_id": None}
        for m in range(MODELS):
            name = f"model-{m:02d}"
            for v in range(VERSIONS):
                if m == 0 and v == 0:
                    continue
                store.registry.add_version(
                    name, actor=actor, digest=first.digest, format=first.format,
                    size=first.size, stored_path=str(stored), model_class=first.model_class,
                    signature=first.signature, info=first.info, created_by="bench")
            for v in (10, 20, 30, 40):
                set_alias(store, name, "champion", v)
            set_alias(store, name, "challenger", VERSIONS)
    return loc, time.perf_counter() - t0


def wall(cmd: Sequence[str], cwd: Path, n: int = 5) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    times = []
    for _ in range(n + 1):  # the first warms the page cache
        t0 = time.perf_counter()
        out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return statistics.median(times[1:])


def inproc(fn: Callable[[], Any], n: int = 20) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    nb = console_script()
    root = Path(tempfile.mkdtemp(prefix="nbmlops-bench-registry-"))
    try:
        loc, built = build(root)
        print(f"store: {MODELS * VERSIONS} versions of {MODELS} models, {RUNS} runs "
              f"(built in {built:.1f} s)")
        base = wall([sys.executable, "-c", "pass"], root)
        runs_ls = wall([nb, "runs", "ls"], root)
        models_ls = wall([nb, "models", "ls"], root)
        models_json = wall([nb, "models", "ls", "--json"], root)
        versions = wall([nb, "models", "versions", "model-07"], root)
        history = wall([nb, "models", "history", "model-07"], root)
        rows = [
            ("python -c pass", base),
            ("nbmlops runs ls (baseline)", runs_ls),
            ("nbmlops models ls", models_ls),
            ("nbmlops models ls --json", models_json),
            ("nbmlops models versions (50)", versions),
            ("nbmlops models history (~6 events)", history),
        ]
        for label, t in rows:
            print(f"  {label:<36} {t:7.3f} s   x{t / runs_ls:5.2f} of runs ls")
        verdict = "PASS" if models_ls < TARGET_MODELS_LS_S else "FAIL"
        print(f"models ls with {MODELS * VERSIONS} versions: {models_ls:.3f} s "
              f"(target < {TARGET_MODELS_LS_S} s) {verdict}")

        probe = ("import time, sklearn.ensemble\nt0 = time.perf_counter()\nimport skops.io\n"
                 "print(time.perf_counter() - t0)")
        skops_import = statistics.median(float(subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
            for _ in range(3))
        from sklearn.datasets import load_iris
        from sklearn.ensemble import RandomForestClassifier

        from nbmlops.registry import list_models, load_model, register, resolve_model_uri

        X, y = load_iris(return_X_y=True, as_frame=True)
        forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
        ns = {"forest": forest, "X": X, "y": y, "In": ["forest.fit(X, y)"]}
        with Store(loc) as store:
            print("in process (median of 20):")
            print(f"  list_models                 {inproc(lambda: list_models(store)) * 1000:7.1f} ms")
            print(f"  resolve_model_uri           "
                  f"{inproc(lambda: resolve_model_uri(store, 'models:/model-03@champion')) * 1000:7.1f} ms")
            reg_skops = inproc(lambda: register(store, forest, "forest", namespace=ns), 5)
            reg_joblib = inproc(lambda: register(store, forest, "forest-j", namespace=ns,
                                                 fmt="joblib"), 5)
            load_s = inproc(lambda: load_model("models:/forest/1", store=store), 5)
            load_j = inproc(lambda: load_model("models:/forest-j/1", store=store), 5)
            print(f"  register RandomForest(50) skops  {reg_skops * 1000:7.1f} ms "
                  f"(joblib {reg_joblib * 1000:.1f} ms)")
            print(f"  load_model skops            {load_s * 1000:7.1f} ms (joblib {load_j * 1000:.1f} ms)")
        print(f"import skops.io once, in a fresh process with sklearn imported: {skops_import:.3f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
