"""Pure parts of the server extension: stale marks, root confinement, query parsing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from nbmlops.errors import InvalidArgumentError
from nbmlops.server.params import QueryArgs
from nbmlops.server.paths import OutsideRootError, relative_to_root, resolve_in_root
from nbmlops.server.stale import stale_markers
from nbmlops.store.entities import Artifact, CellExecution


def cell(seq: int, cell_id: str, defined: Sequence[str] = (), used: Sequence[str] = (),
         reads: Sequence[Artifact] = (), writes: Sequence[Artifact] = ()) -> CellExecution:
    return CellExecution(id=seq + 100, run_id="r", seq=seq, cell_id=cell_id, execution_count=seq + 1,
                         source="", source_hash="", start_time=0.0, duration=0.0, status="ok",
                         error_name=None, error_value=None, vars_defined=list(defined),
                         vars_used=list(used), reads=list(reads), writes=list(writes))


def art(uri: str, fp: str) -> Artifact:
    return Artifact(id=1, uri=uri, kind="dataset", fingerprint=fp)


def test_a_variable_redefined_by_a_later_cell_makes_its_users_stale() -> None:
    marks = stale_markers([
        cell(0, "a", defined=["x"]),
        cell(1, "b", defined=["y"], used=["x"]),
        cell(2, "c", defined=["x"]),
    ])
    assert marks[1]["stale"][0] == {
        "kind": "variable", "how": "redefined", "name": "x", "uri": None, "by_seq": 2,
        "by_execution_count": 3}
    assert marks[0]["stale"] == [] and marks[2]["stale"] == []


def test_re_running_a_cell_supersedes_it_rather_than_making_it_stale() -> None:
    marks = stale_markers([
        cell(0, "a", defined=["x"]),
        cell(1, "b", defined=["x"], used=["x"]),  # x = x + 1
        cell(2, "b", defined=["x"], used=["x"]),  # the same cell again
    ])
    assert marks[1]["superseded_by"] == 2 and marks[2]["superseded_by"] is None
    assert marks[1]["stale"] == []  # redefined only by its own re-run
    assert marks[2]["stale"] == []


def test_a_file_rewritten_later_or_changed_on_disk_makes_its_readers_stale() -> None:
    cells = [
        cell(0, "a", reads=[art("/p/data.csv", "sha256:1")]),
        cell(1, "b", writes=[art("/p/data.csv", "sha256:2")]),
        cell(2, "c", reads=[art("/p/other.csv", "sha256:9")]),
        cell(3, "d", reads=[art("/p/gone.csv", "sha256:7")]),
    ]
    disk = {"/p/other.csv": ("sha256:10", "other.csv"), "/p/gone.csv": (None, "gone.csv")}
    marks = stale_markers(cells, lambda uri: disk.get(uri))
    assert [(r["how"], r["by_seq"]) for r in marks[0]["stale"]] == [("rewritten", 1)]
    assert [r["how"] for r in marks[2]["stale"]] == ["changed on disk"]
    assert [r["how"] for r in marks[3]["stale"]] == ["deleted"]
    assert stale_markers(cells)[2]["stale"] == []  # no disk check asked for


def test_paths_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "in").symlink_to(root / "sub")
    assert resolve_in_root(root, "sub/../sub/x.csv") == root.resolve() / "sub" / "x.csv"
    assert resolve_in_root(root, "in/x.csv") == root.resolve() / "sub" / "x.csv"
    assert resolve_in_root(root, "") == root.resolve()
    for bad in ("../x", "/etc/passwd", "sub/../../x", "out/secret", "out", "~/x", "C:/x", "\\\\srv\\x"):
        with pytest.raises(OutsideRootError):
            resolve_in_root(root, bad)
    with pytest.raises(InvalidArgumentError):
        resolve_in_root(root, "a\x00b")
    assert relative_to_root(root, str(root / "sub" / "x.csv")) == "sub/x.csv"
    assert relative_to_root(root, str(tmp_path / "outside" / "y")) is None
    assert relative_to_root(root, None) is None


def test_query_args_are_strict() -> None:
    q = QueryArgs({"limit": [b"5"], "1700000000000": [b""], "token": [b"t"]}, ["limit", "x"])
    assert q.integer("limit", 50, 1, 10) == 5
    assert q.text("x", "d") == "d"
    with pytest.raises(InvalidArgumentError, match="unknown query parameter"):
        QueryArgs({"limt": [b"5"]}, ["limit"])
    with pytest.raises(InvalidArgumentError, match="once"):
        QueryArgs({"limit": [b"5", b"6"]}, ["limit"]).integer("limit", 1, 1, 10)
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        QueryArgs({"x": [b"\xff"]}, ["x"]).text("x")
    with pytest.raises(InvalidArgumentError, match="one of"):
        QueryArgs({"x": [b"z"]}, ["x"]).choice("x", ("a", "b"))
    assert QueryArgs({"ids": [b"ab12,cd34", b"ef56"]}, ["ids"]).id_list("ids", most=3) == [
        "ab12", "cd34", "ef56"]
