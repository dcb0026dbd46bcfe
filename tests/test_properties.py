"""Property tests (hypothesis) of every place text from a user becomes a value.

pipeline.yaml loading, ``%mlops`` arguments (a real InteractiveShell), ``-p`` values (the
coercion and ``nbmlops run -p`` through click), and the REST parsers. The property is the
same everywhere: the input is accepted, or refused with the one clear error of that face
(NbmlopsError, IPython's UsageError, a click usage error with exit code 2, HTTP 400's
InvalidArgumentError); never another exception, and a refusal writes nothing to the store.
"""

from __future__ import annotations

import json
import sqlite3
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbmlops.errors import InvalidArgumentError, NbmlopsError, ParameterError
from nbmlops.params import ParamInfo, coerce_value
from nbmlops.pipeline.load import load_pipeline
from nbmlops.server.params import QueryArgs, json_body, param_values, run_id_arg

from .conftest import make_notebook

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FEW = settings(max_examples=20, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])

# -- pipeline.yaml ----------------------------------------------------------------------------

_KEYS = ["name", "params", "steps", "notebook", "depends_on", "inputs", "outputs", "retries",
         "timeout", "params", "kernel", "cache", "validate", "gate", "after", "a", "b"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True),
                     st.text(string.printable, max_size=12),
                     st.sampled_from(["a.ipynb", "b.ipynb", "missing.ipynb", "../x.ipynb", "a",
                                      "b", "1h", "-1s", "*", "[a]"]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)),
    max_leaves=12,
)
_steps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "a b", "", "0"]),
    st.one_of(_values, st.fixed_dictionaries(
        {"notebook": st.sampled_from(["a.ipynb", "b.ipynb", "nope.ipynb", 3])},
        optional={"depends_on": st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=3),
                  "inputs": st.lists(st.sampled_from(["d.csv", "", "/etc/passwd"]), max_size=2),
                  "retries": st.one_of(st.integers(-2, 5), st.text(max_size=3)),
                  "timeout": st.one_of(st.integers(-2, 5), st.sampled_from(["1m", "x", "0s"]))},
    )),
    max_size=3,
)
_documents = st.one_of(
    st.builds(lambda name, params, steps: {"name": name, "params": params, "steps": steps},
              st.one_of(st.text(max_size=8), st.integers()),
              st.one_of(st.dictionaries(st.text(string.ascii_letters + "_ 1", max_size=6),
                                        _scalars, max_size=3), _values),
              _steps),
    st.dictionaries(st.sampled_from(_KEYS), _values, max_size=4),
    _values,
)


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("props_pipe")
    make_notebook(d / "a.ipynb", [("seed = 1", ["parameters"]), "x = seed"])
    make_notebook(d / "b.ipynb", [("seed = 1\nrate = 0.5", ["parameters"]), "y = rate"])
    return d


def _load_checked(path: Path) -> None:
    try:
        load_pipeline(path)
    except NbmlopsError as exc:
        text = str(exc)
        assert text and "Traceback" not in text
        assert isinstance(exc, InvalidArgumentError) or exc.exit_code in (2, 4), repr(exc)


@FAST
@given(doc=_documents)
def test_pipeline_yaml_documents_load_or_fail_with_one_clear_error(pipe_dir: Path, doc: Any) -> None:
    import yaml

    path = pipe_dir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load_checked(path)


@FAST
@given(text=st.one_of(st.text(max_size=200),
                      st.text(string.printable, max_size=200),
                      st.sampled_from(["steps: {a: {notebook: a.ipynb}", "&a [*a]", "!!python/object:os.system x",
                                       "a: &x {b: *x}", "- - -\n", "name: x\nsteps: !!binary AAAA",
                                       "\ufeffname: x\nsteps: {}", "steps:\n\t a: 1"])))
def test_pipeline_yaml_text_loads_or_fails_with_one_clear_error(pipe_dir: Path, text: str) -> None:
    path = pipe_dir / "raw.pipeline.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_checked(path)


