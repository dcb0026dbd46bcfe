"""``%mlops`` in a real IPython ``InteractiveShell``, and the pure renderings behind its views."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.lib.pretty import pretty
from traitlets.config import Config

from nbmlops.capture.session import CaptureSession, active_session
from nbmlops.notebook.magics import SUBCOMMANDS, MlopsMagics
from nbmlops.notebook.widgets import (
    ComparisonView,
    HistoryView,
    LineageView,
    RunsView,
    RunView,
    StatusView,
    comparison_html,
    history_html,
    history_text,
    lineage_layers,
    lineage_svg,
    metric_bars_svg,
    run_columns,
    run_html,
    runs_html,
    sort_runs,
    status_html,
    status_text,
)
from nbmlops.store import Store
from nbmlops.store.entities import (
    Artifact,
    CellExecution,
    Comparison,
    Estimator,
    LineageEdge,
    LineageGraph,
    LineageNode,
    MetricValue,
    Run,
)

EXPECTED_SUBCOMMANDS = ["status", "start", "stop", "pause", "resume", "history", "runs", "show",
                        "compare", "lineage", "export", "register"]
XSS = "<img src=x onerror=alert(1)>"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[InteractiveShell]:
    """A fresh InteractiveShell with ``%load_ext nbmlops`` recording into a temporary store."""
    monkeypatch.setenv("NBMLOPS_STORE_URL", db_url)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False  # nothing left to write at interpreter exit
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "nbmlops")
    assert active_session() is not None
    try:
        yield sh
    finally:
        sh.run_line_magic("unload_ext", "nbmlops")
        InteractiveShell.clear_instance()


@pytest.fixture
def read_store(shell: InteractiveShell, db_url: str) -> Iterator[Store]:
    """A second handle on the session's store, opened once the session has created it."""
    assert session().flush(10)
    s = Store.open(db_url)
    yield s
    s.close()


Mlops = Callable[[str], Any]


@pytest.fixture
def mlops(shell: InteractiveShell) -> Mlops:
    def run(line: str = "") -> Any:
        return shell.run_line_magic("mlops", line)

    return run


def session() -> CaptureSession:
    s = active_session()
    assert s is not None
    return s


def run_cells(shell: InteractiveShell, *sources: str, ok: bool = True) -> None:
    for src in sources:
        result = shell.run_cell(src, store_history=True)
        if ok:
            assert result.success, (src, result.error_in_exec or result.error_before_exec)
    assert session().flush(10)


def start(mlops: Mlops, line: str) -> str:
    mlops(f"start {line}")
    rid = session().run_id
    assert rid is not None
    return rid


# -- parsing and help ---------------------------------------------------------------------------


def test_table_is_the_one_list_of_subcommands() -> None:
    assert list(SUBCOMMANDS) == EXPECTED_SUBCOMMANDS


def test_help_lists_every_subcommand_on_one_line(mlops: Mlops, shell: InteractiveShell,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert mlops("--help") is None
    out = capsys.readouterr().out
    assert out.startswith("usage: %mlops")
    for name, command in SUBCOMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(command.summary)}$", out, re.M), name
    mlops("-h")
    assert capsys.readouterr().out == out
    # %mlops? shows the same generated text
    doc = shell.find_line_magic("mlops").__doc__
    assert all(name in doc for name in EXPECTED_SUBCOMMANDS)


def test_subcommand_help_shows_its_options(mlops: Mlops, capsys: pytest.CaptureFixture[str]) -> None:
    mlops("start --help")
    out = capsys.readouterr().out
    assert out.startswith("usage: %mlops start")
    assert "--experiment" in out and "--tag" in out and "NAME" in out
    mlops("show --help")  # a required-looking positional does not get in the way of --help
    assert "usage: %mlops show" in capsys.readouterr().out


