"""End to end: the Monitoring tab of the MLOps panel in a real `jupyter lab`, headless Debian
Chromium, at JupyterLab's default sidebar width. The prediction log is written with the real
writer (``PredictionLogWriter``), the heartbeat as ``nbmlops serve`` writes it, monitor results
through ``store.monitoring`` and a drift trigger's fire through ``store.schedules``; one feature
is named like an HTML tag and must show as text.

Skipped only when /usr/bin/chromium is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbmlops.store import Store

from .lab import CHROMIUM, LabPage, LabServer, open_lab_page

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("pyarrow")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.timeout(300)
LABEXT = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbmlops" / "package.json"
XSS = "<img src=x onerror=alert(1)>"
VIEW = "#nbmlops-panel .nbmlops-monitoring-view"
ROUTES = [{"alias": "champion", "version": 1, "role": "primary", "weight": 0.9},
          {"alias": "challenger", "version": 2, "role": "primary", "weight": 0.1}]


def write_heartbeat(directory: Path, updated_at: float) -> None:
    folder = directory / "_services"
    folder.mkdir(parents=True, exist_ok=True)
    beat = {"model": "wine", "pid": 4242, "host": "box", "port": 8765,
            "url": "http://127.0.0.1:8765", "started_at": updated_at - 600,
            "updated_at": updated_at, "routes": ROUTES, "requests": 123, "errors": 0,
            "log": {"written": 150, "dropped": 0, "pending": 0}}
    tmp = folder / "box-4242.json.tmp"
    tmp.write_text(json.dumps(beat))
    os.replace(tmp, folder / "box-4242.json")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    assert LABEXT.exists(), (
        f"the lab extension is not installed in this environment ({LABEXT} missing): run "
        "`pip install -e .` (builds it) and `make labext`, see docs/panel.md")
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    from nbmlops.monitoring.predlog import PredictionLogWriter
    from nbmlops.registry import register

    base = tmp_path_factory.mktemp("lab-monitoring")
    root = base / "root"
    root.mkdir()
    X, y = load_wine(return_X_y=True)
    d = root / ".nbmlops"
    now = time.time()
    with Store.open(f"sqlite:///{d / 'nbmlops.db'}", d / "artifacts") as store:
        register(store, LogisticRegression(max_iter=5000).fit(X, y), "wine", namespace={})
        for i, (score, psi) in enumerate([(0.02, 0.01), (0.12, 0.08), (0.45, 0.41)]):
            store.monitoring.record(
                model="wine", alias="champion", version=1, source="cli", window="1h",
                rows=200, score=score, drifted=score > 0.2, threshold=0.2,
                created_at=now - 1800 + 600 * i,
                report={"features": [
                    {"name": "alcohol", "psi": score, "drifted": score > 0.2},
                    {"name": XSS, "psi": psi, "drifted": psi > 0.2}]})
        sched = store.schedules.add(
            "retrain-on-drift-wine", kind="drift", target=str(root / "retrain.yaml"),
            target_kind="pipeline", watch="wine@champion", params={}, overlap="queue",
            catchup="none", state={"config": {"threshold": 0.2, "window": "1h", "min_rows": 100}})
        store.schedules.fire_many(sched.id, [{"status": "skipped", "message": "test", "reason": {
            "kind": "drift", "model": "wine", "alias": "champion", "version": 1, "score": 0.45,
            "features": {"alcohol": 0.45, XSS: 0.41}}}])
    model_dir = d / "predictions" / "wine"
    writer = PredictionLogWriter(model_dir, flush_seconds=60.0)
    writer.start()
    for i in range(150):  # one request every ~20 s over the last 50 minutes, 90/10 split
        alias, version = ("challenger", 2) if i % 10 == 0 else ("champion", 1)
        writer.append(request_id=f"r{i}", ts=now - 20 * i - 5, model="wine", version=version,
                      alias=alias, role="primary", latency_ms=2.0,
                      inputs={"alcohol": [13.0], XSS: [1.0]}, predictions=["1"], proba=None)
    writer.close()
    write_heartbeat(model_dir, time.time())
    stop = threading.Event()

    def beat() -> None:  # a live service rewrites its heartbeat every 2 s
        while not stop.wait(2.0):
            write_heartbeat(model_dir, time.time())

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    server = LabServer(root, base / "home")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        stop.set()
        beater.join(5)


@pytest.fixture(scope="module")
def ui(lab: LabServer) -> Iterator[LabPage]:
    with open_lab_page(lab) as page:
        yield page


def test_monitoring_tab_shows_the_served_model_its_rate_chart_and_drift_as_text(
    lab: LabServer, ui: LabPage
) -> None:
    ui.page.goto(f"{lab.url}/lab?token={lab.token}")
    ui.page.wait_for_selector(ui.PANEL_TAB, timeout=60000)
    ui.open_panel()
    tabs = ui.tabs()
    assert len(tabs) == 7 and ui.clipped(ui.TABS) == []
    monitoring = next(t for t in tabs if t["name"] == "Monitoring")
    assert monitoring["icon"] and "served models" in (monitoring["tooltip"] or "")
    ui.tab("Monitoring")
    assert ui.header_view() == "Monitoring"

    row = ui.page.locator(f"{VIEW} .nbmlops-servedrow[data-model='wine']")
    row.wait_for()
    assert row.get_attribute("data-alive") == "true"
    assert "● serving" in row.locator(".nbmlops-chip-alive").inner_text()
    chips = row.locator(".nbmlops-chip-route").all_inner_texts()
    assert chips == ["champion → v1 · 90%", "challenger → v2 · 10%"]
    assert "123 requests" in row.inner_text() and "150 in the last hour" in row.inner_text()
    assert row.locator(".nbmlops-chip-drift").get_attribute("data-drifted") == "true"

    # the first served model is selected: its rate chart, one line per alias, with points
    lines = ui.page.locator(f"{VIEW} svg.nbmlops-ratechart polyline.nbmlops-rateline")
    ui.wait(lambda: lines.count() == 2, 20, "two rate lines")
    by_alias = {lines.nth(i).get_attribute("data-alias"): lines.nth(i).get_attribute("points")
                for i in range(2)}
    assert set(by_alias) == {"champion", "challenger"}
    for points in by_alias.values():
        pairs = [p.split(",") for p in (points or "").split()]
        assert len(pairs) == 60 and all(len(p) == 2 for p in pairs)
        assert len({p[1] for p in pairs}) > 1  # not a flat line: traffic was logged
    legend = ui.page.locator(f"{VIEW} .nbmlops-ratechart-box .nbmlops-legend").inner_text()
    assert "champion v1: 135" in legend and "challenger v2: 15" in legend

    # drift per feature: the hostile feature name is text, its sparkline drawn
    drift_rows = ui.page.locator(f"{VIEW} .nbmlops-drifttable tr.nbmlops-driftrow")
    assert drift_rows.count() == 2
    names = drift_rows.locator(".nbmlops-featurename").all_inner_texts()
    assert names == ["alcohol", XSS]
    assert drift_rows.nth(0).get_attribute("data-drifted") == "true"
    assert drift_rows.nth(1).get_attribute("data-drifted") == "true"
    spark = drift_rows.nth(0).locator("svg.nbmlops-sparkline polyline").get_attribute("points")
    assert len((spark or "").split()) == 3
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0

    service = ui.page.locator(f"{VIEW} .nbmlops-servicerow[data-alive='true']")
    assert "http://127.0.0.1:8765" in service.inner_text()
    assert "pid 4242 on box" in service.inner_text()

    # the trigger and its fire
    trigger = ui.page.locator(f"{VIEW} .nbmlops-triggerrow[data-trigger='retrain-on-drift-wine']")
    assert "on wine@champion → retrain.yaml" in trigger.inner_text()
    fire = ui.page.locator(f"{VIEW} .nbmlops-firerow")
    assert fire.count() == 1 and "retrain-on-drift-wine" in fire.inner_text()
    assert f"alcohol 0.45, {XSS} 0.41" in fire.inner_text()
    assert ui.clipped(f"{VIEW} .nbmlops-chip, {VIEW} .nbmlops-button") == []
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-monitoring.png")
    assert ui.dialogs == []  # no alert ran, whatever the log holds