# -- -p values ------------------------------------------------------------------------------

_TYPES = [None, "NoneType", "str", "int", "float", "bool", "list", "dict", "tuple", "complex"]
_param_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["0x", "0x1F", "1e999", "nan", "-inf", "[1, [2, [3]]]", "[" * 200, "{'a': 1}",
                     "None", "null", "yes", "off", "9" * 5000, "1_000", " 12 ", "()", "(1,)",
                     "{1, 2}", "b'x'", "__import__('os')", "\x00"]),
)


@FAST
@given(type_name=st.sampled_from(_TYPES), text=_param_text)
def test_a_p_value_is_coerced_or_refused_with_a_parameter_error(type_name: str | None, text: str) -> None:
    info = ParamInfo("n", None, type_name, "")
    try:
        value = coerce_value("n", text, info)
    except ParameterError as exc:
        assert exc.exit_code == 2 and "'n'" in str(exc)
        return
    if type_name == "int":
        assert isinstance(value, int)
    elif type_name == "float":
        assert isinstance(value, float)
    elif type_name == "bool":
        assert isinstance(value, bool)
    elif type_name == "str":
        assert value == text


@pytest.fixture(scope="module")
def run_project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("props_run")
    nb = make_notebook(d / "nb.ipynb", [("count = 3\nrate = 0.5\nflag = True\nname = 'x'\n"
                                         "items = [1, 2]", ["parameters"]), "y = count"])
    db = d / "store" / "nbmlops.db"
    from nbmlops.store import Store

    with Store.open(f"sqlite:///{db}") as s:  # the store exists before the first refusal
        s.experiments()
    return {"dir": d, "nb": nb, "db": db, "url": f"sqlite:///{db}"}


def _rows(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("runs", "params", "tags", "cell_executions", "artifacts")}
    finally:
        con.close()


def _refused(name: str, value: str) -> bool:
    types = {"count": "int", "rate": "float", "flag": "bool", "name": "str", "items": "list"}
    if name not in types:
        return True
    try:
        coerce_value(name, value, ParamInfo(name, None, types[name], ""))
    except ParameterError:
        return True
    return False


@FEW
@given(pairs=st.lists(st.tuples(st.sampled_from(["count", "rate", "flag", "items", "cnt", "Count",
                                                 "not a name", "-x", ""]),
                                 _param_text.filter(lambda t: "\x00" not in t)),
                      min_size=1, max_size=3).filter(lambda ps: any(_refused(n, v) for n, v in ps)))
def test_nbmlops_run_refuses_bad_p_values_before_writing_anything(
    run_project: dict[str, Any], pairs: list[tuple[str, str]]
) -> None:
    from nbmlops.cli import cli

    before = _rows(run_project["db"])
    args = ["--store", run_project["url"], "run", str(run_project["nb"])]
    for name, value in pairs:
        args += ["-p", name, value]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and "Traceback" not in result.output
    assert _rows(run_project["db"]) == before  # nothing written


# -- %mlops in a real InteractiveShell ----------------------------------------------------------

_SUBS = ["status", "start", "stop", "pause", "resume", "history", "runs", "show", "compare",
         "lineage", "export", "register", "statu", "", "--help", "-x"]
