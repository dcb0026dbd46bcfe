"""What ``nbmlops monitor`` costs over a large prediction log, against reading the same log into
pandas and describing it.

Setup (not timed): a temporary store; a training file of 50,000 rows x 20 float features read by
a recorded training cell that fits a LogisticRegression, registered from the file it dumped (so
the reference is found through lineage, as in real use) and aliased ``champion``; then
``--rows`` (default 1,000,000) logged rows written by :class:`PredictionLogWriter` exactly as a
service writes them (requests of 100 rows, a file per 5,000 rows: 200 parquet files), the last
half with three features shifted.

Measured in one process, median of ``--repeat`` (default 3):

* baseline: ``pd.read_parquet(log directory)`` + ``df.describe()``;
* ``monitor(store, "bench@champion")`` cold (reference profiled and the model's predictions
  on it computed, then cached) and warm (profiles from the cache, as a trigger's poll is),
  recorded into the store each time;
* ``monitor(..., window="100000")`` (the newest 100,000 rows);
* ``PredictionLogWriter.append`` of a 1-row request (what a served request pays), in µs.

Target: ``monitor`` over 1,000,000 rows x 20 features < 5 s. Prints seconds and ratios.

Usage::

    .venv/bin/python benchmarks/monitor.py               # 1,000,000 rows
    .venv/bin/python benchmarks/monitor.py --rows 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from nbmlops.config import StoreLocation
from nbmlops.fingerprint import fingerprint_file, frame_schema
from nbmlops.monitoring.monitor import monitor
from nbmlops.monitoring.predlog import PredictionLogWriter, list_parts
from nbmlops.registry.service import register
from nbmlops.store import Store
from nbmlops.store.entities import ArtifactIO, CellRecord, Estimator

TARGET_SECONDS = 5.0
FEATURES = [f"f{i}" for i in range(20)]


def features(rows: int, seed: int, shift: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {name: rng.normal(10.0 * i, 1.0 + i, rows) for i, name in enumerate(FEATURES)}
    frame = pd.DataFrame(cols)
    if shift:
        for name in FEATURES[:3]:
            frame[name] += 2.0 * frame[name].std()
    return frame


def train(store: Store, work: Path) -> Any:
    X = features(50_000, seed=0)
    y = (X["f0"] / 1.0 + X["f1"] / 2.0 - X["f2"] / 3.0 > 10.0 / 2.0 - 20 / 3.0).astype(int)
    data = X.assign(target=y)
    train_file = work / "train.parquet"
    data.to_parquet(train_file)
    model = LogisticRegression(max_iter=500).fit(X, y)
    model_file = work / "model.joblib"
    joblib.dump(model, model_file)

    def io(path: Path, direction: str, via: str, kind: str, frame: Any = None) -> ArtifactIO:
        fp = fingerprint_file(path)
        assert fp is not None
        return ArtifactIO(uri=str(path), direction=direction, via=via, kind=kind,
                          fingerprint=fp[0], size=fp[1],
                          schema=frame_schema(frame) if frame is not None else None)

    def cell(seq: int, source: str, **kw: Any) -> CellRecord:
        return CellRecord(seq=seq, source=source, start_time=1000.0 + seq, duration=0.1,
                          status="ok", execution_count=seq, **kw)

    rid = store.create_run(name="train")
    store.record_cells(rid, [
        cell(0, "data = pd.read_parquet('train.parquet')", vars_defined=["data"],
             io=[io(train_file, "read", "pandas.read_parquet", "dataset", data)]),
        cell(1, "X, y = data[FEATURES], data.target", vars_used=["data"],
             var_sources={"data": 0}, vars_defined=["X", "y"]),
        cell(2, "model.fit(X, y)", vars_used=["X", "y"], var_sources={"X": 1, "y": 1},
             vars_defined=["model"],
             estimators=[Estimator("model", "LogisticRegression", {}, ["X", "y"])]),
        cell(3, "joblib.dump(model, 'model.joblib')", vars_used=["model"],
             var_sources={"model": 2}, io=[io(model_file, "wrote", "joblib.dump", "model")]),
    ])
    register(store, str(model_file), "bench", alias="champion")
    return model


def write_log(store: Store, model: Any, rows: int) -> Path:
    directory = store.location.predictions_dir / "bench"
    writer = PredictionLogWriter(directory, flush_rows=5000, flush_seconds=3600,
                                 max_pending_rows=10_000_000)
    half = rows // 2
    for part in (features(half, seed=1), features(rows - half, seed=2, shift=True)):
        predictions = model.predict(part)
        values = {name: part[name].to_numpy() for name in FEATURES}
        now = time.time()
        for start in range(0, len(part), 100):
            stop = start + 100
            writer.append(request_id=uuid.uuid4().hex, ts=now, model="bench", version=1,
                          alias="champion", role="primary", latency_ms=1.0,
                          inputs={k: v[start:stop] for k, v in values.items()},
                          predictions=predictions[start:stop], proba=None)
            if writer.pending >= writer.flush_rows:
                writer.flush()
    writer.close()
    assert writer.written == rows and writer.dropped == 0
    return directory


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def append_cost(directory: Path, n: int = 20_000) -> float:
    writer = PredictionLogWriter(directory / "_append", flush_rows=10**9, flush_seconds=3600,
                                 max_pending_rows=10**9)
    inputs = {name: [1.0] for name in FEATURES}
    t0 = time.perf_counter()
    for i in range(n):
        writer.append(request_id=str(i), ts=0.0, model="bench", version=1, alias="champion",
                      role="primary", latency_ms=1.0, inputs=inputs, predictions=[1],
                      proba=None)
    per = (time.perf_counter() - t0) / n
    writer.close()
    return per * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        location = StoreLocation(url=f"sqlite:///{work / '.nbmlops' / 'nbmlops.db'}",
                                 artifact_root=work / ".nbmlops" / "artifacts",
                                 store_dir=work / ".nbmlops")
        with Store(location) as store:
            model = train(store, work)
            t0 = time.perf_counter()
            directory = write_log(store, model, args.rows)
            setup = time.perf_counter() - t0
            files = len(list_parts(directory))
            size = sum(p.stat().st_size for p in list_parts(directory)) / 2**20
            print(f"log: {args.rows:,} rows x {len(FEATURES)} features in {files} files "
                  f"({size:.1f} MiB), written in {setup:.1f} s")

            def baseline() -> object:
                return pd.read_parquet(directory).describe()

            t0 = time.perf_counter()
            cold = monitor(store, "bench@champion")
            cold_s = time.perf_counter() - t0
            base = median_time(baseline, args.repeat)
            warm_s = median_time(lambda: monitor(store, "bench@champion"), args.repeat)
            last_s = median_time(lambda: monitor(store, "bench@champion", window="100000"),
                                 args.repeat)
            per_append = append_cost(work)
            print(f"drifted: {cold.drifted} (score {cold.score:.3f}; "
                  f"{', '.join(cold.drifted_features)}), rows {cold.rows:,}")
            print(f"{'measure':<44}{'seconds':>9}{'x baseline':>12}")
            for label, value in (
                ("baseline: read_parquet + describe()", base),
                ("monitor, cold (reference profiled, cached)", cold_s),
                ("monitor, warm (cached reference)", warm_s),
                ("monitor, window=100000 rows", last_s),
            ):
                print(f"{label:<44}{value:>9.2f}{value / base:>11.2f}x")
            print(f"append() of a 1-row request: {per_append:.1f} µs")
            verdict = "met" if max(cold_s, warm_s) < TARGET_SECONDS else "MISSED"
            print(f"target monitor < {TARGET_SECONDS:.0f} s over {args.rows:,} rows: {verdict}")


if __name__ == "__main__":
    main()
