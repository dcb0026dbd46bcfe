"""End to end: the Models tab and validation chips of the MLOps panel in a real `jupyter lab`,
headless Debian Chromium, at JupyterLab's default sidebar width. The model is registered and
gated through the real registry (scikit-learn models scored on held-out data); validations are
recorded through ``store.validations.record`` for a run of the notebook that is opened.

Skipped only when /usr/bin/chromium is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.store import CellRecord, Store

from ..conftest import make_notebook
from .lab import CHROMIUM, LabPage, LabServer, open_lab_page

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]
LABEXT = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbmlops" / "package.json"
XSS = "<img src=x onerror=alert(1)>"
VIEW = "#nbmlops-panel .nbmlops-models-view"
DIALOG = ".jp-Dialog"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    assert LABEXT.exists(), (
        f"the lab extension is not installed in this environment ({LABEXT} missing): run "
        "`pip install -e .` (builds it) and `make labext`, see docs/panel.md")
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from nbmlops.registry import register
    from nbmlops.registry.gate import gate

    base = tmp_path_factory.mktemp("lab-models")
    root = base / "root"
    nb = make_notebook(root / "validated.ipynb", ["import nbmlops", "x = 1", "y = 2"])
    X, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    d = root / ".nbmlops"
    with Store.open(f"sqlite:///{d / 'nbmlops.db'}", d / "artifacts") as store:
        rid = store.create_run(name="validated", source="interactive", notebook_path=str(nb))
        store.record_cells(rid, [
            CellRecord(seq=i, source=src, start_time=1_700_000_000.0 + i, duration=0.1,
                       status="ok", cell_id=None, execution_count=i + 1)
            for i, src in enumerate(["nbmlops.validate(train, against='data/ref.csv')",
                                     "nbmlops.validate(new, against='data/ref.csv')"])
        ])
        store.validations.record(passed=True, data_label="data/train.csv",
                                 reference_label="data/ref.csv", rows=100, run_id=rid, cell_seq=0)
        store.validations.record(
            passed=False, data_label=XSS, reference_label="data/ref.csv", rows=50, run_id=rid,
            cell_seq=1, violations=[
                {"column": "alcohol", "check": "range", "expected": [11.0, 14.8], "observed": 19.2},
                {"column": XSS, "check": "dtype", "expected": "float64", "observed": "object"},
            ])
        gate(LogisticRegression(max_iter=5000).fit(X[:120], y[:120]), name="wine",
             metric="accuracy", X=X[120:], y=y[120:], store=store, reason=XSS)
        gate(DummyClassifier(strategy="most_frequent").fit(X[:120], y[:120]), name="wine",
             metric="accuracy", X=X[120:], y=y[120:], store=store)
        register(store, LogisticRegression(C=0.5, max_iter=5000).fit(X[:120], y[:120]),
                 "wine", namespace={})
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


def version_aliases(ui: LabPage) -> dict[int, str]:
    rows = ui.page.locator(f"{VIEW} .nbmlops-versionrow")
    return {int(rows.nth(i).get_attribute("data-version")): rows.nth(i).get_attribute("data-aliases")
            for i in range(rows.count())}


def champion(lab: LabServer) -> Any:
    return lab.get("nbmlops/api/models/wine")["aliases"].get("champion")


def test_validation_chips_on_cell_rows_expand_to_their_violations(
    lab: LabServer, ui: LabPage
) -> None:
    ui.open_notebook("validated.ipynb")
    ui.open_panel()
    ui.wait(lambda: ui.rows().count() == 2, 20, "the two validated cells")
    ok = ui.rows().nth(0).locator(".nbmlops-chip-valid")
    bad = ui.rows().nth(1).locator(".nbmlops-chip-invalid")
    assert ok.inner_text() == "✓ valid"
    assert bad.inner_text() == "✗ 2 violations"
    assert "data/ref.csv" in (bad.get_attribute("title") or "")
    assert bad.get_attribute("aria-expanded") == "false"
    bad.click()
    details = ui.page.locator(f"{ui.PANEL} .nbmlops-validation")
    details.wait_for()
    text = details.inner_text()
    assert f"Failed: {XSS} against data/ref.csv (50 rows)" in text
    assert "alcohol range: expected [11,14.8], observed 19.2" in text
    assert f"{XSS} dtype: expected float64, observed object" in text
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    assert ui.clipped(f"{ui.PANEL} .nbmlops-chip") == []
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-validations.png")
    bad.click()  # collapses again
    assert ui.page.locator(f"{ui.PANEL} .nbmlops-validation").count() == 0
    assert ui.dialogs == []


def test_models_tab_shows_the_registry_and_promotes_and_rolls_back_through_a_dialog(
    lab: LabServer, ui: LabPage
) -> None:
    if not ui.page.locator(ui.PANEL).is_visible():
        ui.open_panel()
    width = ui.sidebar_width()
    assert 200 < width < 420, f"not the default sidebar width: {width}px"
    assert ui.clipped(ui.TABS) == [] and len(ui.tabs()) == 7
    ui.tab("Models")
    assert ui.header_view() == "Models"
    row = ui.page.locator(f"{VIEW} .nbmlops-modelrow[data-model='wine']")
    row.wait_for()
    assert "v3 · 3 versions" in row.inner_text()
    assert row.locator(".nbmlops-chip-alias").inner_text() == "champion → v1"
    row.click()
    ui.wait(lambda: version_aliases(ui) == {3: "", 2: "", 1: "champion"}, 10, "three versions")
    v2 = ui.page.locator(f"{VIEW} .nbmlops-versionrow[data-version='2']")
    assert v2.locator(".nbmlops-chip-gate").get_attribute("data-decision") == "rejected"
    v1 = ui.page.locator(f"{VIEW} .nbmlops-versionrow[data-version='1']")
    assert v1.locator(".nbmlops-chip-gate").get_attribute("data-decision") == "promoted"
    history = ui.page.locator(f"{VIEW} .nbmlops-history")
    assert "gate rejected v2: accuracy" in history.inner_text()
    assert XSS in history.inner_text()  # the gate's reason, as text
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    assert ui.clipped(f"{VIEW} .nbmlops-chip, {VIEW} .nbmlops-button") == []

    # promote v3: a dialog first; cancelling it changes nothing
    promote = ui.page.locator(f"{VIEW} .nbmlops-versionrow[data-version='3'] .nbmlops-promote")
    promote.click()
    dialog = ui.page.locator(DIALOG)
    dialog.wait_for()
    assert "Promote wine v3?" in dialog.inner_text() and "(now v1)" in dialog.inner_text()
    dialog.locator(".jp-mod-reject").click()
    dialog.wait_for(state="detached")
    assert champion(lab) == 1

    promote.click()
    dialog.wait_for()
    dialog.locator(".nbmlops-dialog-reason").fill(f"better on May data {XSS}")
    ui.page.wait_for_timeout(200)
    ui.screenshot("panel-models-promote-dialog.png")
    dialog.locator(".jp-mod-accept").click()
    ui.wait(lambda: version_aliases(ui).get(3) == "champion", 10, "champion on v3")
    assert champion(lab) == 3
    notice = ui.page.locator(f"{VIEW} .nbmlops-notice").inner_text()
    assert "wine@champion now points at v3." in notice
    newest = ui.page.locator(f"{VIEW} .nbmlops-event").first
    assert "promote champion v1 → v3" in newest.inner_text()
    assert f"better on May data {XSS}" in newest.inner_text()
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-models.png",
                  REPO / "docs" / "img" / "models.png" if os.environ.get("NBMLOPS_UPDATE_DOCS_IMG") else None)

    # roll back: champion returns to v1, one more event
    ui.page.locator(f"{VIEW} .nbmlops-aliasrow[data-alias='champion'] .nbmlops-rollback").click()
    dialog.wait_for()
    assert "Roll back wine@champion?" in dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    ui.wait(lambda: version_aliases(ui).get(1) == "champion", 10, "champion back on v1")
    assert champion(lab) == 1
    kinds = [e["kind"] for e in lab.get("nbmlops/api/models/wine")["events"]]
    assert kinds[-2:] == ["promote", "rollback"]
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    assert ui.dialogs == []  # no alert ran, whatever the store holds
