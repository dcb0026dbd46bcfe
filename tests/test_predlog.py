"""The prediction log: the background writer, crash safety, readers and labels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nbmlops.errors import InvalidArgumentError
from nbmlops.monitoring.predlog import (
    PredictionLogWriter,
    list_parts,
    read_labels,
    read_predictions,
    write_labels,
)


def _append(w: PredictionLogWriter, rid: str, n: int = 2, *, version: int = 1,
            alias: str = "champion", role: str = "primary", ts: float | None = None,
            preds: object = None) -> bool:
    return w.append(
        request_id=rid, ts=time.time() if ts is None else ts, model="wine", version=version,
        alias=alias, role=role, latency_ms=1.5,
        inputs={"alcohol": np.linspace(10, 14, n), "color": ["red"] * n},
        predictions=np.arange(n) if preds is None else preds,
        proba=[[0.25, 0.75]] * n,
    )


def test_writer_round_trip_columns_and_types(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path, flush_rows=1000, flush_seconds=0.05)
    w.start()
    assert _append(w, "a", 3)
    assert _append(w, "b", 2, alias="", role="shadow")
    w.close()
    assert (w.written, w.dropped, w.pending, w.errors) == (5, 0, 0, 0)
    parts = list_parts(tmp_path)
    assert len(parts) == 1
    name = parts[0].name
    assert name.startswith("part-") and len(name.split("-")[1]) == 13
    schema = pq.read_schema(parts[0])
    assert str(schema.field("row").type) == "int32"
    assert str(schema.field("version").type) == "int64"
    assert str(schema.field("prediction").type) == "string"  # classifier labels
    assert str(schema.field("proba").type) == "list<element: double>"
    assert str(schema.field("in.alcohol").type) == "double"
    everything = read_predictions(tmp_path, role=None)
    assert list(everything["request_id"]) == ["a", "a", "a", "b", "b"]
    assert list(everything["row"]) == [0, 1, 2, 0, 1]
    assert list(everything["prediction"]) == ["0", "1", "2", "0", "1"]
    primary = read_predictions(tmp_path)
    assert len(primary) == 3 and "label" not in primary.columns


def test_append_rows_of_a_micro_batch_reads_like_one_append_per_request(tmp_path: Path) -> None:
    """The service appends each predicted batch once: several requests, per-row ids, rows,
    aliases and latencies; a request without probabilities logs null proba rows."""
    w = PredictionLogWriter(tmp_path, flush_rows=1000, flush_seconds=0.05)
    w.start()
    assert _append(w, "a", 1)
    assert w.append_rows(
        request_ids=["b", "c", "c"], rows=[0, 0, 1], ts=[1.0, 2.0, 2.0], model="wine",
        version=3, aliases=["champion", "challenger", "challenger"],
        roles=["primary"] * 3, latency_ms=[1.5, 2.5, 2.5],
        inputs={"alcohol": [13.0, 12.5, 14.1]}, predictions=[0, 1, 2],
        proba=[[1.0, 0.0, 0.0], None, None])
    # bad shapes are refused, counted, never raised
    assert not w.append_rows(request_ids=["d"], rows=[0, 1], ts=[1.0], model="wine", version=3,
                             aliases=["x"], roles=["primary"], latency_ms=[1.0],
                             inputs={"alcohol": [1.0]}, predictions=[0], proba=None)
    w.close()
    assert (w.written, w.errors) == (4, 1)
    df = read_predictions(tmp_path, role=None)
    got = df[df["request_id"] != "a"]
    assert list(got["request_id"]) == ["b", "c", "c"] and list(got["row"]) == [0, 0, 1]
    assert list(got["alias"]) == ["champion", "challenger", "challenger"]
    assert list(got["latency_ms"]) == [1.5, 2.5, 2.5] and set(got["version"]) == {3}
    assert list(got["in.alcohol"]) == [13.0, 12.5, 14.1]
    assert list(got["proba"].iloc[0]) == [1.0, 0.0, 0.0] and got["proba"].iloc[1] is None


def test_regressor_predictions_are_float64(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    _append(w, "r", 2, preds=np.array([1.5, 2.5]))
    w.close()  # never started: close flushes in the caller's thread
    schema = pq.read_schema(list_parts(tmp_path)[0])
    assert str(schema.field("prediction").type) == "double"
    assert list(read_predictions(tmp_path)["prediction"]) == [1.5, 2.5]


def test_queue_full_drops_are_counted_not_raised(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path, max_pending_rows=10)
    assert _append(w, "a", 4) and _append(w, "b", 4)
    assert _append(w, "c", 4) is False
    assert (w.pending, w.dropped) == (8, 4)
    w.close()
    assert w.written == 8 and w.pending == 0
    assert _append(w, "late", 1) is False  # closed: counted, not raised
    assert w.dropped == 5
    assert set(read_predictions(tmp_path)["request_id"]) == {"a", "b"}


def test_bad_append_never_raises_and_is_counted(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    assert w.append(request_id="x", ts=1.0, model="m", version=1, alias="", role="primary",
                    latency_ms=1.0, inputs={"a": [1, 2, 3]}, predictions=[1.0], proba=None)
    assert w.append(request_id="y", ts=1.0, model="m", version=1, alias="", role="primary",
                    latency_ms=1.0, inputs={}, predictions=None, proba=None) is False
    w.close()
    assert w.errors == 2 and w.written == 0 and w.dropped == 1
    assert "convert" in (w.last_error or "")


def test_failed_write_is_retried(tmp_path: Path) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the directory should be")
    w = PredictionLogWriter(blocked)
    _append(w, "a", 2)
    assert w.flush() == 0
    assert w.errors == 1 and w.pending == 2 and w.written == 0
    blocked.unlink()
    assert w.flush() == 2
    assert w.written == 2 and w.pending == 0


def test_mixed_types_in_a_feature_become_strings(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    w.append(request_id="a", ts=1.0, model="m", version=1, alias="", role="primary",
             latency_ms=1.0, inputs={"x": [1.0, "abc"]}, predictions=[1.0, 2.0], proba=None)
    w.close()
    assert list(read_predictions(tmp_path)["in.x"]) == ["1.0", "abc"]


def test_filters_since_version_alias_last_rows(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    now = time.time()
    _append(w, "old", 2, ts=now - 7200)
    w.flush()
    _append(w, "v1", 2, ts=now)
    _append(w, "v2", 2, ts=now, version=2, alias="challenger")
    w.flush()
    _append(w, "v2b", 3, ts=now, version=2, alias="challenger")
    w.close()
    assert set(read_predictions(tmp_path, since=now - 3600)["request_id"]) == {"v1", "v2", "v2b"}
    assert set(read_predictions(tmp_path, version=2)["request_id"]) == {"v2", "v2b"}
    assert set(read_predictions(tmp_path, alias="champion")["request_id"]) == {"old", "v1"}
    last = read_predictions(tmp_path, last_rows=4)
    assert list(last["request_id"]) == ["v2", "v2b", "v2b", "v2b"]
    some = read_predictions(tmp_path, columns=["in.alcohol", "nope"])
    assert set(some.columns) == {"request_id", "row", "ts", "in.alcohol"}
    assert read_predictions(tmp_path / "missing").empty


def test_labels_join_by_request_id_and_row(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    _append(w, "a", 2)
    _append(w, "b", 2)
    _append(w, "c", 1)
    w.close()
    assert write_labels(tmp_path, {"request_id": ["a"], "label": [1]}) == 1  # every row of a
    import pandas as pd

    assert write_labels(tmp_path, pd.DataFrame(
        {"request_id": ["b", "zzz"], "row": [1, 0], "label": ["x", "y"]})) == 2
    frame = read_predictions(tmp_path)
    got = dict(zip(zip(frame["request_id"], frame["row"], strict=True), frame["label"], strict=True))
    assert got == {("a", 0): "1", ("a", 1): "1", ("b", 0): None, ("b", 1): "x", ("c", 0): None}
    # A later label for the same row wins; the unknown request's label is kept, not lost.
    write_labels(tmp_path, {"request_id": ["b"], "row": [1], "label": ["z"]})
    frame = read_predictions(tmp_path)
    assert frame.loc[(frame.request_id == "b") & (frame.row == 1), "label"].item() == "z"
    labels = read_labels(tmp_path)
    assert labels is not None and "zzz" in set(labels["request_id"])


def test_label_data_without_request_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="missing request_id"):
        write_labels(tmp_path, {"id": ["a"], "label": [1]})
    with pytest.raises(InvalidArgumentError, match="row must hold non-negative integers"):
        write_labels(tmp_path, {"request_id": ["a"], "row": [-1], "label": [1]})
    assert not (tmp_path / "labels").exists()


def test_stale_tmp_files_are_ignored_and_removed_on_start(tmp_path: Path) -> None:
    w = PredictionLogWriter(tmp_path)
    _append(w, "a", 2)
    w.close()
    old = tmp_path / "part-0000000000001-1-000001.parquet.tmp"
    old.write_bytes(b"PAR1 half a file")
    fresh = tmp_path / "part-0000000000002-1-000002.parquet.tmp"
    fresh.write_bytes(b"PAR1 in flight")
    os.utime(old, (time.time() - 600, time.time() - 600))
    assert len(read_predictions(tmp_path)) == 2
    w2 = PredictionLogWriter(tmp_path)
    w2.start()
    w2.close()
    assert not old.exists() and fresh.exists()


_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from nbmlops.monitoring.predlog import PredictionLogWriter
    w = PredictionLogWriter(Path(sys.argv[1]), flush_rows=20000, flush_seconds=0.05,
                            max_pending_rows=10_000_000)
    w.start()
    rng = np.random.default_rng(0)
    i = 0
    while True:
        n = 50
        w.append(request_id=f"r{i}", ts=time.time(), model="m", version=1, alias="champion",
                 role="primary", latency_ms=1.0,
                 inputs={f"f{j}": rng.normal(size=n) for j in range(20)},
                 predictions=rng.normal(size=n), proba=None)
        i += 1
        if i % 200 == 0:
            print(w.written, flush=True)
            time.sleep(0.001)
    """
)


def test_sigkill_mid_stream_leaves_only_complete_files(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(log_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    written = 0
    deadline = time.monotonic() + 60
    try:
        while written < 60_000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert written >= 60_000, "the writer did not get going"
    parts = list_parts(log_dir)
    assert parts  # (a loaded machine may stage everything into one part before the kill)
    for part in parts:  # every complete file is a valid parquet file
        assert pq.read_metadata(part).num_rows > 0
    frame = read_predictions(log_dir)
    assert len(frame) >= written  # everything reported written survives, the last batch too
    sizes = frame.groupby("request_id")["row"].agg(["count", "min", "max"])
    assert (sizes["count"] == 50).all() and (sizes["max"] == 49).all()  # no torn request
    # At most the file in flight is left as .tmp, and readers never saw it.
    assert len(list(log_dir.glob("*.tmp"))) <= 1
