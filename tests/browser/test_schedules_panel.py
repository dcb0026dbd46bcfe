"""End to end: the Schedules tab of the MLOps panel in a real `jupyter lab`, headless Debian
Chromium. Schedules are added to the store the way `nbmlops schedule add` does; "Fire now" runs
a real notebook in a real kernel. No scheduler runs here: the panel must say so.

Skipped only when /usr/bin/chromium is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.schedule.service import add_schedule, add_trigger
from nbmlops.store import Store

from ..conftest import make_notebook
from .lab import CHROMIUM, LabPage, LabServer, open_lab_page

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]
LABEXT = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbmlops" / "package.json"
XSS = "<img src=x onerror=alert(1)>"
CELLS = [("label = 'x'", ["parameters"]), "x = 1"]
NO_SCHEDULER = "No scheduler is running: start `nbmlops scheduler` in a terminal"

VIEW = "#nbmlops-panel .nbmlops-schedules-view"


def store_url(root: Path) -> str:
    return f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    assert LABEXT.exists(), (
        f"the lab extension is not installed in this environment ({LABEXT} missing): run "
        "`pip install -e .` (builds it) and `make labext`, see docs/panel.md")
    base = tmp_path_factory.mktemp("lab-schedules")
    root = base / "root"
    quick = make_notebook(root / "reports" / "daily_report.ipynb", CELLS)
    make_notebook(root / "prepare.ipynb", CELLS)
    (root / "data").mkdir()
    (root / "data" / "sales.csv").write_text("a\n1\n")
    with Store.open(store_url(root)) as store:
        add_schedule(store, quick, cron="0 3 * * *", tz="Europe/Berlin", name="nightly-report",
                     params={"label": "nightly"})
        add_schedule(store, root / "prepare.ipynb", cron="*/15 * * * *", name="prepare",
                     paused=True)
        add_trigger(store, root / "prepare.ipynb", on_change=str(root / "data" / "*.csv"),
                    name="prepare-on-data")
    server = LabServer(root, base / "home")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ui(lab: LabServer) -> Iterator[LabPage]:
    with open_lab_page(lab) as page:
        yield page


def open_schedules(ui: LabPage) -> None:
    """JupyterLab with the panel open, wide enough for the table, on the Schedules tab."""
    ui.page.goto(f"{ui.lab.url}/lab?token={ui.lab.token}")
    ui.page.wait_for_selector(LabPage.PANEL_TAB, timeout=60000)
    if not ui.page.locator(ui.PANEL).is_visible():
        ui.open_panel()
    if ui.sidebar_width() < 760:
        ui.widen_sidebar(int(800 - ui.sidebar_width()))
    ui.tab("Schedules")
    ui.page.wait_for_selector(f"{VIEW} tr.nbmlops-schedulerow")


def row(ui: LabPage, name: str) -> Any:
    return ui.page.locator(f"{VIEW} tr.nbmlops-schedulerow[data-name='{name}']")


def last_status(ui: LabPage, name: str) -> str | None:
    badge = row(ui, name).locator(".nbmlops-lastfire .nbmlops-badge")
    return badge.get_attribute("data-status") if badge.count() else None


def banner(ui: LabPage) -> Any:
    return ui.page.locator(f"{VIEW} .nbmlops-scheduler")


def test_schedules_tab_fires_now_shows_history_and_pauses(lab: LabServer, ui: LabPage) -> None:
    api = {s["name"]: s for s in lab.get("nbmlops/api/schedules")["schedules"]}
    open_schedules(ui)
    nightly = row(ui, "nightly-report")
    nightly.wait_for()
    assert nightly.get_attribute("data-state") == "active"
    assert nightly.locator(".nbmlops-nextfire").inner_text() == api["nightly-report"]["next_fire_local"]
    assert "0 3 * * * Europe/Berlin" in nightly.locator(".nbmlops-when").inner_text()
    assert "daily_report.ipynb" in nightly.inner_text() and "label=nightly" in nightly.inner_text()
    assert row(ui, "prepare").get_attribute("data-state") == "paused"
    assert row(ui, "prepare").locator(".nbmlops-nextfire").inner_text() == "–"
    trigger = row(ui, "prepare-on-data").locator(".nbmlops-when").inner_text()
    assert trigger == "on change data/*.csv"
    assert banner(ui).get_attribute("data-running") == "false"
    assert NO_SCHEDULER in banner(ui).inner_text()

    # Fire now: a manual fire whose run really runs; the row follows it until it ends
    seen: set[str] = set()
    nightly.locator("button.nbmlops-fire").click()

    def finished() -> bool:
        status = last_status(ui, "nightly-report")
        if status:
            seen.add(status)
        return status == "finished"

    ui.wait(finished, 90, "the manual fire to finish")
    assert seen <= {"started", "finished"}, seen
    run_id = str(nightly.locator(".nbmlops-runid").get_attribute("title"))
    run = lab.get(f"nbmlops/api/runs/{run_id}")
    assert run["status"] == "finished" and run["tags"]["nbmlops.trigger"] == "manual"
    assert run["tags"]["nbmlops.trigger.by"]  # the Jupyter user of the browser session

    # click the row: its fires
    nightly.locator(".nbmlops-when").click()
    fires = ui.page.locator(f"{VIEW} table[aria-label='Fires'] tr.nbmlops-firerow")
    ui.wait(lambda: fires.count() == 1, 10, "the fire history")
    assert fires.first.get_attribute("data-trigger") == "manual"
    assert fires.first.get_attribute("data-status") == "finished"
    assert run_id[:8] in fires.first.inner_text() and "manual (" in fires.first.inner_text()
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-schedules.png",
                  REPO / "docs" / "img" / "schedules.png" if os.environ.get("NBMLOPS_UPDATE_DOCS_IMG") else None)

    # Pause, then Resume: the same next due time comes back
    nightly.locator("button.nbmlops-pause").click()
    ui.wait(lambda: nightly.get_attribute("data-state") == "paused", 10, "paused")
    assert nightly.locator(".nbmlops-nextfire").inner_text() == "–"
    assert nightly.locator("button.nbmlops-pause").inner_text() == "Resume"
    assert {s["name"]: s for s in lab.get("nbmlops/api/schedules")["schedules"]}[
        "nightly-report"]["paused"] is True
    nightly.locator("button.nbmlops-pause").click()
    ui.wait(lambda: nightly.get_attribute("data-state") == "active", 10, "active again")
    assert nightly.locator(".nbmlops-nextfire").inner_text() == api["nightly-report"]["next_fire_local"]

    # a scheduler takes the store's lease: the banner says so at the next refresh
    with Store.open(store_url(lab.root)) as store:
        assert store.schedules.acquire_lease("elsewhere:4242:test", host="elsewhere", pid=4242,
                                             ttl=60)
        try:
            ui.wait(lambda: banner(ui).get_attribute("data-running") == "true", 10,
                    "the scheduler banner")
            assert "pid 4242 on elsewhere" in banner(ui).inner_text()
        finally:
            store.schedules.release_lease("elsewhere:4242:test")
    ui.wait(lambda: banner(ui).get_attribute("data-running") == "false", 10, "no scheduler again")
    assert ui.dialogs == []


def test_names_params_and_paths_from_the_store_are_text_not_html(lab: LabServer, ui: LabPage) -> None:
    hostile = make_notebook(lab.root / f"{XSS}.ipynb", CELLS)
    with Store.open(store_url(lab.root)) as store:
        add_schedule(store, hostile, cron="@daily", name="hostile", params={"label": XSS})
    if not ui.page.locator(f"{VIEW} tr.nbmlops-schedulerow").first.is_visible():
        open_schedules(ui)
    ui.wait(lambda: row(ui, "hostile").count() == 1, 15, "the hostile row")
    text = row(ui, "hostile").inner_text()
    assert f"{XSS}.ipynb" in text and f"label={XSS}" in text
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    row(ui, "hostile").locator(".nbmlops-when").click()
    ui.wait(lambda: "hostile has not fired yet" in ui.page.locator(VIEW).inner_text(), 10,
            "the empty history")
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-schedules-hostile-text.png")
    assert ui.dialogs == []
