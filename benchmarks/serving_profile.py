"""Where a served request's time goes: py-spy samples of the ``nbmlops serve`` process under
load, sorted into the stages of a request (used by ``serving.py --profile``).

py-spy (a sampling profiler, ``pip install py-spy``; not a dependency of nbmlops) attaches to the
running server without pausing it (``--nonblocking``) and records every active thread's stack
(idle threads are not sampled). Each sample goes to the first stage below whose marker is in
its stack, so a DataFrame built inside ``_predict`` counts as DataFrame construction, not as
prediction.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (stage, markers: any of them in the stack selects the stage), first match wins
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("DataFrame from the request (Loaded.frame)", ("Loaded.frame (",)),
    ("model.predict / predict_proba (sklearn)", ("sklearn/",)),
    ("prediction log: append (batch thread)", ("PredictionLogWriter.append (",)),
    ("prediction log: writer thread (arrow, parquet)", ("monitoring/predlog.py",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("JSON parse of the request", ("parse_json (",)),
    ("input checks (to_columns, check_columns)", ("serving/inputs.py",)),
    ("JSON response (_json)", ("_json (nbmlops/serving/app.py",)),
    ("request handler, rest (Service.predict)", ("Service.predict (",)),
    ("batch thread, rest (queue, futures)", ("nbmlops-batch",)),
    ("HTTP: uvicorn, httptools, starlette", ("uvicorn/", "starlette/", "httptools", "h11/")),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop")),
]
OTHER = "other (heartbeat, alias poll, ...)"


def find_py_spy(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    return (shutil.which("py-spy", path=str(Path(sys.executable).parent))
            or shutil.which("py-spy"))


def start(py_spy: str, pid: int, seconds: float, out: Path, rate: int = 200
          ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
         "--duration", str(max(1, int(round(seconds)))), "--rate", str(rate), "--threads",
         "--nonblocking", "--subprocesses"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stage_of(stack: str) -> str:
    for stage, markers in STAGES:
        if any(m in stack for m in markers):
            return stage
    return OTHER


def summarize(raw: Path) -> dict[str, int]:
    """Samples per stage from py-spy's raw (collapsed) output: ``stack count`` per line."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        counts[stage_of(stack)] += int(n)
    return dict(counts.most_common())


def thread_samples(raw: Path) -> dict[str, int]:
    """Samples per thread name (the first field of each stack)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        # with --subprocesses a stack starts with "process PID:..." and then "thread (TID): NAME"
        head = next((f for f in stack.split(";")[:2] if f.startswith("thread (")), "?")
        name = head.split(": ", 1)[1] if ": " in head else head
        counts[name] += int(n)
    return dict(counts.most_common())
