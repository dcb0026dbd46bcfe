"""Monitoring: the store's monitor_results (SQLite and PostgreSQL), ``monitor()`` on real
registered scikit-learn models and real prediction logs, the HTML report, ``nbmlops monitor``
subprocesses and their bad inputs."""

from __future__ import annotations

import math

import pytest

from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.store import Store

from .test_store import location, store  # noqa: F401


# -- store.monitoring ---------------------------------------------------------------------------


def test_monitor_results_record_list_get(store: Store) -> None:  # noqa: F811
    a = store.monitoring.record(model="wine", alias="champion", version=1, score=0.0,
                                drifted=False, rows=100, labeled_rows=10, window="1h",
                                threshold=0.2, report={"features": [{"name": "x", "psi": 0.01}]})
    b = store.monitoring.record(model="wine", alias="champion", version=2, score=0.7,
                                drifted=True, rows=50, source="trigger:retrain",
                                report={"score": math.inf, "nested": [math.nan, 1.5]})
    c = store.monitoring.record(model="iris", version=3, score=math.nan, drifted=False, rows=1)
    assert (a.model, a.alias, a.version, a.window, a.threshold, a.drifted) == \
        ("wine", "champion", 1, "1h", 0.2, False)
    assert b.report == {"score": None, "nested": [None, 1.5]}  # JSON without NaN/Infinity
    assert c.score == 0.0 and c.alias is None and c.source == "cli"
    assert [r.id for r in store.monitoring.list()] == [c.id, b.id, a.id]
    assert [r.id for r in store.monitoring.list("wine")] == [b.id, a.id]
    assert [r.id for r in store.monitoring.list("wine", version=1)] == [a.id]
    assert [r.id for r in store.monitoring.list(limit=1)] == [c.id]
    light = store.monitoring.list("wine", with_report=False)
    assert light[0].report == {} and light[0].score == 0.7 and light[0].source == "trigger:retrain"
    got = store.monitoring.get(a.id)
    assert got == a and got.report["features"][0]["psi"] == 0.01
    with pytest.raises(NotFoundError, match="no monitor result 9999"):
        store.monitoring.get(9999)
    with pytest.raises(InvalidArgumentError):
        store.monitoring.list(limit=0)
