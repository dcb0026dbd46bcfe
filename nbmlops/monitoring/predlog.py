"""The prediction log: served predictions (and later labels) as parquet files on local disk.

Layout under ``store.location.predictions_dir / NAME /`` (see ``docs/monitoring.md``):

- ``part-<ms>-<pid>-<seq>.parquet``: one file per flush of a :class:`PredictionLogWriter`, one row
  per predicted row. Written as ``.parquet.tmp`` then renamed (atomic), so a killed writer leaves
  at most a ``.tmp`` file, which readers ignore and the next writer removes once it is a minute old.
- ``labels/part-<ms>-<pid>-<seq>.parquet``: ground truth joined later by ``request_id`` (and
  ``row``; a null row labels every row of the request), written by :func:`write_labels`.

The writer's :meth:`~PredictionLogWriter.append` is what a request pays: it puts a reference to
the request's columns on a list under a lock and returns. A daemon thread builds the Arrow table
and writes it. pyarrow is imported by the writer thread and the readers, never at import time.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmlops.errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "INPUT_PREFIX",
    "LABELS_DIR",
    "PredictionLogWriter",
    "list_parts",
    "read_labels",
    "read_predictions",
    "write_labels",
]

log = logging.getLogger(__name__)

INPUT_PREFIX = "in."
LABELS_DIR = "labels"
_TMP_SUFFIX = ".parquet.tmp"
_STALE_TMP_SECONDS = 60.0

#: Columns every prediction file has, in order (inputs follow as ``in.<feature>``).
BASE_COLUMNS = (
    "request_id",
    "row",
    "ts",
    "model",
    "version",
    "alias",
    "role",
    "latency_ms",
    "prediction",
    "proba",
)

#: A column of values: a sequence, or a 1-d array (numpy, pandas) with ``len`` and ``tolist``.
Column = Sequence[Any] | Any

_seq = itertools.count(1)
_seq_lock = threading.Lock()


def _part_name(suffix: str = ".parquet") -> str:
    with _seq_lock:
        seq = next(_seq)
    return f"part-{int(time.time() * 1000):013d}-{os.getpid()}-{seq % 1_000_000:06d}{suffix}"


def _write_atomic(table: pa.Table, directory: Path) -> Path:
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / _part_name()
    tmp = final.with_name(final.name + ".tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return final


def _remove_stale_tmp(directory: Path, older_than: float = _STALE_TMP_SECONDS) -> int:
    """Delete ``*.parquet.tmp`` files a killed writer left (only those older than a minute, so a
    live writer's file in flight is never touched)."""
    removed = 0
    now = time.time()
    for sub in (directory, directory / LABELS_DIR):
        try:
            entries = list(os.scandir(sub))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith(_TMP_SUFFIX):
                continue
            try:
                if now - entry.stat().st_mtime > older_than:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------------------------
# writer


class _Chunk:
    """One append: a request's columns, kept by reference until the writer thread converts it."""

    __slots__ = (
        "rows",
        "request_id",
        "ts",
        "model",
        "version",
        "alias",
        "role",
        "latency_ms",
        "inputs",
        "predictions",
        "proba",
        "n",
    )

    def __init__(
        self,
        request_id: Any,  # str, or list[str] per row (append_rows); likewise ts/alias/role/latency
        ts: Any,
        model: str,
        version: int,
        alias: Any,
        role: Any,
        latency_ms: Any,
        inputs: Mapping[str, Sequence[Any]],
        predictions: Sequence[Any],
        proba: Sequence[Sequence[float]] | None,
        n: int,
    ) -> None:
        self.request_id = request_id
        self.ts = ts
        self.model = model
        self.version = version
        self.alias = alias
        self.role = role
        self.latency_ms = latency_ms
        self.inputs = inputs
        self.predictions = predictions
        self.proba = proba
        self.n = n
        #: row index of each row when the chunk holds several requests (``append_rows``): then
        #: request_id, ts, alias, role and latency_ms are per-row lists too
        self.rows: list[int] | None = None


def _as_list(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    if tolist is not None:
        out = tolist()
        return out if isinstance(out, list) else [out]
    return list(values)


def _is_float(value: Any) -> bool:
    return isinstance(value, float) or type(value).__name__ in ("float64", "float32", "float16")


def _column_array(values: list[Any]) -> pa.Array:
    """An Arrow array from Python values: the inferred type where the values agree, else every
    non-null value as its string (a request may mix types; the log never refuses a row)."""
    import pyarrow as pa

    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def build_table(chunks: Sequence[_Chunk]) -> pa.Table:
    """The Arrow table of a batch of appends (the writer thread's work)."""
    import pyarrow as pa

    total = sum(c.n for c in chunks)
    request_id: list[str] = []
    row: list[int] = []
    ts: list[float] = []
    model: list[str] = []
    version: list[int] = []
    alias: list[str] = []
    role: list[str] = []
    latency: list[float] = []
    predictions: list[Any] = []
    proba: list[list[float] | None] = []
    feature_names: dict[str, None] = {}
    for c in chunks:
        for name in c.inputs:
            feature_names.setdefault(str(name), None)
    features: dict[str, list[Any]] = {name: [] for name in feature_names}
    for c in chunks:
        n = c.n
        if c.rows is not None:  # several requests in one chunk: per-row fields
            request_id.extend(c.request_id)
            row.extend(c.rows)
            ts.extend(c.ts)
            alias.extend(c.alias)
            role.extend(c.role)
            latency.extend(c.latency_ms)
        else:
            request_id.extend([c.request_id] * n)
            row.extend(range(n))
            ts.extend([c.ts] * n)
            alias.extend([c.alias] * n)
            role.extend([c.role] * n)
            latency.extend([c.latency_ms] * n)
        model.extend([c.model] * n)
        version.extend([c.version] * n)
        preds = _as_list(c.predictions)
        if len(preds) != n:
            raise ValueError(f"{len(preds)} predictions for {n} input rows")
        predictions.extend(preds)
        if c.proba is None:
            proba.extend([None] * n)
        else:
            rows = _as_list(c.proba)
            if len(rows) != n:
                raise ValueError(f"{len(rows)} probability rows for {n} input rows")
            proba.extend([None if r is None else [float(p) for p in r] for r in rows])
        present = {str(k): v for k, v in c.inputs.items()}
        for name, values in features.items():
            if name in present:
                got = _as_list(present[name])
                if len(got) != n:
                    raise ValueError(f"input {name!r} has {len(got)} values for {n} rows")
                values.extend(got)
            else:
                values.extend([None] * n)
    # Regressors predict floats; classifiers' labels (ints, strings, bools) are kept as strings.
    if all(_is_float(p) or p is None for p in predictions):
        pred_array = pa.array(predictions, type=pa.float64(), from_pandas=True)
    else:
        pred_array = pa.array([None if p is None else str(p) for p in predictions], pa.string())
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(request_id, pa.string()),
        "row": pa.array(row, pa.int32()),
        "ts": pa.array(ts, pa.float64()),
        "model": pa.array(model, pa.string()),
        "version": pa.array(version, pa.int64()),
        "alias": pa.array(alias, pa.string()),
        "role": pa.array(role, pa.string()),
        "latency_ms": pa.array(latency, pa.float64()),
        "prediction": pred_array,
        "proba": pa.array(proba, pa.list_(pa.float64())),
    }
    for name, values in features.items():
        columns[INPUT_PREFIX + name] = _column_array(values)
    table = pa.table(columns)
    assert table.num_rows == total
    return table


#: how often the writer thread converts queued rows to Arrow (a file is still written every
#: ``flush_seconds`` or ``flush_rows``)
STAGE_SECONDS = 0.1


class PredictionLogWriter:
    """Appends predictions to the log from a background thread; a request never waits on disk.

    ``append`` never blocks on I/O and never raises: when more than ``max_pending_rows`` rows are
    waiting it returns False and counts the rows in ``dropped``. The thread writes a file every
    ``flush_rows`` rows or ``flush_seconds`` seconds, whichever comes first; a failed write is
    retried at the next flush (rows beyond the bound are dropped meanwhile, counted), a batch that
    cannot be converted is dropped and counted in ``errors``. ``close`` flushes what is queued.
    """

    def __init__(
        self,
        directory: Path,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 2.0,
        max_pending_rows: int = 200_000,
    ) -> None:
        self.directory = Path(directory)
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = max(0.01, float(flush_seconds))
        self.max_pending_rows = max(1, int(max_pending_rows))
        self.written = 0
        self.dropped = 0
        self.pending = 0
        self.errors = 0
        self.last_error: str | None = None
        self.files = 0
        self._chunks: list[_Chunk] = []
        self._staged: list[pa.Table] = []  # converted, not yet written (the writer thread's)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._first_pending_at: float | None = None
        self._thread: threading.Thread | None = None

    # -- the request path ---------------------------------------------------------------------

    def append(
        self,
        *,
        request_id: str,
        ts: float,
        model: str,
        version: int,
        alias: str,
        role: str,
        latency_ms: float,
        inputs: Mapping[str, Column],
        predictions: Column,
        proba: Column | None,
    ) -> bool:
        try:
            return self._enqueue(_Chunk(request_id, ts, model, version, alias, role, latency_ms,
                                        inputs, predictions, proba, len(predictions)))
        except Exception as exc:  # never raise into a request
            self.errors += 1
            self.last_error = f"append: {exc}"
            return False

    def append_rows(
        self,
        *,
        request_ids: Sequence[str],
        rows: Sequence[int],
        ts: Sequence[float],
        model: str,
        version: int,
        aliases: Sequence[str],
        roles: Sequence[str],
        latency_ms: Sequence[float],
        inputs: Mapping[str, Column],
        predictions: Column,
        proba: Column | None,
    ) -> bool:
        """Several requests of one version at once (a micro-batch): one entry per row in every
        sequence. Cheaper for the writer than one :meth:`append` per request; same guarantees."""
        try:
            n = len(predictions)
            fields = (request_ids, rows, ts, aliases, roles, latency_ms)
            if any(len(f) != n for f in fields):
                raise ValueError(f"per-row fields of append_rows must have {n} entries")
            chunk = _Chunk(list(request_ids), list(ts), model, version, list(aliases),
                           list(roles), list(latency_ms), inputs, predictions, proba, n)
            chunk.rows = list(rows)
            return self._enqueue(chunk)
        except Exception as exc:  # never raise into a request
            self.errors += 1
            self.last_error = f"append: {exc}"
            return False

    def _enqueue(self, chunk: _Chunk) -> bool:
        """Queue ``chunk`` unless the bound is reached (then count its rows as dropped)."""
        n = chunk.n
        with self._lock:
            if self._stop or self.pending + n > self.max_pending_rows:
                self.dropped += n
                return False
            self._chunks.append(chunk)
            self.pending += n
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
            full = self.pending >= self.flush_rows
        if full:
            self._wake.set()
        return True

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _remove_stale_tmp(self.directory)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"start: {exc}"
        self._thread = threading.Thread(target=self._run, name="nbmlops-predlog", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        else:
            self.flush()

    def __enter__(self) -> PredictionLogWriter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "pending": self.pending}

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                first = self._first_pending_at
                stop = self._stop
            if stop:
                self.flush()
                return
            timeout = STAGE_SECONDS
            if first is not None:
                timeout = min(timeout, max(0.0, self.flush_seconds - (time.monotonic() - first)))
            self._wake.wait(timeout)
            self._wake.clear()
            self._stage()
            with self._lock:
                due = self._first_pending_at is not None and (
                    self.pending >= self.flush_rows
                    or time.monotonic() - self._first_pending_at >= self.flush_seconds
                )
                stop = self._stop
            if due and not stop:
                self.flush()

    def _stage(self) -> None:
        """Convert what is queued into a small Arrow table now. The Python-object work of a
        file is done in slices of about ``STAGE_SECONDS`` of traffic, so the writer never holds
        the GIL for long at once (one 30 ms conversion every 2 s showed in the service's p99)."""
        with self._lock:
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return
        rows = sum(c.n for c in chunks)
        try:
            table = build_table(chunks)
        except Exception as exc:
            log.warning("prediction log: dropped %d rows that could not be converted: %s",
                        rows, exc)
            with self._lock:
                self.pending -= rows
                self.dropped += rows
                self.errors += 1
                self.last_error = f"convert: {exc}"
            return
        with self._lock:
            self._staged.append(table)

    def flush(self) -> int:
        """Write everything queued now (the writer thread calls this; so may a caller with no
        thread). Returns the number of rows written."""
        self._stage()
        with self._lock:
            tables, self._staged = self._staged, []
            self._first_pending_at = time.monotonic() if self._chunks else None
        if not tables:
            return 0
        batch_rows = sum(t.num_rows for t in tables)
        try:
            _write_atomic(_concat(tables), self.directory)
        except Exception as exc:
            log.warning("prediction log: write failed (kept for retry): %s", exc)
            with self._lock:
                self.errors += 1
                self.last_error = f"write: {exc}"
                self._staged = tables + self._staged
                if self._first_pending_at is None:
                    self._first_pending_at = time.monotonic()
            return 0
        with self._lock:
            self.pending -= batch_rows
            self.written += batch_rows
            self.files += 1
        return batch_rows


# --------------------------------------------------------------------------------------------
# readers


def list_parts(directory: Path) -> list[Path]:
    """The complete data files of a log (``.tmp`` ignored), oldest first."""
    try:
        names = [e.name for e in os.scandir(directory) if e.is_file()]
    except OSError:
        return []
    return [directory / n for n in sorted(n for n in names if n.startswith("part-")
                                          and n.endswith(".parquet"))]


def _part_ms(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Columns whose types disagree between files (a feature logged as int in one, string in
        # another) are read as strings rather than refusing the whole log.
        types: dict[str, set[pa.DataType]] = {}
        for t in tables:
            for f in t.schema:
                types.setdefault(f.name, set()).add(f.type)
        clash = {n for n, ts in types.items() if len({str(x) for x in ts} - {"null"}) > 1}
        fixed = []
        for t in tables:
            for name in clash & set(t.column_names):
                i = t.column_names.index(name)
                col = t.column(i)
                if pa.types.is_list(col.type):
                    continue
                t = t.set_column(i, name, col.cast(pa.string()))
            fixed.append(t)
        return pa.concat_tables(fixed, promote_options="permissive")


def _read_part(path: Path, columns: list[str] | None, filters: list[Any] | None) -> pa.Table | None:
    import pyarrow.parquet as pq

    try:
        if columns is not None:
            names = set(pq.read_schema(path).names)
            cols = [c for c in columns if c in names]
        else:
            cols = None
        return pq.read_table(path, columns=cols, filters=filters or None)
    except Exception as exc:  # a foreign or damaged file never hides the rest of the log
        log.warning("prediction log: skipped unreadable file %s: %s", path, exc)
        return None


def _filter(table: pa.Table, *, since: float | None, version: int | None, alias: str | None,
            role: str | None) -> pa.Table:
    """The rows of ``table`` that pass the filters (one vectorized mask)."""
    import pyarrow.compute as pc

    mask = None
    for name, op, value in (("ts", "ge", since), ("version", "eq", version),
                            ("alias", "eq", alias), ("role", "eq", role)):
        if value is None:
            continue
        if name not in table.column_names:
            return table.slice(0, 0)
        col = table.column(name)
        if name == "version":
            value = int(value)
        term = pc.greater_equal(col, float(value)) if op == "ge" else pc.equal(col, value)
        mask = term if mask is None else pc.and_(mask, term)
    if mask is None:
        return table
    return table.filter(pc.fill_null(mask, False))


def _scan(parts: list[Path], want: list[str] | None) -> pa.Table | None:
    """All files in one multi-threaded Arrow dataset scan (much faster than file by file), with
    the union of the first and the last file's columns (a service writes one schema; a column
    missing from a file reads as null), or None when the files' types disagree or a file cannot
    be read: the caller then reads file by file."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    try:
        schemas = [pq.read_schema(parts[0])]
        if len(parts) > 1:
            schemas.append(pq.read_schema(parts[-1]))
        schema = pa.unify_schemas(schemas) if len(schemas) > 1 else schemas[0]
        names = set(schema.names)
        cols = [c for c in want if c in names] if want is not None else None
        dataset = ds.dataset([str(p) for p in parts], schema=schema, format="parquet")
        return dataset.to_table(columns=cols)
    except Exception as exc:  # noqa: BLE001 - the file-by-file path says which file and why
        log.debug("prediction log: dataset scan refused (%s); reading file by file", exc)
        return None


def read_predictions(
    directory: Path,
    *,
    since: float | None = None,
    last_rows: int | None = None,
    version: int | None = None,
    alias: str | None = None,
    role: str | None = "primary",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The logged rows as a DataFrame (oldest first), filtered; labels joined as column
    ``label`` when the log has any. ``since`` is epoch seconds (rows with ``ts >= since``);
    ``last_rows`` keeps the newest N rows after the other filters."""
    import pandas as pd

    directory = Path(directory)
    parts = list_parts(directory)
    if since is not None:
        # A file is named by its flush time, which is after every request it holds.
        cutoff_ms = int(since * 1000)
        parts = [p for p in parts if _part_ms(p) >= cutoff_ms]
    want: list[str] | None = None
    read: list[str] | None = None
    if columns is not None:
        want = list(dict.fromkeys(["request_id", "row", "ts", *columns]))
        used = [n for n, v in (("version", version), ("alias", alias), ("role", role))
                if v is not None]
        read = list(dict.fromkeys([*want, *used]))

    def keep(t: pa.Table) -> pa.Table:
        t = _filter(t, since=since, version=version, alias=alias, role=role)
        if want is not None:
            t = t.select([c for c in t.column_names if c in want])
        return t

    table: pa.Table | None = None
    if last_rows is not None:
        tables: list[pa.Table] = []
        got = 0
        for path in reversed(parts):
            t = _read_part(path, read, None)
            if t is None or t.num_rows == 0:
                continue
            t = keep(t)
            if t.num_rows == 0:
                continue
            tables.append(t)
            got += t.num_rows
            if got >= last_rows:
                break
        tables.reverse()
        if tables:
            table = _concat(tables)
            if table.num_rows > last_rows:
                table = table.slice(table.num_rows - last_rows)
    elif parts:
        scanned = _scan(parts, read)
        if scanned is None:  # files that disagree or a damaged one: file by file
            tables = [t for t in (_read_part(p, read, None) for p in parts)
                      if t is not None and t.num_rows]
            scanned = _concat(tables) if tables else None
        if scanned is not None:
            table = keep(scanned)
    if table is None or table.num_rows == 0:
        names = want or (table.column_names if table is not None else BASE_COLUMNS)
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in names})
    else:
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
    labels = read_labels(directory)
    if labels is not None:
        frame = _join_labels(frame, labels)
    return frame


def read_labels(directory: Path) -> pd.DataFrame | None:
    """Every label written for a log (latest per request/row wins), or None when there is none."""
    import pyarrow as pa

    parts = list_parts(Path(directory) / LABELS_DIR)
    tables = [t for t in (_read_part(p, None, None) for p in parts) if t is not None]
    if not tables:
        return None
    frame = _concat(tables).cast(
        pa.schema([("request_id", pa.string()), ("row", pa.int32()), ("label", pa.string()),
                   ("ts", pa.float64())])
    ).to_pandas()
    frame = frame.sort_values("ts", kind="stable")
    return frame.drop_duplicates(["request_id", "row"], keep="last")


def _join_labels(frame: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if frame.empty or "request_id" not in frame.columns:
        frame["label"] = pd.Series(dtype=object)
        return frame
    per_row = labels[labels["row"].notna()]
    whole = labels[labels["row"].isna()]
    label = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if not whole.empty:
        mapping = whole.set_index("request_id")["label"]
        label = frame["request_id"].map(mapping).astype(object)
    if not per_row.empty and "row" in frame.columns:
        keys = pd.MultiIndex.from_arrays([per_row["request_id"], per_row["row"].astype("int64")])
        lookup = pd.Series(per_row["label"].to_numpy(), index=keys)
        mi = pd.MultiIndex.from_arrays([frame["request_id"], frame["row"].astype("int64")])
        specific = lookup.reindex(mi).to_numpy()
        has = pd.notna(specific)
        label = label.where(~has, specific)
    frame["label"] = label.where(label.notna(), None)
    return frame


def _label_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def write_labels(directory: Path, frame: Any) -> int:
    """Append ground-truth labels to a log (``request_id``, ``label``, optional ``row``); returns
    the number of label rows written. Labels whose request is not (yet) logged are kept too."""
    import pandas as pd
    import pyarrow as pa

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise InvalidArgumentError(
            f"label data needs columns request_id and label; missing {', '.join(missing)} "
            f"(has: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    if frame.empty:
        return 0
    ids = frame["request_id"]
    if ids.isna().any():
        raise InvalidArgumentError(
            f"label data has {int(ids.isna().sum())} rows without a request_id")
    if "row" in frame.columns:
        rows = pd.to_numeric(frame["row"], errors="coerce")
        bad = frame["row"].notna() & (rows.isna() | (rows < 0) | (rows != rows.round()))
        if bad.any():
            raise InvalidArgumentError(
                f"label data column row must hold non-negative integers "
                f"(first bad value: {frame['row'][bad].iloc[0]!r})")
        row_values = [None if pd.isna(r) else int(r) for r in rows]
    else:
        row_values = [None] * len(frame)
    now = time.time()
    table = pa.table({
        "request_id": pa.array([str(v) for v in ids], pa.string()),
        "row": pa.array(row_values, pa.int32()),
        "label": pa.array([_label_text(v) for v in frame["label"].tolist()], pa.string()),
        "ts": pa.array([now] * len(frame), pa.float64()),
    })
    _write_atomic(table, Path(directory) / LABELS_DIR)
    return table.num_rows
