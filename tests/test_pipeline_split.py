"""Tagged notebook -> Pipeline (nbmlops.pipeline.split) and step variables (pipeline.varsio)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmlops.errors import PipelineError
from nbmlops.pipeline.split import load_tagged_notebook
from nbmlops.pipeline.varsio import find_saved, load_variable, save_variable

from .conftest import make_notebook

EXAMPLE = Path(__file__).resolve().parents[1] / "example_notebooks" / "pipeline_tagged.ipynb"

Cell = tuple[str, str, list[str]]  # (cell type, source, tags)


def write_nb(path: Path, cells: list[Cell], metadata: dict[str, Any] | None = None) -> Path:
    """A notebook of code/markdown/raw cells with stable ids ``c0``, ``c1``..."""
    makers = {
        "code": nbformat.v4.new_code_cell,
        "markdown": nbformat.v4.new_markdown_cell,
        "raw": nbformat.v4.new_raw_cell,
    }
    nb = nbformat.v4.new_notebook(
        cells=[
            makers[kind](source, id=f"c{i}", metadata={"tags": tags} if tags else {})
            for i, (kind, source, tags) in enumerate(cells)
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "version": "3.11"},
            **(metadata or {}),
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def code(source: str, *tags: str) -> Cell:
    return ("code", source, list(tags))


def md(source: str, *tags: str) -> Cell:
    return ("markdown", source, list(tags))


def sources(nb: Any) -> list[str]:
    return [c.source for c in nb.cells]


def ids(nb: Any) -> list[str]:
    return [c.id for c in nb.cells]


# -- the example notebook ---------------------------------------------------------------------


def test_example_tagged_notebook_splits_into_five_steps() -> None:
    p = load_tagged_notebook(EXAMPLE)
    assert p.name == "wine-quality-tagged"  # metadata.nbmlops.pipeline
    assert p.path == EXAMPLE and p.root == EXAMPLE.parent and p.params == {}
    assert list(p.steps) == ["prepare", "train_a", "train_b", "evaluate", "pick_best"]
    deps = {n: s.depends_on for n, s in p.steps.items()}
    assert deps == {
        "prepare": [], "train_a": ["prepare"], "train_b": ["prepare"],
        "evaluate": ["train_a", "train_b"], "pick_best": ["evaluate"],
    }
    vin = {n: s.variables_in for n, s in p.steps.items()}
    assert vin == {
        "prepare": {},
        "train_a": {"train": "prepare"},
        "train_b": {"train": "prepare"},
        "evaluate": {"model_a": "train_a", "model_b": "train_b", "test": "prepare"},
        # transitive: pick_best comes after train_a/train_b through evaluate
        "pick_best": {"model_a": "train_a", "model_b": "train_b", "scores": "evaluate"},
    }
    vout = {n: s.variables_out for n, s in p.steps.items()}
    assert vout == {
        "prepare": ["test", "train"], "train_a": ["model_a"], "train_b": ["model_b"],
        "evaluate": ["scores"], "pick_best": [],
    }
    for name, step in p.steps.items():
        assert step.notebook == EXAMPLE and step.params == {}
        nbformat.validate(step.notebook_node)
        assert step.notebook_node.metadata.nbmlops == {
            "pipeline": "wine-quality-tagged", "step": name,
            "source_notebook": "pipeline_tagged.ipynb",
        }
        assert step.notebook_node.metadata.kernelspec.name == "python3"
        first = next(c for c in step.notebook_node.cells
                     if "parameters" in c.metadata.get("tags", []))
        assert first.source.endswith("nbmlops_inputs = {}\nnbmlops_output_dir = None")
        # the exploration cell tagged `skip` is in no step
        assert all("describe()" not in s for s in sources(step.notebook_node))


def test_example_generation_is_deterministic_and_location_independent(tmp_path: Path) -> None:
    first = load_tagged_notebook(EXAMPLE)
    again = load_tagged_notebook(EXAMPLE)
    moved = tmp_path / "elsewhere" / EXAMPLE.name
    moved.parent.mkdir()
    shutil.copy(EXAMPLE, moved)
    elsewhere = load_tagged_notebook(moved)
    for name in first.steps:
        text = nbformat.writes(first.steps[name].notebook_node)
        assert text == nbformat.writes(again.steps[name].notebook_node)
        assert text == nbformat.writes(elsewhere.steps[name].notebook_node)


# -- layout of a generated notebook -----------------------------------------------------------


def test_generated_cell_layout(tmp_path: Path) -> None:
    path = write_nb(tmp_path / "flow.ipynb", [
        md("# intro, dropped"),                                      # c0
        code("import math", "imports"),                             # c1
        code("alpha = 0.5", "parameters"),                           # c2
        md("## load", "step:load"),                                  # c3
        code("x = math.sqrt(16) * alpha\ny = 2"),                    # c4
        code("x = x + 1000", "skip"),                                # c5
        code("def double(v):\n    return 2 * v", "functions"),      # c6
        code("y", "step:use", "after:load"),                          # c7
        md("## use"),                                                # c8
        code("z = double(x) + y"),                                   # c9
        ("raw", "raw text, dropped", []),                            # c10
        code("   \n"),                                               # c11, empty: dropped
    ])
    p = load_tagged_notebook(path)
    assert p.name == "flow" and p.steps["use"].depends_on == ["load"]
    assert p.steps["load"].variables_out == ["x", "y"]
    assert p.steps["use"].variables_in == {"x": "load", "y": "load"}

    load_nb = p.steps["load"].notebook_node
    assert ids(load_nb) == ["c1", "c2", "c6", "c3", "c4", "nbmlops-save"]
    assert sources(load_nb) == [
        "import math",
        "alpha = 0.5\nnbmlops_inputs = {}\nnbmlops_output_dir = None",
        "def double(v):\n    return 2 * v",
        "## load",
        "x = math.sqrt(16) * alpha\ny = 2",
        "from nbmlops.pipeline.varsio import save_variable\n\n"
        'save_variable(x, nbmlops_output_dir, "x")\n'
        'save_variable(y, nbmlops_output_dir, "y")',
    ]
    assert [c.cell_type for c in load_nb.cells] == ["code"] * 3 + ["markdown"] + ["code"] * 2

    use_nb = p.steps["use"].notebook_node
    # the parameters cell (c2) keeps its place among the shared cells, as in the source
    assert ids(use_nb) == ["c1", "c2", "c6", "nbmlops-load", "c7", "c8", "c9"]
    assert sources(use_nb)[3] == (
        "from nbmlops.pipeline.varsio import load_variable\n\n"
        'x = load_variable(nbmlops_inputs["x"])\n'
        'y = load_variable(nbmlops_inputs["y"])'
    )
    assert use_nb.cells[1].metadata.tags == ["parameters"]
    for nb in (load_nb, use_nb):
        nbformat.validate(nb)
        assert all(c.get("outputs", []) == [] for c in nb.cells)
        assert "x = x + 1000" not in sources(nb) and "raw text, dropped" not in sources(nb)
        assert "# intro, dropped" not in sources(nb)
    # no parameters cell in the source: a generated one
    bare = load_tagged_notebook(write_nb(tmp_path / "bare.ipynb", [code("a = 1", "step:only")]))
    cell = bare.steps["only"].notebook_node.cells[0]
    assert (cell.id, cell.source, cell.metadata.tags) == (
        "nbmlops-parameters", "nbmlops_inputs = {}\nnbmlops_output_dir = None", ["parameters"]
    )


def test_shared_cells_in_every_step_and_skip_cells_nowhere(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("import os", ["imports"]),
        ("a = 1", ["step:one"]),
        ("SKIPPED_MARKER = 1", ["skip"]),
        ("def helper():\n    return 3", ["functions"]),
        ("b = a + helper()", ["step:two", "after:one"]),
        ("import json", ["imports"]),
        ("c = b", ["step:three", "after:two"]),
    ])
    p = load_tagged_notebook(path)
    for step in p.steps.values():
        srcs = sources(step.notebook_node)
        # imports and functions cells, in notebook order, right after the parameters cell
        assert srcs[1:4] == ["import os", "def helper():\n    return 3", "import json"]
        assert not any("SKIPPED_MARKER" in s for s in srcs)
    # a name defined by a functions cell is never passed between steps
    assert p.steps["two"].variables_in == {"a": "one"}


def test_comma_after_tag_is_accepted_and_written_schema_valid(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("a = 1", ["step:one"]),
        ("b = 2", ["step:two"]),
        ("c = a + b", ["step:three", "after:one"]),
    ])
    # nbformat's schema forbids commas in tags, but notebooks written by hand may have them
    path.write_text(path.read_text().replace('"after:one"', '"after:one,two"'))
    p = load_tagged_notebook(path)
    assert p.steps["three"].depends_on == ["one", "two"]
    cell = next(c for c in p.steps["three"].notebook_node.cells if c.source == "c = a + b")
    assert cell.metadata.tags == ["step:three", "after:one", "after:two"]
    nbformat.validate(p.steps["three"].notebook_node)


# -- variable resolution ----------------------------------------------------------------------


def test_variables_come_from_the_latest_ancestor(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("data = [1, 2]\nscale = 2", ["step:load"]),
        ("data = [v * scale for v in data]", ["step:transform", "after:load"]),
        ("total = sum(data)", ["step:report", "after:transform"]),
    ])
    p = load_tagged_notebook(path)
    assert p.steps["transform"].variables_in == {"data": "load", "scale": "load"}
    assert p.steps["report"].variables_in == {"data": "transform"}
    assert p.steps["load"].variables_out == ["data", "scale"]
    assert p.steps["transform"].variables_out == ["data"]


def test_in_place_changes_make_a_step_the_producer(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("model = make()\nrows = []", ["step:init"]),
        ("model.fit(rows)\nrows.append(1)", ["step:train", "after:init"]),
        ("model.predict(rows)", ["step:use", "after:train"]),
    ])
    p = load_tagged_notebook(path)
    # `use` gets the fitted model and the extended list, not init's originals
    assert p.steps["use"].variables_in == {"model": "train", "rows": "train"}
    assert p.steps["train"].variables_out == ["model", "rows"]


def test_names_defined_nowhere_builtins_and_ipython_names_are_left_alone(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("x = 1", ["step:one"]),
        ("%config Completer.use_jedi = False\ny = len(range(3))\n"
         "print(_, __, _3, In, Out, display, undefined_thing, x)",
         ["step:two", "after:one"]),
        ("z = y if x else __name__", ["step:three", "after:two"]),
    ])
    p = load_tagged_notebook(path)
    assert p.steps["two"].variables_in == {"x": "one"}
    # the cell is analysed as IPython runs it (the %magic does not hide the rest), so `y` is found
    assert p.steps["three"].variables_in == {"x": "one", "y": "two"}


def test_builtins_are_passed_only_when_an_ancestor_rebinds_them(tmp_path: Path) -> None:
    p = load_tagged_notebook(make_notebook(tmp_path / "nb.ipynb", [
        ("max = 10", ["step:one"]),
        ("a = max + len('x')", ["step:two", "after:one"]),
        ("id = 3", ["step:three"]),
        ("b = id(a)", ["step:four", "after:two"]),  # `three` is no ancestor: the builtin
    ]))
    assert p.steps["two"].variables_in == {"max": "one"}
    assert p.steps["four"].variables_in == {"a": "two"}


def test_deleted_variables_are_not_saved(tmp_path: Path) -> None:
    p = load_tagged_notebook(make_notebook(tmp_path / "nb.ipynb", [
        ("rows = [1]\ntmp = 2", ["step:one"]),
        ("rows.append(tmp)", ["step:two", "after:one"]),
        ("del rows", []),
        ("n = len(rows)", ["step:three", "after:two"]),
    ]))
    assert p.steps["two"].variables_out == []
    assert p.steps["three"].variables_in == {"rows": "one"}


def test_a_name_used_before_its_own_definition_in_the_same_step_is_left(tmp_path: Path) -> None:
    p = load_tagged_notebook(make_notebook(tmp_path / "nb.ipynb", [
        ("print(counter)\ncounter = 1", ["step:only"]),
    ]))
    assert p.steps["only"].variables_in == {} and p.steps["only"].variables_out == []


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        pytest.param(
            [("import os", ["imports"]), ("x = 1", []), ("y = 2", ["step:a"])],
            "nb.ipynb: cell 1: code cell before the first step:NAME tag; tag it imports, "
            "functions, parameters or skip",
            id="untagged-code-before-first-step",
        ),
        pytest.param(
            [("x = 1", []), ("y = 2", ["parameters"])],
            "nb.ipynb: no step:NAME tags",
            id="no-steps",
        ),
        pytest.param(
            [("x = 1", ["step:prepare"]), ("y = 2", ["step:train"]), ("z = 3", ["step:prepare"])],
            "nb.ipynb: cell 2: duplicate step 'prepare' (first started at cell 0)",
            id="duplicate-step",
        ),
        pytest.param(
            [("x = 1", ["step:prepare"]), ("y = 2", ["step:train"]), ("z = 3", ["after:prep"])],
            "nb.ipynb: cell 2: after:prep names no step (steps: prepare, train)",
            id="after-missing-step",
        ),
        pytest.param(
            [("x = 1", ["step:prepare"]), ("y = x", ["step:train", "after:train"])],
            "nb.ipynb: cell 1: step 'train' cannot come after itself",
            id="self-dependency",
        ),
        pytest.param(
            [("data = 1", ["step:prepare"]),
             ("model_a = data", ["step:train_a", "after:prepare"]),
             ("model_b = data", ["step:train_b", "after:prepare"]),
             ("print('scoring')", ["step:evaluate", "after:train_a"]),
             ("score = model_a + model_b", [])],
            "nb.ipynb: cell 4: step 'evaluate' uses 'model_b' defined in step 'train_b'; "
            "add after:train_b to step 'evaluate'",
            id="variable-from-non-ancestor",
        ),
        pytest.param(
            [("y = x", ["step:first"]), ("x = 1", ["step:second", "after:first"])],
            "nb.ipynb: cell 0: step 'first' uses 'x', defined only in step 'second' that runs "
            "after it",
            id="variable-from-later-step",
        ),
        pytest.param(
            [("x = 1", ["step:a name"])],
            "nb.ipynb: cell 0: invalid step name 'a name'",
            id="bad-step-name",
        ),
        pytest.param(
            [("a = 1", ["parameters"]), ("x = 1", ["step:a"]), ("b = 2", ["parameters"])],
            "nb.ipynb: cell 2: second parameters cell (the first is cell 0)",
            id="two-parameters-cells",
        ),
        pytest.param(
            [("x = 1", ["step:a", "skip"])],
            "nb.ipynb: cell 0: a skip cell cannot also be step:a",
            id="skip-and-step",
        ),
        pytest.param(
            [("import os", ["imports", "after:a"]), ("x = 1", ["step:a"])],
            "nb.ipynb: cell 0: after: tags belong on a step's cells, not on a imports cell",
            id="after-on-imports",
        ),
    ],
)
def test_bad_notebooks_give_one_line_errors_naming_the_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cells: list[Any], expected: str
) -> None:
    make_notebook(tmp_path / "nb.ipynb", cells)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError) as info:
        load_tagged_notebook("nb.ipynb")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_unreadable_notebooks(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="missing.ipynb: no such notebook"):
        load_tagged_notebook(tmp_path / "missing.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(PipelineError, match="broken.ipynb: cannot read notebook") as info:
        load_tagged_notebook(broken)
    assert "\n" not in str(info.value)


def test_cycles_are_left_to_the_caller(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", [
        ("a = b", ["step:one", "after:two"]),
        ("b = a", ["step:two", "after:one"]),
    ])
    p = load_tagged_notebook(path)  # Pipeline.topological_order() names the cycle
    assert p.steps["one"].depends_on == ["two"] and p.steps["two"].depends_on == ["one"]


# -- varsio -----------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    linear_model = pytest.importorskip("sklearn.linear_model")

    out = tmp_path / "vars"
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=[10, 20, 30])
    array = np.arange(12.0).reshape(3, 4)
    model = linear_model.LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    mapping = {"k": [1, 2], "n": None}
    odd = pd.DataFrame({"mixed": [1, "two", [3]]})  # parquet cannot keep it: pickle

    paths = {
        "frame": save_variable(frame, out, "frame"),
        "array": save_variable(array, out, "array"),
        "model": save_variable(model, out, "model"),
        "mapping": save_variable(mapping, out, "mapping"),
        "odd": save_variable(odd, out, "odd"),
    }
    assert {k: Path(v).name for k, v in paths.items()} == {
        "frame": "frame.parquet", "array": "array.joblib", "model": "model.joblib",
        "mapping": "mapping.pkl", "odd": "odd.pkl",
    }
    assert all(Path(v).is_absolute() for v in paths.values())
    assert find_saved(out) == dict(sorted(paths.items()))

    pd.testing.assert_frame_equal(load_variable(paths["frame"]), frame)
    np.testing.assert_array_equal(load_variable(paths["array"]), array)
    loaded = load_variable(paths["model"])
    assert loaded.predict([[3.0]]).tolist() == model.predict([[3.0]]).tolist()
    assert load_variable(paths["mapping"]) == mapping
    assert load_variable(paths["odd"])["mixed"].tolist() == [1, "two", [3]]

    # saving a name again in another format leaves one file for it
    save_variable({"now": "a dict"}, out, "frame")
    assert find_saved(out)["frame"].endswith("frame.pkl")
    assert not (out / "frame.parquet").exists()
    assert find_saved(tmp_path / "nothing-here") == {}


def test_load_of_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot load variable 'model_b'"):
        load_variable(tmp_path / "model_b.joblib")
    with pytest.raises(ValueError, match="nbmlops_output_dir is not set"):
        save_variable(1, None, "x")
    with pytest.raises(ValueError, match="plain name"):
        save_variable(1, tmp_path, "../escape")
    with pytest.raises(TypeError, match="cannot save variable 'f'"):
        save_variable(lambda: 1, tmp_path, "f")
    assert find_saved(tmp_path) == {}  # no half-written file left behind


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.kernel
def test_generated_steps_run_with_papermill_and_pass_variables(tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    pytest.importorskip("pandas")
    source = write_nb(tmp_path / "two_steps.ipynb", [
        code("import pandas as pd", "imports"),
        code("factor = 3", "parameters"),
        code("frame = pd.DataFrame({'v': [1, 2, 3]})\nweights = {'v': factor}", "step:make"),
        code("result = int(frame['v'].sum()) * weights['v']\nprint('result', result)",
             "step:use", "after:make"),
    ])
    p = load_tagged_notebook(source)
    assert p.steps["use"].variables_in == {"frame": "make", "weights": "make"}

    saved: dict[str, dict[str, str]] = {}
    for name in ["make", "use"]:
        step = p.steps[name]
        step_path = tmp_path / "steps" / f"{name}.ipynb"
        step_path.parent.mkdir(exist_ok=True)
        nbformat.write(step.notebook_node, step_path)
        out_dir = tmp_path / "vars" / name
        inputs = {var: saved[producer][var] for var, producer in step.variables_in.items()}
        papermill.execute_notebook(
            str(step_path), str(tmp_path / "steps" / f"{name}.out.ipynb"),
            parameters={"nbmlops_inputs": inputs, "nbmlops_output_dir": str(out_dir)},
            kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        )
        saved[name] = find_saved(out_dir)

    assert sorted(saved["make"]) == ["frame", "weights"]
    assert saved["make"]["frame"].endswith("frame.parquet")
    assert saved["use"] == {}
    executed = nbformat.read(tmp_path / "steps" / "use.out.ipynb", as_version=4)
    stdout = "".join(
        o.get("text", "") for c in executed.cells for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )
    assert "result 18" in stdout


def test_parameters_cell_keeps_its_place_and_cells_know_their_source_index(tmp_path: Path) -> None:
    """A parameters cell may use an import from an `imports` cell above it; errors are
    reported at the cell's index in the notebook the user wrote."""
    path = write_nb(tmp_path / "p.ipynb", [
        code("import os", "imports"),                     # 0
        code("workers = os.cpu_count() or 1", "parameters"),  # 1
        code("a = workers", "step:a"),                    # 2
        code("b = a + 1", "step:b", "after:a"),           # 3
        code("c = b * 2"),                                # 4
    ])
    b_nb = load_tagged_notebook(path).steps["b"].notebook_node
    assert [c.metadata.get("nbmlops", {}).get("source_index") for c in b_nb.cells] == [
        0, 1, None, 3, 4]  # the generated load cell has none
    assert sources(b_nb)[:2] == ["import os", "workers = os.cpu_count() or 1\n"
                                 "nbmlops_inputs = {}\nnbmlops_output_dir = None"]