_TOKENS = ["--limit", "-n", "0", "-1", "10", "abc", "--name", "'my run'", '"unclosed', "--to",
           "out.ipynb", "/", "--json", "--downstream", "--run", "ffff", "x", "--alias", "a@b",
           "--reason", "--sort", "status", "\\", "=", "--", "--limit=9999999999999"]


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    d = tmp_path_factory.mktemp("props_shell")
    mp = pytest.MonkeyPatch()
    url = f"sqlite:///{d / 'store' / 'nbmlops.db'}"
    mp.setenv("NBMLOPS_STORE_URL", url)
    mp.setenv("NBMLOPS_ARTIFACT_URL", str(d / "store" / "artifacts"))
    mp.setenv("IPYTHONDIR", str(d / "ipython"))
    mp.chdir(d)
    config = Config()
    config.HistoryManager.enabled = False
    from nbmlops.store import Store

    with Store.open(url) as s:
        s.experiments()
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "nbmlops")
    sh.run_cell("x = 1")
    db = d / "store" / "nbmlops.db"
    deadline = time.monotonic() + 20
    while _rows(db)["cell_executions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the cell's record is written in the background
    sh.user_ns["db_path"] = db
    yield sh
    sh.run_line_magic("unload_ext", "nbmlops")
    InteractiveShell.clear_instance()
    mp.undo()


@FAST
@given(sub=st.sampled_from(_SUBS),
       words=st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=8)), max_size=4))
def test_mlops_lines_run_or_raise_one_usage_error(shell: Any, sub: str, words: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError

    line = " ".join([sub, *words]).replace("\x00", "")
    if sub in ("start", "stop", "pause", "resume", "register"):
        line = line + " --help" if not words else line  # bare state changes are not the point
    from nbmlops.capture.session import active_session

    db = shell.user_ns["db_path"]
    session = active_session()
    if session is not None:  # what earlier examples queued lands now, not during this one
        assert session.flush(60)
    before = _rows(db)
    try:
        shell.run_line_magic("mlops", line)
    except UsageError as exc:
        text = str(exc)
        assert text.strip() and "Traceback" not in text, text
        if sub not in ("start", "stop"):  # only start/stop end or open a run
            assert _rows(db) == before
    capsys.readouterr()


# -- REST parsers -----------------------------------------------------------------------------

_raw_values = st.lists(st.one_of(st.binary(max_size=30), st.text(max_size=30).map(str.encode),
                                 st.sampled_from([b"", b"0", b"-1", b"50", b"1e3", b"true", b"no",
                                                  b"\xff", b"a\x00b", b"x" * 1200, b"ab,cd",
                                                  b"start_time", b"9" * 40])),
                       max_size=3)
_ALLOWED = ["limit", "offset", "sort", "order", "status", "ids", "path", "q", "flag"]


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(st.one_of(st.sampled_from(_ALLOWED + ["token", "_xsrf", "1700000000"]),
                                     st.text(max_size=6)), _raw_values, max_size=5))
def test_query_parameters_parse_or_raise_invalid_argument(raw: dict[str, list[bytes]]) -> None:
    try:
        args = QueryArgs(raw, _ALLOWED)
        limit = args.integer("limit", 50, 1, 1000)
        assert limit is None or 1 <= limit <= 1000
        offset = args.integer("offset", 0, 0, 10**9)
        assert offset is not None and offset >= 0
        args.choice("sort", {"start_time", "name", "status"}, "start_time")
        assert args.flag("flag") in (True, False)
        text = args.text("q")
        assert text is None or (len(text) <= 1000 and "\x00" not in text and text == text.strip())
        for i in args.id_list("ids", most=20):
            assert run_id_arg(i) == i
    except InvalidArgumentError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=80),
                      st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                             st.text(max_size=10)),
                                   lambda inner: st.one_of(
                                       st.lists(inner, max_size=3),
                                       st.dictionaries(st.sampled_from(["path", "params", "x"]) |
                                                       st.text(max_size=5), inner, max_size=3)),
                                   max_leaves=10).map(lambda v: json.dumps(v).encode())))
def test_json_bodies_and_params_parse_or_raise_invalid_argument(body: bytes) -> None:
    try:
        data = json_body(body, ["path", "params"], ["path"])
        params = param_values(data.get("params"))
        assert all(k.isidentifier() and isinstance(v, str) for k, v in params.items())
    except InvalidArgumentError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=80))
def test_run_ids_in_paths_are_checked(value: str) -> None:
    try:
        assert run_id_arg(value) == value
    except InvalidArgumentError as exc:
        assert "is not a run id" in str(exc)
