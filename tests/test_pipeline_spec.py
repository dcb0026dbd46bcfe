"""pipeline.yaml loading and validation (real files, one-line errors with positions) and the
graph queries of Pipeline."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from jsonschema import Draft202012Validator

from nbmlops.errors import InvalidArgumentError
from nbmlops.pipeline.load import load_pipeline
from nbmlops.pipeline.spec import (
    PIPELINE_SCHEMA,
    Pipeline,
    PipelineError,
    Step,
    load_pipeline_yaml,
    parse_duration,
    validate_pipeline_yaml,
)


def notebooks(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(), path)


def write(root: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PipelineError) as info:
        load_pipeline_yaml(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def where(message: str) -> tuple[str, int, int]:
    m = re.match(r"^(.*?):(\d+):(\d+): ", message)
    assert m, f"no file:line:col in {message!r}"
    return m.group(1), int(m.group(2)), int(m.group(3))


FULL = """
# the wine pipeline
name: wine-quality
description: Train two models and keep the best.
params:
  alpha: 0.5
  features: [a, b]
  nested: {k: 1}
  started: 2024-01-01
defaults:
  retries: 1
  timeout: 10m
  cache: false
steps:
  prepare:
    notebook: prepare.ipynb
    params: {test_size: 0.25}
    inputs: data/*.csv
    outputs: [data/train.parquet, data/test.parquet]
  train_a:
    notebook: models/train.ipynb
    depends_on: prepare
    params: {model: ridge}
    timeout: 1h30m
  train_b:
    notebook: models/train.ipynb
    depends_on: [prepare]
    retries: 0
    timeout: 90
    cache: true
  evaluate:
    notebook: evaluate.ipynb
    depends_on: [train_a, train_b]
    inputs: [data/test.parquet]
    outputs: report.json
    timeout: "2.5"
"""


# -- the model and the schema ---------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(PIPELINE_SCHEMA)
    assert PIPELINE_SCHEMA["$schema"].endswith("2020-12/schema")


def test_full_yaml_loads_to_the_expected_pipeline(tmp_path: Path) -> None:
    notebooks(tmp_path, "prepare.ipynb", "models/train.ipynb", "evaluate.ipynb")
    path = write(tmp_path, FULL)
    p = load_pipeline_yaml(path)
    assert p.name == "wine-quality"
    assert p.path == path.absolute() and p.path.is_absolute()
    assert p.root == tmp_path.absolute()
    assert p.params == {"alpha": 0.5, "features": ["a", "b"], "nested": {"k": 1},
                        "started": "2024-01-01"}  # YAML timestamps stay text
    assert list(p.steps) == ["prepare", "train_a", "train_b", "evaluate"]
    assert p.steps["prepare"] == Step(
        name="prepare", notebook=tmp_path / "prepare.ipynb", params={"test_size": 0.25},
        depends_on=[], inputs=["data/*.csv"], outputs=["data/train.parquet", "data/test.parquet"],
        retries=1, timeout=600.0, cache=False,
    )
    a, b, ev = p.steps["train_a"], p.steps["train_b"], p.steps["evaluate"]
    assert a.notebook == b.notebook == tmp_path / "models" / "train.ipynb"
    assert a.notebook.is_absolute()
    assert a.depends_on == ["prepare"] and b.depends_on == ["prepare"]
    assert (a.retries, a.timeout, a.cache) == (1, 5400.0, False)  # defaults, own timeout
    assert (b.retries, b.timeout, b.cache) == (0, 90.0, True)  # own values win
    assert ev.depends_on == ["train_a", "train_b"]
    assert ev.inputs == ["data/test.parquet"] and ev.outputs == ["report.json"]
    assert ev.timeout == 2.5
    assert p.topological_order() == ["prepare", "train_a", "train_b", "evaluate"]


def test_minimal_yaml_gets_step_defaults(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    p = load_pipeline_yaml(write(tmp_path, "name: x\nsteps:\n  a: {notebook: a.ipynb}\n"))
    step = p.steps["a"]
    assert (step.params, step.depends_on, step.inputs, step.outputs) == ({}, [], [], [])
    assert (step.retries, step.timeout, step.cache) == (0, None, True)
    assert p.params == {}


def test_yaml_keys_are_taken_as_written_and_merge_keys_work(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb", "b.ipynb")
    p = load_pipeline_yaml(write(tmp_path, """
        name: x
        steps:
          on:                       # YAML 1.1 would make this key the boolean true
            notebook: a.ipynb
            retries: 3
            params: &shared {lr: 0.1}
          b:
            notebook: b.ipynb
            depends_on: "on"
            params:
              <<: *shared
              seed: 1
    """))
    assert list(p.steps) == ["on", "b"]
    assert p.steps["b"].params == {"lr": 0.1, "seed": 1}


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), (2.5, 2.5), ("300", 300.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
    ("1h30m", 5400.0), ("1h 30m 15s", 5415.0), ("1.5h", 5400.0), ("2m30s", 150.0),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "30m1h", "1 h 2", "-5s", "h30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- errors: one line, FILE:LINE:COL, human ------------------------------------------------------


def test_pipeline_error_is_an_invalid_argument_error() -> None:
    assert issubclass(PipelineError, InvalidArgumentError)
    assert PipelineError.exit_code == 2


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsteps:\n  a: {notebook: a.ipynb\n  b: 1\n")
    msg = error_of(path)
    file, line, _ = where(msg)
    assert file == str(path)
    assert line in (3, 4, 5)
    assert "YAML syntax error:" in msg


def test_yaml_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "name: x\nsteps:\n\ta: 1\n"))
    assert where(msg)[1:] == (3, 1)
    assert "YAML syntax error" in msg and "'\\t'" in msg


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    notebooks(tmp_path, "train.ipynb")
    path = write(tmp_path, """
        # line 1
        # line 2
        name: x
        steps:
          prepare:
            notebook: train.ipynb
          train:
            notebook: train.ipynb
            depnds_on: [prepare]
    """)
    assert error_of(path) == (f"{path}:9:5: steps.train: unknown key 'depnds_on' "
                              "(did you mean 'depends_on'?)")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nparms: {a: 1}\nsteps:\n  a: {notebook: a.ipynb}\n")
    assert error_of(path) == f"{path}:2:1: unknown key 'parms' (did you mean 'params'?)"


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "# a pipeline\n\nname: x\n")
    assert error_of(path) == f"{path}:3:1: missing required key 'steps'"


def test_missing_notebook_key_points_at_the_step(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsteps:\n  train:\n    retries: 1\n")
    assert error_of(path) == f"{path}:3:3: steps.train: missing required key 'notebook'"


def test_wrong_type(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  a:\n    notebook: a.ipynb\n    cache: maybe\n")
    assert error_of(path) == (f"{path}:5:12: steps.a.cache: expected true or false, "
                              "got a string ('maybe')")


def test_steps_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsteps:\n  - a.ipynb\n  - b.ipynb\n")
    msg = error_of(path)
    assert msg == f"{path}:3:3: steps: expected a mapping, got a list"


def test_negative_retries(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          prepare:
            notebook: a.ipynb
          train:
            notebook: a.ipynb
            depends_on: prepare
            retries: -1
    """)
    assert error_of(path) == f"{path}:8:14: steps.train.retries: -1 is less than the minimum of 0"


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          a:
            notebook: a.ipynb
            timeout: 5x
            retries: 11
            cache: 1
    """)
    msg = error_of(path)
    assert msg.startswith(f"{path}:5:14: steps.a.timeout: invalid value '5x': expected a number of "
                          "seconds > 0 or a duration")
    assert msg.endswith("(and 2 more problems)")
    problems = validate_pipeline_yaml(path)
    assert [where(p)[1:] for p in problems] == [(5, 14), (6, 14), (7, 12)]
    assert problems[1].endswith("steps.a.retries: 11 is greater than the maximum of 10")
    assert problems[2].endswith("steps.a.cache: expected true or false, got a number (1)")


def test_bad_names(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: my pipeline
        steps:
          1st:
            notebook: a.ipynb
            params: {test-size: 1}
    """)
    problems = validate_pipeline_yaml(path)
    assert problems == [
        f"{path}:1:7: name: invalid value 'my pipeline': use letters, digits, '_', '.' and '-', "
        "starting with a letter or digit",
        f"{path}:3:3: steps: invalid name '1st': a step name uses letters, digits, '_' and '-', "
        "starting with a letter or '_'",
        f"{path}:5:14: steps.1st.params: invalid name 'test-size': a parameter name must be a "
        "Python identifier",
    ]


def test_keyword_param_name(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nparams:\n  class: 1\nsteps:\n  a: {notebook: a.ipynb}\n")
    assert error_of(path) == (f"{path}:3:3: params: invalid name 'class': a Python keyword "
                              "cannot be a parameter name")


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  a: {notebook: a.ipynb, timeout: 0}\n")
    assert error_of(path) == f"{path}:3:35: steps.a.timeout: must be greater than 0, got 0"
    path = write(tmp_path, "name: x\ndefaults: {timeout: 0s}\nsteps:\n  a: {notebook: a.ipynb}\n")
    assert error_of(path) == f"{path}:2:21: defaults.timeout: must be greater than 0, got '0s'"


def test_bad_list_item_is_reported_at_the_item(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          a:
            notebook: a.ipynb
            outputs:
              - out.csv
              - 42
    """)
    assert error_of(path) == f"{path}:7:9: steps.a.outputs[1]: expected a string, got a number (42)"


def test_duplicate_step_key(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          train:
            notebook: a.ipynb
          evaluate:
            notebook: a.ipynb
          train:
            notebook: a.ipynb
    """)
    assert error_of(path) == f"{path}:7:3: steps: duplicate key 'train' (first defined at line 3)"


def test_duplicate_key_inside_a_step(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  a:\n    notebook: a.ipynb\n    notebook: b.ipynb\n")
    assert error_of(path) == f"{path}:5:5: steps.a: duplicate key 'notebook' (first defined at line 4)"


def test_missing_notebook_file(tmp_path: Path) -> None:
    notebooks(tmp_path, "train.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  train:\n    notebook: trian.ipynb\n")
    assert error_of(path) == (f"{path}:4:15: steps.train.notebook: no such notebook 'trian.ipynb' "
                              "(did you mean 'train.ipynb'?)")


def test_notebook_is_resolved_against_the_yaml_directory(tmp_path: Path, monkeypatch:
                                                          pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    notebooks(project, "nb/a.ipynb")
    notebooks(tmp_path, "nb/b.ipynb")  # exists relative to the cwd only
    path = write(project, "name: x\nsteps:\n  a: {notebook: nb/a.ipynb}\n  b: {notebook: nb/b.ipynb}\n")
    monkeypatch.chdir(tmp_path)
    msg = error_of(Path("project/pipeline.yaml"))
    assert msg.startswith("project/pipeline.yaml:4:17: steps.b.notebook: no such notebook 'nb/b.ipynb'")
    assert "did you mean" not in msg  # "a" is no near miss of "b" (stems are compared)
    (project / "nb" / "a.ipynb").rename(project / "nb" / "b.ipynb")
    notebooks(project, "nb/a.ipynb")
    p = load_pipeline(Path("project/pipeline.yaml"))
    assert p.steps["b"].notebook == project / "nb" / "b.ipynb"
    assert p.root == project and path.exists()


def test_depends_on_unknown_step(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          prepare:
            notebook: a.ipynb
          train:
            notebook: a.ipynb
            depends_on: [prepare, prepar]
    """)
    assert error_of(path) == (f"{path}:7:27: steps.train.depends_on[1]: unknown step 'prepar' "
                              "(did you mean 'prepare'?)")


def test_depends_on_unknown_step_as_a_string(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  train:\n    notebook: a.ipynb\n    depends_on: nope\n")
    assert error_of(path) == f"{path}:5:17: steps.train.depends_on: unknown step 'nope'"


def test_self_dependency(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, "name: x\nsteps:\n  a: {notebook: a.ipynb, depends_on: [a]}\n")
    assert error_of(path) == f"{path}:3:39: steps.a.depends_on[0]: a step cannot depend on itself"


def test_two_step_cycle(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    path = write(tmp_path, """
        name: x
        steps:
          start:
            notebook: a.ipynb
          a:
            notebook: a.ipynb
            depends_on: [start, b]
          b:
            notebook: a.ipynb
            depends_on: a
    """)
    msg = error_of(path)
    assert where(msg) == (str(path), 5, 3)  # the first step of the cycle
    assert "cycle: a -> b -> a" in msg


def test_three_step_cycle_in_order(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    # a waits for c, b waits for a, c waits for b: a runs before b before c before a
    path = write(tmp_path, """
        name: x
        steps:
          a: {notebook: a.ipynb, depends_on: c}
          b: {notebook: a.ipynb, depends_on: a}
          c: {notebook: a.ipynb, depends_on: b}
          d: {notebook: a.ipynb, depends_on: c}
    """)
    msg = error_of(path)
    assert where(msg)[1:] == (3, 3)
    assert "cycle: a -> b -> c -> a" in msg


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here yet\n")
    assert error_of(path) == (f"{path}: empty pipeline definition "
                              "(expected a mapping with 'name' and 'steps')")
    path.write_text("")
    assert "empty pipeline definition" in error_of(path)


def test_top_level_list(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: x\n- steps: {}\n")
    assert error_of(path) == (f"{path}:1:1: the top level must be a mapping with 'name' and "
                              "'steps', not a list")


def test_empty_steps_and_null_step(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsteps: {}\n")
    assert error_of(path) == f"{path}:2:8: steps: at least one step is required"
    path = write(tmp_path, "name: x\nsteps:\n  a:\n")
    assert error_of(path) == f"{path}:3:3: steps.a: expected a mapping, got null"


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.system [echo hi]\nsteps: {}\n")
    msg = error_of(path)
    assert where(msg)[1:] == (1, 7) and "YAML" in msg


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["name: x", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    path = write(tmp_path, "\n".join([*lines, "steps: {}", ""]))
    assert "too large" in error_of(path)


def test_several_documents_are_refused(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "name: x\n---\nname: y\n"))
    assert where(msg)[1:] == (2, 1)
    assert "expected a single document" in msg


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such file"):
        load_pipeline(tmp_path / "nope.yaml")
    with pytest.raises(PipelineError, match="no such file"):
        load_pipeline_yaml(tmp_path / "nope.yaml")
    (tmp_path / "pipeline.toml").write_text("")
    with pytest.raises(PipelineError, match="not a pipeline definition"):
        load_pipeline(tmp_path / "pipeline.toml")
    with pytest.raises(PipelineError, match="no pipeline.yaml"):
        load_pipeline(tmp_path)


def test_load_pipeline_picks_the_yaml_form(tmp_path: Path) -> None:
    notebooks(tmp_path, "a.ipynb")
    write(tmp_path, "name: x\nsteps:\n  a: {notebook: a.ipynb}\n", name="flow.YML")
    assert load_pipeline(tmp_path / "flow.YML").name == "x"
    write(tmp_path, "name: y\nsteps:\n  a: {notebook: a.ipynb}\n")
    assert load_pipeline(tmp_path).name == "y"  # a directory means its pipeline.yaml


def test_importing_spec_stays_light() -> None:
    code = ("import sys, nbmlops.pipeline.spec\n"
            "print(','.join(m for m in ('yaml', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# -- graph queries ---------------------------------------------------------------------------


def pipeline(*steps: tuple[str, list[str]]) -> Pipeline:
    return Pipeline(name="p", path=Path("/p/pipeline.yaml"), root=Path("/p"),
                    steps={n: Step(name=n, notebook=Path(f"/p/{n}.ipynb"), depends_on=d)
                           for n, d in steps})


DIAMOND = pipeline(("prepare", []), ("train_a", ["prepare"]), ("train_b", ["prepare"]),
                   ("evaluate", ["train_a", "train_b"]), ("pick_best", ["evaluate"]))


def test_topological_order_ties_keep_definition_order() -> None:
    p = pipeline(("z", []), ("late", ["m"]), ("a", []), ("m", []), ("b", ["z"]))
    assert p.topological_order() == ["z", "a", "m", "late", "b"]
    p = pipeline(("c", ["a", "b"]), ("b", []), ("a", []))
    assert p.topological_order() == ["b", "a", "c"]
    assert DIAMOND.topological_order() == ["prepare", "train_a", "train_b", "evaluate",
                                           "pick_best"]


def test_topological_order_errors() -> None:
    with pytest.raises(PipelineError, match=r"step 'b' depends on unknown step 'aa' \(did you "
                                            r"mean 'a'\?\)"):
        pipeline(("a", []), ("b", ["aa"])).topological_order()
    p = pipeline(("x", []), ("a", ["c", "x"]), ("b", ["a"]), ("c", ["b"]))
    with pytest.raises(PipelineError, match="cycle: a -> b -> c -> a"):
        p.topological_order()
    assert p.find_cycle() == ["a", "b", "c", "a"]
    assert pipeline(("a", ["a"])).find_cycle() == ["a", "a"]
    assert DIAMOND.find_cycle() is None


def test_downstream_upstream_levels_on_a_diamond() -> None:
    assert DIAMOND.downstream("prepare") == {"train_a", "train_b", "evaluate", "pick_best"}
    assert DIAMOND.downstream("train_a") == {"evaluate", "pick_best"}
    assert DIAMOND.downstream("pick_best") == set()
    assert DIAMOND.upstream("evaluate") == {"prepare", "train_a", "train_b"}
    assert DIAMOND.upstream("prepare") == set()
    assert DIAMOND.levels() == [["prepare"], ["train_a", "train_b"], ["evaluate"], ["pick_best"]]
    with pytest.raises(PipelineError, match="no step 'evaluat'.*did you mean 'evaluate'"):
        DIAMOND.downstream("evaluat")


def test_levels_use_the_longest_path() -> None:
    p = pipeline(("a", []), ("b", ["a"]), ("c", ["a", "b"]), ("d", []))
    assert p.levels() == [["a", "d"], ["b"], ["c"]]
    assert p.edges() == [("a", "b"), ("a", "c"), ("b", "c")]
