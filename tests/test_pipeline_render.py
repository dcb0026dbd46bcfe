"""DAG drawings: text, Graphviz dot, Mermaid, SVG."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import nbmlops.pipeline.render as render_module
from nbmlops.pipeline.render import render_dot, render_mermaid, render_svg, render_text
from nbmlops.pipeline.spec import Pipeline, Step

SVG = "{http://www.w3.org/2000/svg}"


def pipeline(*steps: tuple[str, list[str]], notebooks: dict[str, str] | None = None) -> Pipeline:
    nbs = notebooks or {}
    return Pipeline(name="wine", path=Path("/p/pipeline.yaml"), root=Path("/p"),
                    steps={n: Step(name=n, notebook=Path("/p") / nbs.get(n, f"{n}.ipynb"),
                                   depends_on=d) for n, d in steps})


DIAMOND = pipeline(("prepare", []), ("train_a", ["prepare"]), ("train_b", ["prepare"]),
                   ("evaluate", ["train_a", "train_b"]), ("pick_best", ["evaluate"]))
EDGES = {("prepare", "train_a"), ("prepare", "train_b"), ("train_a", "evaluate"),
         ("train_b", "evaluate"), ("evaluate", "pick_best")}
# a skip edge (prepare -> report spans two levels) and a fan-in of three
WIDE = pipeline(("prepare", []), ("a", ["prepare"]), ("b", ["prepare"]), ("c", ["a"]),
                ("report", ["c", "b", "prepare"]))


def text_edges(text: str, arrow: str) -> set[tuple[str, str]]:
    """(source, target) pairs read back from a text drawing."""
    edges: set[tuple[str, str]] = set()
    source = None
    for line in text.splitlines():
        if arrow in line:
            assert source is not None
            edges.add((source, line.split(arrow, 1)[1].strip()))
        else:
            source = line.split()[0]
    return edges


# -- text -------------------------------------------------------------------------------------


def test_text_shows_every_edge_of_a_diamond() -> None:
    text = render_text(DIAMOND)
    assert text_edges(text, "──▶") == EDGES
    assert text.splitlines()[0] == "prepare"
    assert " ├──▶ train_a" in text and " └──▶ train_b" in text
    assert "evaluate  ◀── train_a, train_b" in text  # the join says what it waits for
    lines = [ln.split()[0] for ln in text.splitlines() if "──▶" not in ln]
    assert lines == ["prepare", "train_a", "train_b", "evaluate", "pick_best"]


def test_text_shows_states_and_skip_edges() -> None:
    text = render_text(WIDE, {"prepare": "finished", "a": "cached", "report": "failed"})
    assert text_edges(text, "──▶") == {(d, n) for d, n in WIDE.edges()}
    assert "prepare [finished]" in text and "a [cached]" in text
    assert "report [failed]  ◀── c, b, prepare" in text


def test_text_ascii() -> None:
    text = render_text(DIAMOND, {"train_a": "cached"}, ascii=True)
    assert text.isascii()
    assert text_edges(text, "-->") == EDGES
    assert "train_a [cached]" in text and "evaluate  <-- train_a, train_b" in text


def test_text_of_no_steps() -> None:
    assert render_text(pipeline()) == "(no steps)"


# -- dot ------------------------------------------------------------------------------------------


def test_dot_has_a_node_and_an_edge_line_each() -> None:
    dot = render_dot(DIAMOND, {"train_a": "failed"})
    lines = dot.strip().splitlines()
    assert lines[0] == 'digraph "wine" {' and lines[-1] == "}"
    assert dot.count("{") == dot.count("}")
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', dot, re.M))
    assert edges == EDGES
    nodes = re.findall(r'^  "([^"]+)" \[label="([^"]*)"', dot, re.M)
    assert [n for n, _ in nodes] == list(DIAMOND.steps)
    assert dict(nodes)["train_a"] == "train_a\\ntrain_a.ipynb\\n[failed]"
    assert '"train_a" [label="train_a\\ntrain_a.ipynb\\n[failed]", fillcolor="#fee2e2"' in dot


def test_dot_quotes_hostile_names() -> None:
    p = pipeline(("a", []), ('b"x\\y', ["a"]), notebooks={"a": 'we"ird\nname.ipynb'})
    dot = render_dot(p)
    assert '"b\\"x\\\\y" [label="b\\"x\\\\y\\n' in dot
    assert '"a" -> "b\\"x\\\\y";' in dot
    assert "we\\\"ird\\nname.ipynb" in dot
    # every line is complete: quotes balance once escapes are removed
    for line in dot.splitlines():
        assert line.replace('\\\\', "").replace('\\"', "").count('"') % 2 == 0, line


# -- mermaid -----------------------------------------------------------------------------------


def test_mermaid_nodes_and_edges() -> None:
    mm = render_mermaid(DIAMOND, {"prepare": "finished", "train_b": "running"})
    lines = mm.strip().splitlines()
    assert lines[0] == "flowchart TD"
    nodes = dict(re.findall(r'^    (\w+)\["([^"]*)"\]$', mm, re.M))
    assert set(nodes) == {f"step_{n}" for n in DIAMOND.steps}
    assert nodes["step_prepare"].startswith("prepare<br/>")
    edges = set(re.findall(r"^    (\w+) --> (\w+)$", mm, re.M))
    assert edges == {(f"step_{a}", f"step_{b}") for a, b in EDGES}
    assert "    classDef finished fill:#dcfce7,stroke:#16a34a,color:#111827" in lines
    assert "    class step_prepare finished" in lines and "    class step_train_b running" in lines


def test_mermaid_sanitizes_ids_and_escapes_labels() -> None:
    evil = 'x"<script>alert(1)</script>#'
    p = pipeline(("end", []), ("a-b", ["end"]), ("a_b", ["a-b"]), (evil, ["end"]),
                 notebooks={"end": 'n"<i>&.ipynb'})
    mm = render_mermaid(p)
    ids = re.findall(r'^    (\S+)\["', mm, re.M)
    # unique, plain, and never the Mermaid keyword `end`
    assert ids == ["step_end", "step_a_b", "step_a_b_2", "step_x__script_alert_1___script__"]
    assert all(re.fullmatch(r"\w+", i) for i in ids)
    assert "<script>" not in mm and "<i>" not in mm
    assert "x#quot;#lt;script#gt;alert(1)#lt;/script#gt;#35;<br/>" in mm
    assert "n#quot;#lt;i#gt;#amp;.ipynb" in mm
    for line in mm.splitlines()[1:]:  # a label never ends early
        assert line.count('"') in (0, 2), line
    assert "    step_end --> step_a_b" in mm and "    step_a_b --> step_a_b_2" in mm
    assert "    step_end --> step_x__script_alert_1___script__" in mm


# -- svg --------------------------------------------------------------------------------------


def svg_tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_svg_is_well_formed_with_a_box_per_step_and_an_arrow_per_edge() -> None:
    svg = render_svg(DIAMOND)
    root = svg_tree(svg)
    assert root.tag == f"{SVG}svg"
    steps = root.findall(f".//{SVG}g[@class='nbmlops-step']")
    assert [g.get("data-step") for g in steps] == list(DIAMOND.steps)
    for g in steps:
        assert g.find(f"{SVG}rect") is not None
        texts = [t.text for t in g.findall(f"{SVG}text")]
        assert texts[:2] == [g.get("data-step"), f"{g.get('data-step')}.ipynb"]
    edges = root.findall(f".//{SVG}path[@class='nbmlops-edge']")
    assert len(edges) == len(EDGES)
    assert {e.findtext(f"{SVG}title") for e in edges} == {f"{a} → {b}" for a, b in EDGES}
    marker = root.find(f".//{SVG}marker")
    assert marker is not None
    assert all(e.get("marker-end") == f"url(#{marker.get('id')})" for e in edges)


def box(root: ET.Element, name: str) -> tuple[float, float]:
    g = root.find(f".//{SVG}g[@data-step='{name}']")
    assert g is not None
    rect = g.find(f"{SVG}rect")
    assert rect is not None
    return float(rect.get("x", 0)), float(rect.get("y", 0))


def test_svg_lays_levels_out_left_to_right() -> None:
    root = svg_tree(render_svg(WIDE))
    xs = {name: box(root, name)[0] for name in WIDE.steps}
    assert xs["prepare"] < xs["a"] == xs["b"] < xs["c"] < xs["report"]
    width = float(root.get("width", 0))
    assert all(0 < x < width for x in xs.values())


def test_svg_colours_by_state() -> None:
    states = {"prepare": "finished", "train_a": "cached", "train_b": "failed",
              "evaluate": "running", "pick_best": "pending"}
    root = svg_tree(render_svg(DIAMOND, states))
    for name, state in states.items():
        g = root.find(f".//{SVG}g[@data-step='{name}']")
        assert g is not None and g.get("data-state") == state
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        assert rect.get("fill") == render_module.STATE_COLOURS[state][0]
        assert state in [t.text for t in g.findall(f"{SVG}text")]
    fills = {r.get("fill") for r in root.iter(f"{SVG}rect")}
    assert len(fills) == 5


def test_svg_escapes_hostile_names() -> None:
    evil = '<script>alert("x")</script>'
    p = pipeline(("ok", []), (evil, ["ok"]), notebooks={"ok": "<script>nb&.ipynb", evil: "e.ipynb"})
    svg = render_svg(p, {evil: '"><script>'})
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    root = svg_tree(svg)  # still well-formed XML
    names = [g.get("data-step") for g in root.iter(f"{SVG}g")]
    assert names == ["ok", evil]
    g = root.find(f".//{SVG}g[@data-step='ok']")
    assert g is not None
    assert [t.text for t in g.findall(f"{SVG}text")][1] == "<script>nb&.ipynb"
    assert not [e for e in root.iter() if e.tag.endswith("script")]


def test_svg_survives_control_characters_and_empty_pipelines() -> None:
    p = pipeline(("a", []), notebooks={"a": "bell\x07.ipynb"})
    svg_tree(render_svg(p))
    svg_tree(render_svg(pipeline()))


def test_render_is_pure_and_imports_no_ui() -> None:
    tree = ast.parse(Path(render_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {m for m in imported
                if m.startswith(("ipywidgets", "IPython", "click", "widgets", "nbmlops.notebook"))}
    assert "open(" not in Path(render_module.__file__).read_text()


@pytest.mark.parametrize("render", [render_text, render_dot, render_mermaid, render_svg])
def test_renderers_are_deterministic(render: object) -> None:
    assert callable(render)
    assert render(WIDE) == render(WIDE)
