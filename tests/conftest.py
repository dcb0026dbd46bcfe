from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmlops.execute import ExecutionResult, execute_notebook
from nbmlops.store import Store


@pytest.fixture(autouse=True)
def _isolated_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may touch a developer's real store: default everything into tmp_path."""
    for var in ("NBMLOPS_STORE_URL", "NBMLOPS_ARTIFACT_URL", "NBMLOPS_RUN_ID",
                "NBMLOPS_RUN_NAME", "NBMLOPS_NOTEBOOK_PATH", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'nbmlops.db'}"


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(store_url, tmp_path / "store" / "artifacts")
    yield s
    s.close()


# -- Jupyter server extension tests (jp_server_config: tests/_server.py) ------------------------


@pytest.fixture
def configured_store(tmp_path: Path) -> str:
    """Requested by tests whose server has `c.NbmlopsServerApp.store_url` set."""
    return f"sqlite:///{tmp_path / 'elsewhere' / 'nbmlops.db'}"


@pytest.fixture
def fresh_root() -> None:
    """Requested by tests that need a server root of their own, without a store (their
    module's `jp_root_dir` looks for it)."""


#: a Jupyter user's display name with markup in it (shown as text, recorded as it is)
JUPYTER_USER = "Alice <b>Liddell</b>"


@pytest.fixture
def alice(jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Token-authenticated requests are made by one named user (not a new anonymous one);
    returns the name the server records for them."""
    from jupyter_server.auth.identity import User

    monkeypatch.setattr(jp_serverapp.identity_provider, "generate_anonymous_user",
                        lambda handler: User(username="alice", name=JUPYTER_USER))
    return JUPYTER_USER


def make_notebook(path: Path, cells: list[str | tuple[str, list[str]]]) -> Path:
    """Write a notebook whose code cells are ``cells`` (source, or (source, tags))."""
    nb_cells = []
    for c in cells:
        source, tags = (c, []) if isinstance(c, str) else c
        nb_cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nb = nbformat.v4.new_notebook(
        cells=nb_cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


RunNotebook = Callable[..., tuple[ExecutionResult, Any]]


@pytest.fixture
def run_notebook(tmp_path: Path, store_url: str) -> RunNotebook:
    """Execute cells in a real kernel with capture on; return (result, executed notebook)."""

    def run(cells: list[Any], name: str = "nb", env: dict[str, str] | None = None,
            url: str | None = None) -> tuple[ExecutionResult, Any]:
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        path = make_notebook(work / f"{name}.ipynb", cells)
        out = tmp_path / "out" / f"{name}.ipynb"
        result = execute_notebook(path, out, store_url=url or store_url, env=env, timeout=120)
        return result, nbformat.read(out, as_version=4)

    return run


def stderr_text(nb: Any) -> str:
    return "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"
    )


@pytest.fixture(scope="session", autouse=True)
def _quiet_kernels() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


_postgres = None


def pytest_configure(config: pytest.Config) -> None:
    """Start a throwaway PostgreSQL (when installed) so the store contract also runs on it."""
    global _postgres
    if os.environ.get("NBMLOPS_TEST_POSTGRES_URL") or os.environ.get("NBMLOPS_TEST_NO_POSTGRES"):
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return
    from ._postgres import ThrowawayPostgres

    server = ThrowawayPostgres()
    try:
        url = server.start()
    except Exception as exc:  # noqa: BLE001 - report, run the SQLite suite anyway
        print(f"PostgreSQL not started: {exc}")
        server.stop()
        return
    if url:
        _postgres = server
        os.environ["NBMLOPS_TEST_POSTGRES_URL"] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _postgres is not None:
        _postgres.stop()
        os.environ.pop("NBMLOPS_TEST_POSTGRES_URL", None)
