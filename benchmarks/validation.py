"""What a data validation costs on a large frame, against ``df.describe()`` on the same frame.

Builds a 1,000,000-row x 20-column frame (12 float, 3 integer, 3 string categories, 1 bool,
1 category column; a few nulls in some) and a reference drawn from the same distributions,
then measures, in one process, the median of 5 of

* ``df.describe()`` on the data (the baseline);
* ``nbmlops.validate(df, against=reference, record=False)``: schema inference from the
  1,000,000-row reference DataFrame plus every check on the data (drift on a sample of
  ``DRIFT_SAMPLE`` = 100,000 values per column);
* the same against a saved schema (inference done once before) and the checks alone;
* the same recorded into a temporary SQLite store (schema JSON stored as an artifact).

Target: ``validate`` <= 1.5x ``describe``. Prints seconds and ratios.

Usage::

    .venv/bin/python benchmarks/validation.py            # 1,000,000 rows
    .venv/bin/python benchmarks/validation.py --rows 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from nbmlops.config import StoreLocation
from nbmlops.store import Store
from nbmlops.validation import infer_schema, validate
from nbmlops.validation.drift import DRIFT_SAMPLE

TARGET = 1.5


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(12):
        # bounded (clipped at 4 sigma), so that two samples have about the same range
        values = np.clip(rng.normal(0.0, 1.0, rows), -4, 4) * (10.0 + i) + 100.0 * i
        if i % 4 == 0:
            values[rng.integers(0, rows, rows // 100)] = np.nan
        cols[f"f{i}"] = values
    for i in range(3):
        cols[f"i{i}"] = rng.integers(0, 1000 * (i + 1), rows)
    for i in range(3):
        cols[f"s{i}"] = rng.choice([f"v{k}" for k in range(5 + 5 * i)], rows)
    cols["b0"] = rng.random(rows) < 0.3
    cols["c0"] = pd.Categorical(rng.choice(["red", "green", "blue"], rows))
    return pd.DataFrame(cols)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    data = make_frame(args.rows, seed=1)
    reference = make_frame(args.rows, seed=2)
    print(f"frame: {args.rows:,} rows x {data.shape[1]} columns; drift sample {DRIFT_SAMPLE:,}")
    result = validate(data, against=reference, record=False)
    assert result.passed, str(result)  # same distributions: nothing to report

    describe = median_time(data.describe, args.repeat)
    full = median_time(lambda: validate(data, against=reference, record=False), args.repeat)
    schema = infer_schema(reference)
    checks = median_time(lambda: validate(data, against=schema, record=False), args.repeat)
    infer = median_time(lambda: infer_schema(reference), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(StoreLocation(url=f"sqlite:///{Path(tmp) / 'nbmlops.db'}",
                                    artifact_root=Path(tmp) / "artifacts"))
        recorded = median_time(
            lambda: validate(data, against=reference, store=store), args.repeat)
        store.close()

    print(f"{'df.describe()':<44}{describe:8.3f} s   1.00x")
    for label, value in (
        ("validate(df, against=reference DataFrame)", full),
        ("  of which infer_schema(reference)", infer),
        ("validate(df, against=saved schema)", checks),
        ("validate(...) recorded in a SQLite store", recorded),
    ):
        print(f"{label:<44}{value:8.3f} s   {value / describe:.2f}x")
    ratio = full / describe
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"target: validate <= {TARGET}x describe: {ratio:.2f}x {verdict}")


if __name__ == "__main__":
    main()
