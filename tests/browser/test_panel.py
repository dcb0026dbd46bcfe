"""End to end: a real `jupyter lab`, headless Debian Chromium, the MLOps panel in use.

Skipped only when /usr/bin/chromium is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import make_notebook
from .lab import CHROMIUM, LabPage, LabServer, open_lab_page, wait_for

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
LABEXT = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbmlops" / "package.json"
XSS = "<img src=x onerror=alert(1)>"
# the `%load_ext nbmlops` cell starts capture; it is not itself recorded

TRAIN = [
    "%load_ext nbmlops",
    ("C = 1.0", ["parameters"]),
    "import pandas as pd\nimport joblib\nimport nbmlops\n"
    "from sklearn.linear_model import LogisticRegression\nfrom sklearn.metrics import accuracy_score\n"
    "from sklearn.tree import DecisionTreeClassifier",
    "df = pd.read_csv('data/wine.csv')\nX, y = df[['a', 'b']], df['label']",
    "model = LogisticRegression(C=C, max_iter=200).fit(X, y)",
    "acc = accuracy_score(y, model.predict(X))\nnbmlops.log_param('C', C)",
    "treemodel_with_a_long_name = DecisionTreeClassifier(max_depth=3).fit(X, y)",
    "X = X * 2  # redefines X: the fit cell above is now stale",
    "joblib.dump(model, 'models/model.joblib')",
]
TAB_NAMES = ["This notebook", "Runs", "Lineage", "Pipelines", "Schedules", "Models",
             "Monitoring"]
HOSTILE = [
    "%load_ext nbmlops",
    f"label = {XSS!r}  # {XSS}",
    f"import nbmlops\nnbmlops.log_param('note', {XSS!r})",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    assert LABEXT.exists(), (
        f"the lab extension is not installed in this environment ({LABEXT} missing): run "
        "`pip install -e .` (builds it) and `make labext-dev`, see docs/panel.md")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    (root / "data").mkdir(parents=True)
    (root / "models").mkdir()
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 11},{int(i % 7 > 3)}" for i in range(60)]
    (root / "data" / "wine.csv").write_text("\n".join(rows) + "\n")
    make_notebook(root / "train.ipynb", TRAIN)
    make_notebook(root / "hostile.ipynb", HOSTILE)
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


def recorded(lab: LabServer, notebook: str) -> int:
    got = lab.get(f"nbmlops/api/notebook-run?path={notebook}")
    return len(got["cells"]) if got["run"] else 0


def test_panel_shows_missing_store_then_live_rows_and_jumps_to_cells(
    lab: LabServer, ui: LabPage
) -> None:
    ui.open_notebook("train.ipynb")
    ui.open_panel()
    # no store yet: a clear message, no error toast, no manual refresh needed later
    msg = ui.page.locator(ui.MESSAGE).first
    msg.wait_for()
    assert "No nbmlops store yet" in msg.inner_text()

    ui.run_all()
    ui.wait(lambda: ui.rows().count() == len(TRAIN) - 1, 30, "cell rows to appear live")
    assert "No nbmlops store yet" not in ui.page.locator(ui.PANEL).inner_text()
    fit_row = ui.rows().filter(has_text="LogisticRegression(C=C")
    assert fit_row.count() == 1
    assert ui.rows().filter(has_text="wine.csv").count() == 1
    assert ui.rows().filter(has_text="acc=").count() == 1
    assert fit_row.locator(".nbmlops-chip-stale").count() == 1  # X was redefined after it
    check_reads_well_at_the_default_width(ui)

    # opening the panel on a freshly loaded page shows the first page within a second
    ui.open_notebook("train.ipynb")
    if ui.page.locator(ui.PANEL).is_visible():
        ui.page.click(ui.PANEL_TAB)  # collapse what the layout restored
        ui.page.wait_for_selector(ui.PANEL, state="hidden")
    started = time.perf_counter()
    ui.open_panel()
    ui.page.wait_for_function(
        f"document.querySelectorAll({json.dumps(ui.CELL_ROWS)}).length >= {len(TRAIN) - 1}",
        timeout=10000, polling=20)
    first_page_s = time.perf_counter() - started
    print(f"\npanel first page after opening: {first_page_s * 1000:.0f} ms")
    assert first_page_s < 1.0, f"first page took {first_page_s:.2f} s"

    # click a row: the notebook selects and scrolls to that cell
    ui.page.locator(".jp-Notebook .jp-Cell").last.click()
    assert "joblib.dump" in ui.active_cell_text()
    ui.rows().filter(has_text="LogisticRegression(C=C").click()
    wait_for(lambda: "LogisticRegression(C=C" in ui.active_cell_text(), 5, "the active cell")
    ui.widen_sidebar(260)
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-this-notebook.png")


def check_reads_well_at_the_default_width(ui: LabPage) -> None:
    """JupyterLab's default sidebar width, as a new user sees it: every tab fits, named (tooltip,
    accessible name), no label or chip is cut, each row shows the variables it defined and used."""
    width = ui.sidebar_width()
    assert 200 < width < 420, f"not the default sidebar width: {width}px"
    tabs = ui.tabs()
    assert [t["name"] for t in tabs] == TAB_NAMES
    assert all(t["icon"] for t in tabs), tabs
    assert all(t["tooltip"] and t["tooltip"].startswith(t["name"] + ":") for t in tabs), tabs
    assert ui.clipped(ui.TABS) == []
    assert ui.clipped(f"{ui.TABS} .lm-TabBar-tabLabel") == []
    assert ui.header_view() == "This notebook"  # the header names the tab icons stand for
    assert ui.clipped(f"{ui.PANEL} .nbmlops-chip") == []
    assert ui.clipped(f"{ui.PANEL} .nbmlops-vars, {ui.PANEL} .nbmlops-var") == []
    assert ui.clipped(f"{ui.PANEL} .nbmlops-duration") == []
    tree = ui.rows().filter(has_text="DecisionTreeClassifier(")
    chip = tree.locator(".nbmlops-chip-model")
    assert chip.inner_text() == "DecisionTreeClassifier (treemodel_with_a_long_name)"
    fit = ui.rows().filter(has_text="LogisticRegression(C=C")
    assert fit.locator(".nbmlops-vars-defines").inner_text() == "defines model"
    assert fit.locator(".nbmlops-vars-uses").inner_text() == "uses C, LogisticRegression, X, y"
    assert fit.locator(".nbmlops-vars-uses").is_visible()
    read = ui.rows().filter(has_text="pd.read_csv")
    assert read.locator(".nbmlops-vars-defines").inner_text() == "defines X, df, y"
    ui.screenshot("panel-default-width.png",
                  REPO / "docs" / "img" / "panel.png" if os.environ.get("NBMLOPS_UPDATE_DOCS_IMG") else None)
    # each tab by its name; the header follows
    ui.tab("Runs")
    assert ui.header_view() == "Runs"
    ui.tab("This notebook")
    # wide: the labels show too, still uncut
    ui.widen_sidebar(420)
    ui.page.wait_for_timeout(300)
    assert all(t["label_shown"] for t in ui.tabs()), ui.tabs()
    assert ui.clipped(f"{ui.TABS} .lm-TabBar-tabLabel") == []
    ui.widen_sidebar(-420)
    ui.page.wait_for_timeout(300)


def test_runs_compare_and_lineage(lab: LabServer, ui: LabPage) -> None:
    from nbmlops.execute import execute_notebook

    url = f"sqlite:///{lab.root / '.nbmlops' / 'nbmlops.db'}"
    headless = execute_notebook(lab.root / "train.ipynb", lab.home / "out.ipynb", store_url=url,
                                parameters={"C": 0.1}, timeout=120)
    assert headless.status == "finished"

    ui.tab("Runs")
    table = ui.page.locator("#nbmlops-panel table[aria-label='Runs'] tbody tr")
    wait_for(lambda: table.count() == 2, 10, "two runs in the table")
    for i in range(2):
        table.nth(i).locator("input[type=checkbox]").check()
    ui.page.get_by_role("button", name="Compare 2 runs").click()
    diff = ui.page.locator("#nbmlops-panel tr.nbmlops-diff[data-param='C']")
    diff.wait_for()
    assert "0.1" in diff.inner_text() and "1.0" in diff.inner_text()
    assert ui.page.locator("#nbmlops-panel svg.nbmlops-chart rect").count() >= 2
    ui.screenshot("panel-runs-compare.png")

    ui.tab("This notebook")
    ui.rows().filter(has_text="model.joblib").locator(".nbmlops-chip-wrote").click()
    nodes = ui.page.locator("#nbmlops-panel .nbmlops-node")
    wait_for(lambda: nodes.count() >= 4, 10, "lineage nodes")
    labels = ui.page.locator("#nbmlops-panel svg.nbmlops-graph").text_content() or ""
    assert "wine.csv" in labels and "model.joblib" in labels
    ui.page.locator("#nbmlops-panel .nbmlops-node-estimator").first.click()
    details = ui.page.locator("#nbmlops-panel .nbmlops-lineage-view .nbmlops-details")
    wait_for(lambda: "class_name" in details.inner_text(), 5, "node details")
    box = ui.page.locator("#nbmlops-panel svg.nbmlops-graph")
    before = box.get_attribute("viewBox")
    box.hover()
    ui.page.mouse.wheel(0, -300)
    wait_for(lambda: box.get_attribute("viewBox") != before, 3, "zoom to change the viewBox")
    ui.screenshot("panel-lineage.png")


def test_store_text_is_shown_as_text_never_run_as_html(lab: LabServer, ui: LabPage) -> None:
    ui.open_notebook("hostile.ipynb")
    ui.run_all()
    wait_for(lambda: recorded(lab, "hostile.ipynb") == len(HOSTILE) - 1, 30, "hostile cells recorded")
    if not ui.page.locator(ui.PANEL).is_visible():
        ui.open_panel()
    ui.tab("This notebook")
    wait_for(lambda: ui.rows().count() == len(HOSTILE) - 1, 15, "rows of the hostile notebook")
    panel_text = ui.page.locator(ui.PANEL).inner_text()
    assert XSS in panel_text
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0
    ui.page.wait_for_timeout(500)
    ui.screenshot("panel-hostile-text.png")
    assert ui.dialogs == []


PIPE_A = [("seed = 1  # <img src=x onerror=alert(1)>", ["parameters"]),
          "from pathlib import Path\nPath('data').mkdir(exist_ok=True)\n"
          "Path('data/a.txt').write_text(str(seed))"]
PIPE_B = [("seed = 1", ["parameters"]),
          "from pathlib import Path\nPath('data/b.txt').write_text(Path('data/a.txt').read_text() * 2)"]
PIPELINE = """\
name: two-steps
params:
  seed: 1