@pytest.mark.parametrize("line", ["frobnicate", "exprot x -o y.ipynb"])
def test_unknown_subcommand_lists_the_valid_ones(mlops: Mlops, line: str) -> None:
    with pytest.raises(UsageError) as err:
        mlops(line)
    message = str(err.value)
    assert f"unknown subcommand {line.split()[0]!r}" in message
    assert "valid subcommands: " + ", ".join(EXPECTED_SUBCOMMANDS) in message


def test_unknown_subcommand_suggests_a_close_one(mlops: Mlops) -> None:
    with pytest.raises(UsageError, match="Did you mean 'runs'"):
        mlops("runz")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("runs --bogus", r"%mlops runs: unrecognized arguments: --bogus\nusage: %mlops runs"),
        ("runs --limit 0", "%mlops runs: argument --limit/-n: must be at least 1"),
        ("history --limit many", "expected a whole number, got 'many'"),
        ("--bogus", "%mlops: unrecognized arguments: --bogus"),
        ("compare", "%mlops compare: the following arguments are required: RUN"),
        ('start "unclosed', "cannot read the arguments"),
        ("runs --status sleeping", "%mlops runs: status must be one of running, finished"),
    ],
)
def test_bad_arguments_are_usage_errors(mlops: Mlops, line: str, expected: str) -> None:
    with pytest.raises(UsageError) as err:
        mlops(line)
    assert re.search(re.escape(expected).replace(r"\\n", "\n"), str(err.value)), str(err.value)


def test_tag_without_value_is_a_usage_error_and_starts_nothing(mlops: Mlops) -> None:
    before = session().run_id
    with pytest.raises(UsageError, match=r"--tag/-t: expected KEY=VALUE, got 'novalue'"):
        mlops("start x --tag novalue")
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        mlops("start x --tag =v")
    assert session().run_id == before


# -- controlling capture ------------------------------------------------------------------------


