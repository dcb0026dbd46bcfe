from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmlops.execute import ExecutionResult, execute_notebook
from nbmlops.store import Store

#: Team mode (``NBMLOPS_TEST_TEAM=1``): the store fixtures give each test a fresh database on
#: the throwaway PostgreSQL (tests/_postgres.py) and a fresh ``s3://`` prefix on a moto server
#: (tests/_s3.py), exported as NBMLOPS_STORE_URL / NBMLOPS_ARTIFACT_URL so that kernels and
#: subprocesses inherit them. See docs/storage.md ("Team mode tests").
TEAM = os.environ.get("NBMLOPS_TEST_TEAM") == "1"


@pytest.fixture(autouse=True)
def _isolated_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may touch a developer's real store: default everything into tmp_path."""
    for var in ("NBMLOPS_STORE_URL", "NBMLOPS_ARTIFACT_URL", "NBMLOPS_RUN_ID",
                "NBMLOPS_RUN_NAME", "NBMLOPS_NOTEBOOK_PATH", "JPY_SESSION_NAME",
                "NBMLOPS_CACHE_DIR", "OPENLINEAGE_URL", "OPENLINEAGE_CONFIG",
                "NBMLOPS_OPENLINEAGE_URL", "NBMLOPS_OPENLINEAGE_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if TEAM:
        from ._s3 import fresh_prefix

        monkeypatch.setenv("NBMLOPS_ARTIFACT_URL", fresh_prefix())
        monkeypatch.setenv("NBMLOPS_CACHE_DIR", str(tmp_path / "artifact-cache"))


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if not TEAM:
        yield f"sqlite:///{tmp_path / 'store' / 'nbmlops.db'}"
        return
    from ._postgres import fresh_database

    name = f"t_{uuid.uuid4().hex[:20]}"
    url = fresh_database(os.environ["NBMLOPS_TEST_POSTGRES_URL"], name)
    monkeypatch.setenv("NBMLOPS_STORE_URL", url)
    yield url
    try:
        _drop_database(url)
    except Exception:  # noqa: BLE001 - the cluster is deleted at the end of the session anyway
        pass


def _drop_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    artifacts = os.environ["NBMLOPS_ARTIFACT_URL"] if TEAM else tmp_path / "store" / "artifacts"
    s = Store.open(store_url, artifacts)
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
    """Start a throwaway PostgreSQL (when installed) so the store contract also runs on it;
    in team mode also the S3 server, and refuse to run without either."""
    _start_postgres()
    if TEAM:
        from ._s3 import shared_server

        if not os.environ.get("NBMLOPS_TEST_POSTGRES_URL"):
            raise pytest.UsageError("NBMLOPS_TEST_TEAM=1 needs PostgreSQL (postgresql and "
                                    "psycopg installed, or NBMLOPS_TEST_POSTGRES_URL)")
        shared_server()  # exports AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_ENDPOINT_URL


#: tests that read the SQLite file or a local artifact path themselves (their store is checked
#: on PostgreSQL/S3 by the rest of their suite)
_SQLITE_ONLY = {
    "tests/test_capture_kernel.py::test_open_pickle_and_explicit_api":
        "reads the SQLite file's bytes and the stored copy's local path",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Team mode runs the PostgreSQL side of suites parametrised over both stores."""
    if not TEAM:
        return
    keep, drop = [], []
    for item in items:
        why = _SQLITE_ONLY.get(item.nodeid.split("[", 1)[0])
        if why:
            item.add_marker(pytest.mark.skip(reason=f"team mode: {why}"))
        params = getattr(item, "callspec", None)
        if params is not None and params.params.get("location") == "sqlite":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _start_postgres() -> None:
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
    from ._s3 import stop_shared_server

    stop_shared_server()  # team mode's, or the one tests/test_artifacts_fsspec.py started
    if _postgres is not None:
        _postgres.stop()
        os.environ.pop("NBMLOPS_TEST_POSTGRES_URL", None)
