"""What the model lifecycle costs: register + gate in a pipeline run, and a model card.

Two measurements, each a ratio against a baseline measured in the same run:

1. **register + gate in a pipeline** (headless path, ``nbmlops pipeline run``): the example wine
   pipeline (5 steps) run with ``--force-all`` with and without a ``gate:`` block on its last
   step (the gate registers ``models/best.joblib``, scores it and the champion on the held-out
   rows and promotes or not). Median of N interleaved runs each; target: the gate adds <= 1 s.
2. **``nbmlops card NAME@champion``** for a model whose lineage has 50 cells (a real kernel runs
   a 50-cell notebook through ``nbmlops run``; its last cell registers the model), as a
   subprocess of the installed console script, median of 7; baseline ``nbmlops runs show RUN``
   of the same run. Target < 1 s. ``build_card`` in process is printed too.

Usage::

    .venv/bin/python benchmarks/lifecycle.py            # 3 pipeline runs of each kind
    .venv/bin/python benchmarks/lifecycle.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_notebooks" / "pipeline"
GATE_BLOCK = """
    gate:
      model: models/best.joblib
      name: wine
      data: data/test.parquet
      target: target
      metric: f1_macro
      min: 0.8
      must_beat: champion
"""


def nbmlops() -> str:
    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("the nbmlops console script is not installed next to this interpreter")
    return found


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def _without_gate(text: str) -> str:
    """pipeline.yaml with its gate block (if any) taken out."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.strip() == "gate:":
            skipping = True
            continue
        if skipping and (line.startswith("      ") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def pipeline_figures(tmp: Path, runs: int) -> dict[str, float]:
    base_dir, gate_dir = tmp / "plain", tmp / "gated"
    for d in (base_dir, gate_dir):
        shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns("data", "models", "reports"))
        subprocess.run([nbmlops(), "init"], cwd=d, check=True, capture_output=True)
    plain = _without_gate((EXAMPLE / "pipeline.yaml").read_text())
    (base_dir / "pipeline.yaml").write_text(plain)
    (gate_dir / "pipeline.yaml").write_text(plain.rstrip("\n") + "\n" + GATE_BLOCK)
    cmd = [nbmlops(), "pipeline", "run", "pipeline.yaml", "--force-all", "--no-progress"]
    for d in (base_dir, gate_dir):  # warm-up: imports, bytecode, the first champion
        timed(cmd, d)
    plain_t, gated_t = [], []
    for _ in range(runs):
        plain_t.append(timed(cmd, base_dir))
        gated_t.append(timed(cmd, gate_dir))
    events = subprocess.run([nbmlops(), "models", "history", "wine", "--json"], cwd=gate_dir,
                            capture_output=True, text=True, check=True).stdout
    gates = [e for e in json.loads(events) if e["kind"] == "gate"]
    assert len(gates) == runs + 1, f"expected {runs + 1} gate decisions, saw {len(gates)}"
    return {"plain": statistics.median(plain_t), "gated": statistics.median(gated_t)}


def card_figures(tmp: Path, cells: int = 50) -> dict[str, float]:
    proj = tmp / "card"
    proj.mkdir()
    subprocess.run([nbmlops(), "init"], cwd=proj, check=True, capture_output=True)
    sources = [
        "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
        "rng = np.random.default_rng(0)\nx0 = pd.DataFrame(rng.normal(size=(200, 4)), "
        "columns=list('abcd'))",
    ]
    for i in range(1, cells - 3):
        sources.append(f"x{i} = x{i - 1} * 1.01 + {i}")
    sources.append(f"X = x{cells - 4}\ny = (X['a'] > X['a'].median()).astype(int)\n"
                   "model = LogisticRegression().fit(X, y)")
    sources.append("import nbmlops\nnbmlops.register(model, name='bench', alias='champion')")
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(nb, proj / "chain.ipynb")
    out = subprocess.run([nbmlops(), "run", "chain.ipynb", "--json"], cwd=proj,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the 50-cell notebook failed:\n{out.stderr[-2000:]}")
    run_id = json.loads(out.stdout)["run_id"]

    from nbmlops.config import resolve_location
    from nbmlops.registry.card import build_card
    from nbmlops.store import Store

    with Store(resolve_location(f"sqlite:///{proj / '.nbmlops' / 'nbmlops.db'}")) as store:
        card = build_card(store, "bench@champion")
        lineage_cells = len(card["cells"])
        t_in = []
        for _ in range(7):
            t0 = time.perf_counter()
            build_card(store, "bench@champion")
            t_in.append(time.perf_counter() - t0)
    card_t = [timed([nbmlops(), "card", "bench@champion", "-o", "card.html"], proj)
              for _ in range(7)]
    show_t = [timed([nbmlops(), "runs", "show", run_id], proj) for _ in range(7)]
    return {"card": statistics.median(card_t), "show": statistics.median(show_t),
            "build_card": statistics.median(t_in), "cells": float(lineage_cells)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pipeline runs of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbmlops-bench-lifecycle-") as d:
        tmp = Path(d)
        c = card_figures(tmp)
        print(f"card, {int(c['cells'])} cells of lineage (CLI subprocess, median of 7): "
              f"{c['card']:.3f} s  vs `runs show` {c['show']:.3f} s  "
              f"(x{c['card'] / c['show']:.2f}; build_card in process {c['build_card'] * 1000:.1f} ms)"
              f"  target < 1 s: {'PASS' if c['card'] < 1 else 'FAIL'}")
        p = pipeline_figures(tmp, args.runs)
        added = p["gated"] - p["plain"]
        print(f"pipeline run --force-all, headless (median of {args.runs}): without gate "
              f"{p['plain']:.2f} s, with register + gate {p['gated']:.2f} s: +{added:.2f} s "
              f"(x{p['gated'] / p['plain']:.3f})  target <= +1 s: "
              f"{'PASS' if added <= 1 else 'FAIL'}")


if __name__ == "__main__":
    main()
