"""The static analysis of cell sources: names read, written, mutated; fits; metric targets."""

from __future__ import annotations

import pytest

from nbmlops.capture.analysis import analyze_cell


def test_order_matters_within_a_cell() -> None:
    r = analyze_cell("x = 1\ny = x + z")
    assert r.stored == {"x", "y"}
    assert r.used == {"z"}  # x was bound by this cell before it was read


def test_read_before_write_is_a_use() -> None:
    r = analyze_cell("x = x + 1")
    assert r.used == {"x"} and r.stored == {"x"}


def test_augassign_reads_and_writes() -> None:
    r = analyze_cell("total += step")
    assert r.used == {"total", "step"} and r.stored == {"total"}


def test_imports_functions_classes_bind_names() -> None:
    r = analyze_cell(
        "import numpy as np\nimport os.path\nfrom math import sqrt as root\n"
        "def f(a, *args, k=default, **kw):\n    b = a + glob\n    return np.sum(b)\n"
        "class C(Base):\n    attr = 1\n"
    )
    assert r.stored == {"np", "os", "root", "f", "C"}
    assert r.used == {"default", "glob", "Base"}  # np is bound above; a, b, args are local


def test_comprehension_and_lambda_scopes() -> None:
    r = analyze_cell("ys = [i * k for i in items if i]\nfn = lambda v: v + offset")
    assert r.used == {"k", "items", "offset"}
    assert r.stored == {"ys", "fn"}


def test_mutations_attribute_subscript_and_methods() -> None:
    r = analyze_cell(
        "df['c'] = df.a * 2\nobj.attr = 3\nrows.append(1)\nframe.drop(columns=['x'], inplace=True)\n"
        "cfg['a']['b'] = 1\nother.copy()"
    )
    assert r.mutated == {"df", "obj", "rows", "frame", "cfg"}
    assert "other" not in r.mutated and "other" in r.used


def test_fit_calls_and_their_arguments() -> None:
    r = analyze_cell("model.fit(X_train, y_train, sample_weight=w['a'])\nm2 = Est(k=1).fit(X, y)")
    assert r.fits == [("m2", ["X", "y"]), ("model", ["X_train", "y_train", "w"])] or r.fits == [
        ("model", ["X_train", "y_train", "w"]),
        ("m2", ["X", "y"]),
    ]
    assert "model" in r.mutated and "m2" in r.stored


def test_metric_call_assignments() -> None:
    r = analyze_cell("acc = accuracy_score(y, p)\nf1 = metrics.f1_score(y, p)\nn = len(y)")
    assert r.call_assignments == [("acc", "accuracy_score"), ("f1", "f1_score"), ("n", "len")]


def test_del_removes_binding() -> None:
    r = analyze_cell("tmp = 1\ndel tmp\ndel old")
    assert "tmp" not in r.stored and r.deleted == {"tmp", "old"}


def test_with_for_except_walrus() -> None:
    r = analyze_cell(
        "with open(p) as fh:\n    data = fh.read()\nfor i, v in enumerate(data):\n    pass\n"
        "try:\n    pass\nexcept ValueError as err:\n    pass\nif (n := len(data)) > 1:\n    pass"
    )
    assert {"fh", "data", "i", "v", "err", "n"} <= r.stored
    assert r.used == {"open", "p", "enumerate", "ValueError", "len"}


@pytest.mark.parametrize("source", ["def f(:", "x = ", "\x00", "(" * 500 + ")" * 500])
def test_unparsable_source_never_raises(source: str) -> None:
    r = analyze_cell(source)
    assert r.stored == set() and r.used == set()


def test_global_in_function_is_not_local() -> None:
    r = analyze_cell("def bump():\n    global counter\n    counter = counter + 1")
    assert r.used == {"counter"}