steps:
  prepare:
    notebook: a.ipynb
    outputs: [data/a.txt]
  train:
    notebook: b.ipynb
    depends_on: [prepare]
    inputs: [data/a.txt]
"""


def test_pipelines_tab_runs_a_pipeline_with_a_param_then_shows_it_cached(
    lab: LabServer, ui: LabPage
) -> None:
    pipe = lab.root / "pipe"
    make_notebook(pipe / "a.ipynb", PIPE_A)
    make_notebook(pipe / "b.ipynb", PIPE_B)
    (pipe / "pipeline.yaml").write_text(PIPELINE)
    ui.open_file("pipe/pipeline.yaml")  # the definition in the editor, the panel beside it
    if not ui.page.locator(ui.PANEL).is_visible():
        ui.open_panel()
    if ui.sidebar_width() < 500:
        ui.widen_sidebar(int(560 - ui.sidebar_width()))
    ui.tab("Pipelines")
    row = ui.pipeline_row("pipe/pipeline.yaml")
    row.wait_for()
    assert "two-steps" in row.inner_text()
    row.click()
    wait_for(lambda: set(ui.dag_states()) == {"prepare", "train"}, 5, "the DAG of two steps")
    seed = ui.param_input("seed")
    assert seed.input_value() == "1"
    seed.fill("7")

    ui.pipeline_button("Run").click()
    ui.wait(lambda: ui.step_states() == {"prepare": "ran", "train": "ran"}, 60, "both steps ran")
    assert ui.dag_states() == {"prepare": "ran", "train": "ran"}
    badge = ui.page.locator(f"{ui.PIPELINES} .nbmlops-pipeline-run .nbmlops-runline .nbmlops-badge")
    wait_for(lambda: badge.get_attribute("data-status") == "finished", 10, "the run finished")
    assert "seed=7" in ui.page.locator(f"{ui.PIPELINES} .nbmlops-pipeline-run").inner_text()
    assert (pipe / "data" / "b.txt").read_text() == "77"
    first_run = ui.shown_run_id()

    # a step's cells, listed inline
    ui.page.locator(f"{ui.PIPELINES} tr.nbmlops-steprow[data-step='train']").click()
    cells = ui.page.locator(f"{ui.PIPELINES} .nbmlops-stepcell")
    wait_for(lambda: cells.count() == 3, 10, "the train step's cells")  # papermill injected one
    shown = ui.page.locator(f"{ui.PIPELINES} .nbmlops-step-cells").inner_text()
    assert "seed = 7" in shown and "from pathlib import Path" in shown
    ui.screenshot("panel-pipelines-ran.png",
                  REPO / "docs" / "img" / "pipelines.png" if os.environ.get("NBMLOPS_UPDATE_DOCS_IMG") else None)

    # the same params again: every step is cached, no kernel starts
    assert seed.input_value() == "7"
    wait_for(lambda: ui.pipeline_button("Run").is_enabled(), 10, "Run enabled again")
    ui.pipeline_button("Run").click()
    ui.wait(lambda: ui.shown_run_id() != first_run
            and ui.step_states() == {"prepare": "cached", "train": "cached"}, 30, "both steps cached")
    assert ui.dag_states() == {"prepare": "cached", "train": "cached"}
    listed = ui.pipeline_row("pipe/pipeline.yaml").locator(".nbmlops-badge")
    wait_for(lambda: listed.inner_text() == "finished", 10, "the list shows the latest run")
    assert ui.page.locator(f"{ui.PANEL} img").count() == 0  # the param's help is text
    ui.page.wait_for_timeout(300)
    ui.screenshot("panel-pipelines-cached.png")
    assert ui.dialogs == []
