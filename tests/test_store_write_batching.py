"""``Store.record_cells`` writes a batch with a fixed number of statements (one per table, the
artifacts of every file read or written looked up together), and what it stores is what writing
the records one by one would store: variable edges to cells of earlier batches, one artifact row
per (uri, fingerprint) gaining the schema and the specific kind a later read names, params and
metrics on their cells. On SQLite and on the session's throwaway PostgreSQL (tests/_postgres.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from nbmlops.store import CellRecord, Estimator, MetricValue, Store

from .test_store import cell, location, read, store, wrote  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


def table(st: Store, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(st.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:  # noqa: F811 - the store fixture
    """The SQL statements the store sends (executemany counts once: one round trip)."""
    seen: list[str] = []
    engine = store._sessions.engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_variable_edges_reach_cells_of_earlier_batches(store: Store) -> None:  # noqa: F811
    rid = store.create_run(name="r")
    first = store.record_cells(rid, [cell(1, "a = 1", vars_defined=["a"]),
                                     cell(2, "def f(): pass", vars_defined=["f"])])
    later = store.record_cells(rid, [
        cell(3, "b = f(a)", vars_used=["a", "f"], var_sources={"a": 1, "f": 2},
             code_vars=["f"], vars_defined=["b"]),
        cell(4, "c = b + ghost", vars_used=["b", "ghost"],
             var_sources={"b": 3, "ghost": 99}),  # no cell 99: no edge, no error
    ])
    edges = table(store, "SELECT src_cell_execution_id, dst_cell_execution_id, variable, kind "
                         "FROM variable_edges ORDER BY id")
    assert edges == [(first[0], later[0], "a", "data"), (first[1], later[0], "f", "code"),
                     (later[0], later[1], "b", "data")]
    assert [c.seq for c in store.cell_executions(rid)] == [1, 2, 3, 4]


def test_one_artifact_row_per_version_within_and_across_batches(store: Store) -> None:  # noqa: F811
    rid = store.create_run(name="r")
    schema = {"columns": {"x": "int64"}}
    store.record_cells(rid, [
        cell(1, "df = load()", io=[read("/d/x.csv", "fp1", kind="file")]),
        cell(2, "df2 = load()", io=[replace(read("/d/x.csv", "fp1"), schema=schema),
                                    wrote("/d/y.csv", "fp2")]),
        cell(3, "again = load()", io=[read("/d/x.csv", "fp1", kind="file"),
                                      read("/d/x.csv", "fp0")]),  # another version: its own row
    ])
    store.record_cells(rid, [
        cell(4, "df3 = load()", io=[replace(read("/d/y.csv", "fp2", kind="file"), schema=schema),
                                    read("/d/z.csv", "fp3", kind="model")]),
    ])
    rows = table(store, "SELECT uri, fingerprint, kind, schema FROM artifacts ORDER BY uri, fingerprint")
    decoded = [(u, f, k, json.loads(s) if isinstance(s, str) else s) for u, f, k, s in rows]
    assert decoded == [
        ("/d/x.csv", "fp0", "dataset", None),
        ("/d/x.csv", "fp1", "dataset", schema),  # the later read's kind and schema
        ("/d/y.csv", "fp2", "dataset", schema),  # a 'file' read does not undo 'dataset'
        ("/d/z.csv", "fp3", "model", None),
    ]
    cells = store.cell_executions(rid)
    x1 = {a.id for c in cells for a in c.reads if a.fingerprint == "fp1"}
    assert len(x1) == 1
    assert [len(c.reads) + len(c.writes) for c in cells] == [1, 2, 2, 2]
    assert cells[1].writes[0].uri == cells[3].reads[0].uri == "/d/y.csv"
    assert cells[1].writes[0].id == cells[3].reads[0].id


def _batch(first: int, n: int, params: bool = True) -> list[CellRecord]:
    return [
        cell(seq, f"m{seq} = fit(x{seq})", vars_defined=[f"m{seq}"],
             var_sources={f"m{seq - 1}": seq - 1} if seq > 1 else {},
             io=[read(f"/d/part-{seq}.parquet", f"fp{seq}"), wrote(f"/d/out-{seq}.csv", f"o{seq}")],
             estimators=[Estimator(variable=f"m{seq}", class_name="sklearn.linear_model.Ridge",
                                   params={"alpha": 1.0}, fitted_on=[f"x{seq}"])],
             metrics=[MetricValue("score", seq / 100, cell_seq=seq),
                      MetricValue("loss", float("nan"), cell_seq=seq)],  # left out, cell kept
             params={"alpha": str(seq)} if params else {})
        for seq in range(first, first + n)
    ]


def test_statements_per_batch_do_not_grow_with_its_size(
    store: Store, statements: list[str],  # noqa: F811
) -> None:
    rid = store.create_run(name="r")
    store.record_cells(rid, _batch(1, 2, params=False))  # later batches find earlier cells
    counts = []
    for first, n in ((3, 3), (6, 40)):
        statements.clear()
        store.record_cells(rid, _batch(first, n, params=False))
        counts.append(len(statements))
    assert counts[0] == counts[1], statements
    cells = store.cell_executions(rid)
    assert len(cells) == 45
    assert all(len(c.reads) == 1 and len(c.writes) == 1 and len(c.estimators) == 1 for c in cells)
    assert [m.key for c in cells for m in c.metrics] == ["score"] * 45
    assert store.metric_history(rid, "score")[-1].value == pytest.approx(0.45)
    assert len(table(store, "SELECT id FROM variable_edges")) == 44


def test_replaying_a_batch_with_skip_existing_writes_nothing_twice(store: Store) -> None:  # noqa: F811
    rid = store.create_run(name="r")
    batch = _batch(1, 5)
    ids = store.record_cells(rid, batch)
    assert store.record_cells(rid, batch, skip_existing=True) == []
    assert len(store.record_cells(rid, _batch(1, 7), skip_existing=True)) == 2
    cells = store.cell_executions(rid)
    assert [c.id for c in cells[:5]] == ids and len(cells) == 7
    # params are the run's: the last cell that set one owns it
    assert [c.params for c in cells] == [{}] * 6 + [{"alpha": "7"}]
    assert store.get_run(rid).params == {"alpha": "7"}
    assert [m.key for c in cells for m in c.metrics] == ["score"] * 7
    assert len(table(store, "SELECT id FROM artifacts")) == 14
    assert len(table(store, "SELECT id FROM artifact_edges")) == 14
    assert len(table(store, "SELECT id FROM variable_edges")) == 6
