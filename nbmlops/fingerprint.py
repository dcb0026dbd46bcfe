"""Content fingerprints of files and in-memory data, bounded in bytes read and in time.

Small files are hashed whole (``sha256:...``). Larger files are sampled (``sampled:...``): the size,
the first and last blocks and evenly spaced blocks in between, so a multi-GB file costs a few MB
of reading. Results are cached by (path, size, mtime) so a file is hashed once per version.
DataFrames are fingerprinted from their shape, dtypes and a fixed sample of rows.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

__all__ = [
    "FULL_HASH_LIMIT",
    "fingerprint_file",
    "fingerprint_frame",
    "frame_schema",
    "FileFingerprintCache",
]

#: Files up to this size are hashed completely.
FULL_HASH_LIMIT = 64 * 1024 * 1024
_BLOCK = 256 * 1024
_SAMPLES = 32
_CHUNK = 1 << 20
#: Rows of a DataFrame that enter its fingerprint, at most.
FRAME_SAMPLE_ROWS = 2000
#: Columns described in a schema, at most.
SCHEMA_MAX_COLUMNS = 500


def _hash_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
            return "sha256:" + h.hexdigest()
        h.update(str(size).encode())
        step = (size - _BLOCK) // (_SAMPLES - 1)
        for i in range(_SAMPLES):
            fh.seek(min(i * step, size - _BLOCK))
            h.update(fh.read(_BLOCK))
        return "sampled:" + h.hexdigest()


class FileFingerprintCache:
    """LRU cache of file fingerprints keyed by (real path, size, mtime_ns)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._cache: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0

    def fingerprint(self, path: str | os.PathLike[str]) -> tuple[str, int] | None:
        """``(fingerprint, size)`` of a regular file, or ``None`` when it cannot be read."""
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        if not os.path.isfile(real):
            return None
        key = (real, st.st_size, st.st_mtime_ns)
        with self._lock:
            fp = self._cache.get(key)
            if fp is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return fp, st.st_size
        try:
            fp = _hash_file(real, st.st_size)
        except OSError:
            return None
        with self._lock:
            self.misses += 1
            self._cache[key] = fp
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return fp, st.st_size


_default_cache = FileFingerprintCache()


def fingerprint_file(path: str | os.PathLike[str]) -> tuple[str, int] | None:
    """Fingerprint a file through the process-wide cache."""
    return _default_cache.fingerprint(path)


def frame_schema(df: Any) -> dict[str, Any] | None:
    """Columns with dtypes and the shape of a pandas DataFrame/Series (cheap: no data read)."""
    try:
        shape = list(df.shape)
        if hasattr(df, "dtypes") and hasattr(df.dtypes, "items"):
            items = list(df.dtypes.items())
            cols = [{"name": str(n), "dtype": str(t)} for n, t in items[:SCHEMA_MAX_COLUMNS]]
            schema: dict[str, Any] = {"shape": shape, "columns": cols}
            if len(items) > SCHEMA_MAX_COLUMNS:
                schema["columns_truncated"] = len(items) - SCHEMA_MAX_COLUMNS
            return schema
        if hasattr(df, "dtype"):
            return {"shape": shape, "dtype": str(df.dtype), "name": str(getattr(df, "name", ""))}
    except Exception:
        return None
    return None


def fingerprint_frame(df: Any) -> str:
    """A sampled fingerprint of a DataFrame: shape, dtypes and a fixed sample of rows."""
    import numpy as np
    import pandas as pd

    h = hashlib.sha256()
    h.update(repr((tuple(df.shape), [str(c) for c in df.columns], [str(t) for t in df.dtypes])).encode())
    n = len(df)
    if n:
        idx = np.unique(np.linspace(0, n - 1, num=min(n, FRAME_SAMPLE_ROWS)).astype(np.int64))
        sample = df.iloc[idx]
        try:
            h.update(pd.util.hash_pandas_object(sample, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, dicts): fall back to their repr
            h.update(repr(sample.to_dict("list")).encode())
    return "frame:" + h.hexdigest()