def test_status_follows_start_pause_resume_stop(mlops: Mlops, shell: InteractiveShell, db_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    view = mlops("status")
    assert isinstance(view, StatusView)
    assert view.text().startswith("nbmlops: recording run ")
    assert session().run_id in view.text() and db_url.removeprefix("sqlite:///") in view.text()
    assert mlops("").text() == view.text()  # bare %mlops is status

    run_cells(shell, "a = 1")
    mlops("pause")
    assert "cells are not recorded until %mlops resume" in capsys.readouterr().out
    assert mlops("status").text().startswith("nbmlops: paused run ")
    run_cells(shell, "b = 2", "c = 3")
    assert session().cells_recorded == 1

    mlops("resume")
    assert mlops("status").text().startswith("nbmlops: recording run ")
    run_cells(shell, "d = 4")
    assert session().cells_recorded == 2

    mlops("stop")
    assert "finished run" in capsys.readouterr().out
    stopped = mlops("status")
    assert stopped.text().startswith("nbmlops: not recording (no active run; %mlops start begins one)")
    assert "not recording" in stopped.html()
    with pytest.raises(UsageError, match="no run is active"):
        mlops("pause")
    with pytest.raises(UsageError, match="no run is active"):
        mlops("resume")
    mlops("stop")
    assert "nothing to stop" in capsys.readouterr().out


def test_start_creates_a_run_with_name_experiment_and_tags(mlops: Mlops, read_store: Store,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = session().run_id
    rid = start(mlops, '"my run" --experiment exp1 --tag team=vision -t "note=a=b c" -t who="J Doe"')
    assert rid != first
    assert "recording run 'my run'" in capsys.readouterr().out
    assert session().flush(10)
    run = read_store.get_run(rid)
    assert (run.name, run.experiment, run.status) == ("my run", "exp1", "running")
    assert run.tags == {"team": "vision", "note": "a=b c", "who": "J Doe"}
    assert read_store.get_run(first).status == "finished"
    status = mlops("status").text()
    assert "recording run 'my run'" in status and "exp1" in status


# -- history ------------------------------------------------------------------------------------


def test_history_lists_this_runs_cells_in_order_with_variables(mlops: Mlops, shell: InteractiveShell) -> None:
    start(mlops, "hist")
    run_cells(shell, "a = 1", "b = a + 1", "c = a * b\nc")
    mlops("status")  # %mlops cells are not recorded
    view = mlops("history")
    assert isinstance(view, HistoryView)
    assert [c.source for c in view.cells] == ["a = 1", "b = a + 1", "c = a * b\nc"]
    assert [c.vars_defined for c in view.cells] == [["a"], ["b"], ["c"]]
    assert [c.vars_used for c in view.cells] == [[], ["a"], ["a", "b"]]
    text = view.text()
    assert text.startswith("history of run 'hist'")
    assert text.index("a = 1") < text.index("b = a + 1") < text.index("c = a * b")
    row = next(line for line in text.splitlines() if "b = a + 1" in line)
    assert re.search(r"^\s*1\s+2\s+ok\s+", row) and re.search(r"\bb\s+a\s*$", row)
    html = view.html()
    assert html.index("a = 1") < html.index("b = a + 1") < html.index("c = a * b")

    last_two = mlops("history --limit 2")
    assert [c.seq for c in last_two.cells] == [1, 2]
    assert "2 of 3 cells" in last_two.text()


def test_history_of_another_run_and_without_a_run(mlops: Mlops, shell: InteractiveShell) -> None:
    first = start(mlops, "one")
    run_cells(shell, "x = 1")
    start(mlops, "two")
    assert [c.source for c in mlops(f"history --run {first[:8]}").cells] == ["x = 1"]
    assert mlops("history").cells == []
    mlops("stop")
    with pytest.raises(UsageError, match="no run is being recorded"):
        mlops("history")


def test_history_html_escapes_cell_source(mlops: Mlops, shell: InteractiveShell) -> None:
    run_cells(shell, f's = "{XSS}"')
    html = mlops("history").html()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html
    assert "onerror=alert(1)>" not in html


# -- runs, show, compare ------------------------------------------------------------------------


def _make_runs(mlops: Mlops, shell: InteractiveShell) -> tuple[str, str]:
    a = start(mlops, "alpha -e exp-a")
    run_cells(shell, "import nbmlops\nnbmlops.log_params({'lr': 0.1, 'seed': 1})\n"
                     "nbmlops.log_metric('acc', 0.75)")
    b = start(mlops, "beta -e exp-b --tag owner=me")
    run_cells(shell, "import nbmlops\nnbmlops.log_params({'lr': 0.5, 'seed': 1})\n"
                     "nbmlops.log_metric('acc', 0.5)")
    return a, b


def test_runs_lists_runs_with_filters_and_limits(mlops: Mlops, shell: InteractiveShell) -> None:
    a, b = _make_runs(mlops, shell)
    view = mlops("runs")
    assert isinstance(view, RunsView)  # no kernel here: a plain HTML/text view
    assert [r.id for r in view.runs][:2] == [b, a]
    text, html = view.text(), view.html()
    assert "alpha" in text and "beta" in text and "0.75" in text and "acc" in text
    assert "alpha" in html and "beta" in html and "(this kernel)" in html
    assert [r.name for r in mlops("runs --experiment exp-a").runs] == ["alpha"]
    limited = mlops("runs --limit 1")
    assert [r.id for r in limited.runs] == [b] and "1 of 3 runs" in limited.text()
    assert [r.name for r in mlops("runs --status running").runs] == ["beta"]


def test_runs_is_a_sortable_widget_in_a_kernel(mlops: Mlops, shell: InteractiveShell,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _make_runs(mlops, shell)
    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    box = mlops("runs")
    title, header, body = box.children
    buttons = {btn.description: btn for btn in header.children}
    assert list(buttons)[:3] == ["ID", "Name", "Experiment"]

    def order() -> list[str]:
        return re.findall(r'title="([0-9a-f]{32})"', body.value)

    buttons["acc"].click()
    assert order()[:2] == [a, b] and buttons["acc"].description == "acc ▼"
    buttons["acc"].click()
    assert order()[:2] == [b, a] and buttons["acc"].description == "acc ▲"
    # front ends without widgets fall back to the HTML and the text of the same table
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "alpha" in bundle["text/html"] and "alpha" in bundle["text/plain"]

    shell.run_line_magic("config", "MlopsMagics.widgets = False")
    assert isinstance(mlops("runs"), RunsView)


def test_default_limit_is_a_config_trait(mlops: Mlops, shell: InteractiveShell) -> None:
    _make_runs(mlops, shell)
    shell.run_line_magic("config", "MlopsMagics.default_limit = 2")
    magics = next(m for m in shell.configurables if isinstance(m, MlopsMagics))
    assert magics.default_limit == 2
    assert len(mlops("runs").runs) == 2
    assert len(mlops("runs --limit 3").runs) == 3


def test_show_a_run(mlops: Mlops, shell: InteractiveShell) -> None:
    a, b = _make_runs(mlops, shell)
    view = mlops(f"show {a[:6]}")
    assert isinstance(view, RunView) and view.run.id == a
    text = view.text()
    assert re.search(r"^name\s+alpha$", text, re.M) and re.search(r"^experiment\s+exp-a$", text, re.M)
    assert re.search(r"^\s+lr\s+0\.1$", text, re.M) and re.search(r"^\s+acc\s+0\.75$", text, re.M)
    html = view.html()
    assert "alpha" in html and "exp-a" in html and "0.75" in html and a in html
    current = mlops("show")
    assert current.run.id == b and "owner" in current.html() and "me" in current.text()
    with pytest.raises(UsageError, match="%mlops show: no run 'zzzz'"):
        mlops("show zzzz")


def test_compare_marks_differing_params_and_shows_metrics(mlops: Mlops, shell: InteractiveShell) -> None:
    a, b = _make_runs(mlops, shell)
    view = mlops(f"compare {a} {b[:8]}")
    assert isinstance(view, ComparisonView)
    assert view.comparison.params_differ == ["lr"]
    text = view.text()
    assert re.search(r"^\*\s+lr\s+0\.1\s+0\.5$", text, re.M)
    assert re.search(r"^\s+seed\s+1\s+1$", text, re.M)
    assert re.search(r"^\s+acc\s+0\.75\s+0\.5$", text, re.M)
    html = view.html()
    highlighted = re.findall(r'<tr style="background:rgba\(250,204,21,0\.25\)">(.*?)</tr>', html)
    assert len(highlighted) == 1 and ">lr<" in highlighted[0] and "0.1" in highlighted[0]
    assert "Params (1 of 2 differ)" in html
    svg = html[html.index("<svg"):]
    assert "acc" in svg and ">0.75<" in svg and ">0.5<" in svg and "alpha" in svg and "beta" in svg
    with pytest.raises(UsageError, match="at least two runs"):
        mlops(f"compare {a}")
    with pytest.raises(UsageError, match="%mlops compare: no run"):
        mlops(f"compare {a} nope")


# -- lineage ------------------------------------------------------------------------------------


WRITE_CELL = "with open('out.txt', 'w') as fh:\n    fh.write(str(data))"


def test_lineage_of_a_file_written_by_a_cell(mlops: Mlops, shell: InteractiveShell, tmp_path: Path) -> None:
    start(mlops, "lin")
    with pytest.raises(UsageError, match=r"^%mlops lineage: run \w{8} has not written a file yet"):
        mlops("lineage")
    run_cells(shell, "data = [1, 2, 3]", WRITE_CELL)
    view = mlops("lineage out.txt")
    assert isinstance(view, LineageView)
    graph = view.graph
    root = graph.node(graph.root)
    assert root.type == "artifact" and root.label == "out.txt"
    writer = next(n for n in graph.nodes if n.type == "cell" and "open('out.txt'" in n.label)
    definer = next(n for n in graph.nodes if n.type == "cell" and "data = [1, 2, 3]" in n.label)
    assert {(e.source, e.target, e.label) for e in graph.edges} >= {
        (writer.id, root.id, "wrote"), (definer.id, writer.id, "data")}

    text = view.text()
    assert text.splitlines()[0].startswith("out.txt (file")
    assert "written by: lin [" in text and "uses data from: lin [" in text

    html = view.html()
    svg = html[html.index("<svg"):]
    assert ">out.txt<" in svg
    assert f"<title>{_esc(writer.label)}" in svg  # the cell's full label, escaped
    assert ">data = [1, 2, 3]<" in svg and ">data<" in svg  # the definer and the edge's variable
    assert "Lineage of out.txt" in html

    assert mlops("lineage").graph.root == graph.root  # default: the last file this run wrote


def test_lineage_of_a_variable_and_downstream(mlops: Mlops, shell: InteractiveShell) -> None:
    start(mlops, "lin2")
    run_cells(shell, "data = [1, 2, 3]", WRITE_CELL, "text = open('out.txt').read()")
    var = mlops("lineage data")
    assert var.graph.node(var.graph.root).type == "variable"
    assert "data = [1, 2, 3]" in var.html()

    down = mlops("lineage out.txt --downstream")
    assert down.direction == "downstream"
    reader = next(n for n in down.graph.nodes if n.type == "cell")
    assert "text = open('out.txt').read()" in reader.label
    assert "read by: lin2 [" in down.text()
    with pytest.raises(UsageError, match="%mlops lineage: no cell of run .* defined a variable 'nope'"):
        mlops("lineage nope")
    with pytest.raises(UsageError, match="no recorded file"):
        mlops("lineage missing.csv")


def test_magics_work_without_a_capture_session(mlops: Mlops, shell: InteractiveShell) -> None:
    a, b = _make_runs(mlops, shell)
    shell.run_line_magic("unload_ext", "nbmlops")
    try:
        assert active_session() is None
        status = mlops("status")
        assert status.text().startswith("nbmlops: not recording: capture is not loaded")
        assert {r.id for r in mlops("runs").runs} >= {a, b}
        assert mlops(f"show {a}").run.name == "alpha"
        with pytest.raises(UsageError, match="run %load_ext nbmlops"):
            mlops("start")
        with pytest.raises(UsageError, match="no run is being recorded"):
            mlops("history")
        with pytest.raises(UsageError, match=r"^%mlops lineage: name a TARGET"):
            mlops("lineage")
    finally:
        shell.run_line_magic("load_ext", "nbmlops")


# -- pure renderings ----------------------------------------------------------------------------


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _run(rid: str, name: str, **kw: Any) -> Run:
    base: dict[str, Any] = {"experiment": "Default", "source": "interactive", "status": "finished",
                            "start_time": 1_700_000_000.0}
    base.update(kw)
    return Run(id=rid, name=name, **base)


def _cell(seq: int, source: str, **kw: Any) -> CellExecution:
    base: dict[str, Any] = {
        "id": seq + 1, "run_id": "r" * 32, "cell_id": None, "execution_count": seq + 1,
        "source_hash": "h", "start_time": 0.0, "duration": 0.5, "status": "ok", "error_name": None,
        "error_value": None, "vars_defined": [], "vars_used": [],
    }
    base.update(kw)
    return CellExecution(seq=seq, source=source, **base)


def test_views_render_text_for_terminals() -> None:
    view = RunView(_run("a" * 32, "alpha"))
    assert repr(view) == view.text() == pretty(view) == str(view)
    assert view._repr_html_() == view.html()


def test_status_renderings() -> None:
    assert status_text(None).startswith("nbmlops: not recording: capture is not loaded")
    rec = {"state": "recording", "run_id": "f" * 32, "run_name": XSS, "experiment": None,
           "cells_recorded": 3, "store": "/tmp/s.db", "pending_writes": 0, "store_problem": "locked",
           "dropped_records": 0, "internal_errors": 0}
    text = status_text(rec)
    assert text.splitlines()[0] == f"nbmlops: recording run {XSS!r} (ffffffff)"
    assert re.search(r"cells recorded\s+3", text) and re.search(r"store problem\s+locked", text)
    assert "pending writes" not in text
    assert re.search(r"capture cost\s+0\.21 ms per cell", status_text({**rec, "capture_ms_per_cell": 0.2149}))
    html = status_html(rec)
    assert "&lt;img" in html and "<img" not in html
    assert status_text({**rec, "state": "paused"}).startswith("nbmlops: paused run")
    stopped = {**rec, "state": "stopped", "run_id": None}
    assert status_text(stopped).startswith("nbmlops: not recording (no active run")


def test_runs_html_escapes_and_sorts() -> None:
    runs = [
        _run("a" * 32, XSS, metrics={"acc": 0.5}, start_time=3.0),
        _run("b" * 32, "beta", metrics={"acc": 0.9}, status="failed", start_time=2.0),
        _run("c" * 32, "gamma", start_time=1.0),
    ]
    html = runs_html(runs)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert ">0.9<" in html and "failed" in html
    acc = next(c for c in run_columns(["acc"]) if c.key == "metric:acc")
    assert [r.name for r in sort_runs(runs, acc)] == [XSS, "beta", "gamma"]
    assert [r.name for r in sort_runs(runs, acc, descending=True)] == ["beta", XSS, "gamma"]
    assert "3 runs" in RunsView(runs).text() and "3 of 10 runs" in RunsView(runs, total=10).text()
    assert "no runs recorded yet" in runs_html([])


def test_run_html_shows_params_metrics_tags_escaped() -> None:
    run = _run("a" * 32, "alpha", params={"lr": "0.1"}, metrics={"acc": 0.25}, tags={"note": "<b>x</b>"})
    html = run_html(run)
    assert ">lr<" in html and ">0.1<" in html and ">0.25<" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html


def _comparison() -> Comparison:
    runs = [_run("a" * 32, "alpha"), _run("b" * 32, "<beta>")]
    return Comparison(runs=runs, params={"lr": ["0.1", "0.5"], "seed": ["1", "1"]}, params_differ=["lr"],
                      metrics={"acc": [1.0, 0.5], "loss": [-2.0, None]})


def test_comparison_html_highlights_differences() -> None:
    html = comparison_html(_comparison())
    assert "&lt;beta&gt;" in html and "<beta>" not in html
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html)
    lr = next(r for r in rows if ">lr<" in r)
    seed = next(r for r in rows if ">seed<" in r)
    assert "≠" in lr and "background:rgba(250,204,21,0.25)" in lr
    assert "≠" not in seed and "background" not in seed.split(">")[0]
    assert "Params (1 of 2 differ)" in html


def test_metric_bars_are_proportional() -> None:
    svg = metric_bars_svg(_comparison(), bar_width=200)
    acc = svg[svg.index(">acc<"):svg.index(">loss<")]
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', acc)]
    assert widths == [200.0, 100.0]
    loss = svg[svg.index(">loss<"):]
    assert ">-2<" in loss and "no value" in loss  # a negative bar and a run without the metric
    empty = Comparison(runs=_comparison().runs, params={}, params_differ=[], metrics={})
    assert metric_bars_svg(empty) == ""


def test_history_renderings() -> None:
    cells = [
        _cell(0, "import pandas as pd\ndf = pd.read_csv('in.csv')", vars_defined=["df", "pd"],
              reads=[Artifact(1, "/d/in.csv", "dataset", "sha256:1")]),
        _cell(1, "model.fit(df)", vars_used=["df", "model"],
              estimators=[Estimator("model", "Ridge", {}, ["df"])],
              metrics=[MetricValue("r2", 0.81234567)],
              writes=[Artifact(2, "/d/<m>.pkl", "model", "sha256:2")]),
        _cell(2, "1/0", status="error", error_name="ZeroDivisionError", error_value="division by zero"),
    ]
    text = history_text(cells)
    lines = text.splitlines()
    assert lines[0] == "cell history: 3 cells"
    assert re.search(r"import pandas as pd\s+df, pd\s+in\.csv", lines[3])
    assert "model: Ridge" in lines[4] and "r2=0.812346" in lines[4] and "<m>.pkl" in lines[4]
    assert "error: ZeroDivisionError" in lines[5]
    html = history_html(cells)
    assert 'title="/d/in.csv"' in html and "&lt;m&gt;.pkl" in html and "<m>" not in html
    assert "rgba(220,38,38,0.08)" in html  # the failed cell is tinted
    assert 'title="ZeroDivisionError: division by zero"' in html


def _graph(edges: list[tuple[str, str, str]], root: str, labels: dict[str, str] | None = None) -> LineageGraph:
    ids = list(dict.fromkeys(n for e in edges for n in e[:2]))
    labels = labels or {}
    nodes = [LineageNode(i, i.split(":")[0] if i.split(":")[0] != "var" else "variable",
                         labels.get(i, i)) for i in ids]
    return LineageGraph(root=root, nodes=nodes, edges=[LineageEdge(*e) for e in edges])


def test_lineage_layers_point_every_edge_forward() -> None:
    graph = _graph([
        ("artifact:1", "cell:2", "read"), ("cell:1", "cell:2", "pd"), ("cell:1", "cell:4", "pd"),
        ("cell:2", "cell:3", "df"), ("cell:3", "estimator:1", "fitted"), ("cell:3", "cell:4", "model"),
        ("cell:4", "artifact:2", "wrote"),
    ], "artifact:2")
    layers = lineage_layers(graph)
    where = {nid: i for i, layer in enumerate(layers) for nid in layer}
    assert sorted(where) == sorted(n.id for n in graph.nodes)
    assert all(where[e.source] < where[e.target] for e in graph.edges)
    assert where["artifact:1"] == where["cell:2"] - 1  # an input sits next to its reader
    assert where["artifact:2"] == len(layers) - 1


def test_lineage_layers_survive_cycles() -> None:
    graph = _graph([("artifact:1", "cell:1", "read"), ("cell:1", "artifact:1", "wrote")], "artifact:1")
    layers = lineage_layers(graph)
    assert sorted(n for layer in layers for n in layer) == ["artifact:1", "cell:1"]
    assert lineage_svg(graph).count('class="nbmlops-node"') == 2


def test_lineage_svg_draws_escaped_boxes_and_arrows() -> None:
    graph = _graph(
        [("artifact:1", "cell:1", "read"), ("cell:1", "cell:2", "X"), ("cell:1", "cell:3", "pd"),
         ("cell:2", "cell:3", "y"), ("cell:3", "artifact:2", "wrote")],
        "artifact:2",
        labels={"cell:1": "<script>alert(1)</script>", "artifact:2": "model.pkl"},
    )
    svg = lineage_svg(graph)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert svg.count('class="nbmlops-node"') == 5
    assert svg.count("<path d=") == 5 + 1  # one per edge, plus the arrowhead marker's
    root_box = svg[svg.index('data-id="artifact:2"'):]
    assert 'stroke-width="2.5"' in root_box[:root_box.index("</g>")]  # the root is drawn bold
    assert ">model.pkl<" in svg and ">pd<" in svg
    assert re.search(r'<path d="M[^"]* L', svg)  # the long edge cell:1 -> cell:3 passes a layer
    html = LineageView(graph).html()
    assert "Lineage of model.pkl" in html and "cell" in html and "variable" not in html


def test_lineage_svg_caps_huge_graphs() -> None:
    edges = [(f"cell:{i}", f"cell:{i + 1}", "x") for i in range(50)]
    svg = lineage_svg(_graph(edges, "cell:50"), max_nodes=10)
    assert svg.count('class="nbmlops-node"') == 10 and 'data-id="cell:50"' in svg
