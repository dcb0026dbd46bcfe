"""Content fingerprints: exact for small files, sampled and bounded for large ones; cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbmlops import fingerprint as fp_mod
from nbmlops.fingerprint import FileFingerprintCache, fingerprint_frame, frame_schema


def test_small_file_is_exact_sha256(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"hello world")
    fp, size = FileFingerprintCache().fingerprint(p)
    assert fp == "sha256:" + hashlib.sha256(b"hello world").hexdigest() and size == 11


def test_large_file_is_sampled_and_sensitive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp_mod, "FULL_HASH_LIMIT", 1024 * 1024)
    p = tmp_path / "big.bin"
    data = bytearray(os.urandom(16 * 1024 * 1024))
    p.write_bytes(data)
    first, size = FileFingerprintCache().fingerprint(p)
    assert first.startswith("sampled:") and size == len(data)
    data[0] ^= 0xFF  # a change in a sampled block changes the fingerprint
    p.write_bytes(data)
    assert FileFingerprintCache().fingerprint(p)[0] != first
    data.extend(b"x")  # so does a change of size
    p.write_bytes(data)
    assert FileFingerprintCache().fingerprint(p)[0] != first


def test_cache_hashes_a_file_version_once(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("a,b\n1,2\n")
    cache = FileFingerprintCache()
    one = cache.fingerprint(p)
    two = cache.fingerprint(p)
    assert one == two and (cache.misses, cache.hits) == (1, 1)
    p.write_text("a,b\n1,3\n")
    os.utime(p, ns=(1, 1))  # a different mtime/content is a new version
    assert cache.fingerprint(p) != one and cache.misses == 2


def test_missing_or_directory_gives_none(tmp_path: Path) -> None:
    cache = FileFingerprintCache()
    assert cache.fingerprint(tmp_path / "nope") is None
    assert cache.fingerprint(tmp_path) is None


def test_frame_fingerprint_tracks_content_and_schema() -> None:
    df = pd.DataFrame({"a": np.arange(100_000), "b": np.linspace(0, 1, 100_000)})
    base = fingerprint_frame(df)
    assert base == fingerprint_frame(df.copy())
    changed = df.copy()
    changed.iloc[0, 0] = -1  # first row is always sampled
    assert fingerprint_frame(changed) != base
    assert fingerprint_frame(df.astype({"a": "float64"})) != base
    schema = frame_schema(df)
    assert schema == {"shape": [100_000, 2], "columns": [{"name": "a", "dtype": "int64"},
                                                        {"name": "b", "dtype": "float64"}]}


def test_frame_schema_caps_columns() -> None:
    wide = pd.DataFrame(np.zeros((2, 600)))
    schema = frame_schema(wide)
    assert len(schema["columns"]) == 500 and schema["columns_truncated"] == 100
