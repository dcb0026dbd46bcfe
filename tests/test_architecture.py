"""The module map in docs/architecture.md stays true: dependency direction and public names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import nbmlops

PKG = Path(nbmlops.__file__).parent
CORE = ["store", "capture", "fingerprint.py", "environment.py", "config.py", "redact.py",
        "errors.py", "execute.py", "query.py", "api.py", "engine.py", "_engine_entry.py",
        "params.py", "slicing.py", "pipeline/spec.py", "pipeline/split.py",
        "pipeline/varsio.py", "pipeline/runner.py", "pipeline/render.py", "schedule", "orchestrators",
        "reproduce.py", "pipeline/load.py", "registry", "validation", "monitoring", "serving",
        "interop", "openlineage"]
UI_MODULES = ("ipywidgets", "click", "IPython.display", "nbmlops.notebook",
              "nbmlops.cli", "nbmlops._format")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    rel_pkg = ".".join(("nbmlops", *path.relative_to(PKG).parent.parts))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_pkg.split(".")[: len(rel_pkg.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def _core_files() -> list[Path]:
    files: list[Path] = []
    for entry in CORE:
        p = PKG / entry
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_core_never_imports_ui(path: Path) -> None:
    bad = {i for i in _imports(path) if i.startswith(UI_MODULES)}
    assert not bad, f"{path.name} imports UI modules {bad}"


def test_only_the_store_uses_sqlalchemy() -> None:
    offenders = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if "store" not in p.relative_to(PKG).parts
        and any(i.startswith(("sqlalchemy", "alembic")) for i in _imports(p))
    ]
    assert offenders == []


def test_public_names_do_not_drift() -> None:
    assert sorted(nbmlops.__all__) == sorted([
        "__version__", "load_ipython_extension", "unload_ipython_extension",
        "log_param", "log_params", "log_metric", "log_metrics", "log_artifact", "set_tag",
        "set_tags", "runs", "get_run", "history", "lineage", "compare", "export_notebook", "validate", "register", "load_model", "gate", "drift_report", "Store",
        "open_store",
        "NbmlopsError", "StoreError", "StoreCorruptError", "StoreVersionError",
        "StoreUnavailableError", "NotFoundError", "AmbiguousIdError", "InvalidArgumentError",
        "ExecutionFailedError",
    ])
    for name in nbmlops.__all__:
        assert getattr(nbmlops, name) is not None


def test_import_and_load_ext_stay_light() -> None:
    code = (
        "import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\nsh.run_line_magic('load_ext', 'nbmlops')\n"
        "heavy = [m for m in ('sqlalchemy', 'pandas', 'alembic', 'ipywidgets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"NBMLOPS_STORE_URL": "sqlite:///:memory:", "PATH": ""})
    assert out.returncode == 0, out.stderr
    # the writer thread may have started importing SQLAlchemy by now; pandas/widgets never
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not loaded & {"pandas", "ipywidgets"}, loaded


def test_architecture_doc_names_every_module() -> None:
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if "versions" in rel.parts or rel.name == "__init__.py" and rel.parent != Path("."):
            continue
        if rel.parent.name == "migrations":
            continue
        key = f"nbmlops/{rel.as_posix()}"
        assert key in doc or f"nbmlops/{rel.parent.as_posix()}/" in doc, f"{key} missing from docs/architecture.md"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The nbmlops modules ``path`` imports when it runs (at import time or inside functions),
    not counting ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            subs = {f"{mod}.{a.name}" for a in node.names} & modules
            out.update(subs or {mod})
    return {m for m in out if m in modules and m != name}


def test_no_import_cycles() -> None:
    """No two nbmlops modules import each other, directly or around a circle."""
    files = {_module_name(p): p for p in PKG.rglob("*.py") if "versions" not in p.parts}
    graph = {m: _runtime_imports(p, set(files)) for m, p in files.items()}
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == [], f"modules that import each other in a circle: {cycles}"
