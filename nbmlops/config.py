"""Where the store lives: discovery of the project's ``.nbmlops`` directory and URL resolution.

Resolution order (first wins):

1. an explicit ``url`` argument;
2. ``NBMLOPS_STORE_URL`` (any SQLAlchemy URL) and ``NBMLOPS_ARTIFACT_URL`` (a directory);
3. the nearest ``.nbmlops/`` found by walking up from the working directory, like git;
4. ``.nbmlops/`` in the working directory (created on first use).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STORE_DIRNAME", "StoreLocation", "find_project_dir", "resolve_location"]

STORE_DIRNAME = ".nbmlops"
DB_FILENAME = "nbmlops.db"
ARTIFACTS_DIRNAME = "artifacts"
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^/]*@")


@dataclass(frozen=True)
class StoreLocation:
    """Where one store keeps its database and its artifacts."""

    url: str
    artifact_root: Path
    #: The ``.nbmlops`` directory when the store is the embedded default, else ``None``.
    store_dir: Path | None = None

    @property
    def sqlite_path(self) -> Path | None:
        """The database file for a SQLite URL, else ``None``."""
        prefix = "sqlite:///"
        if self.url.startswith(prefix) and self.url != "sqlite:///:memory:":
            return Path(self.url[len(prefix) :])
        return None

    @property
    def journal_dir(self) -> Path:
        """Where capture sessions keep their crash journals for this store."""
        db = self.sqlite_path
        if db is not None:
            return db.parent / "journal"
        import hashlib
        import tempfile

        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "nbmlops-journal" / key

    @property
    def runs_dir(self) -> Path:
        """Where executed copies of headless runs are kept (``.nbmlops/runs/<run-id>/``)."""
        if self.store_dir is not None:
            return self.store_dir / "runs"
        db = self.sqlite_path
        return (db.parent if db is not None else self.artifact_root.parent) / "runs"

    @property
    def predictions_dir(self) -> Path:
        """Where served models log their predictions (``.nbmlops/predictions/<NAME>/``): local
        files beside the embedded store, or beside the artifact root for a server store."""
        if self.store_dir is not None:
            return self.store_dir / "predictions"
        db = self.sqlite_path
        return (db.parent if db is not None else self.artifact_root.parent) / "predictions"

    def describe(self) -> str:
        """A human-readable location with any password masked."""
        path = self.sqlite_path
        if path is not None:
            return str(path)
        return _PASSWORD_IN_URL.sub(r"\1***@", self.url)


def find_project_dir(start: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the nearest ancestor of ``start`` that holds a ``.nbmlops`` directory."""
    here = Path(start or _cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / STORE_DIRNAME).is_dir():
            return candidate
    return None


def _cwd() -> str:
    """The working directory, or a clear error when it was deleted under the process (a shell
    left in a removed directory): otherwise ``os.getcwd`` fails with a bare FileNotFoundError."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(
            "the working directory no longer exists (deleted?): cd to your project, or set "
            "NBMLOPS_STORE_URL or --store") from None


def default_store_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The ``.nbmlops`` directory to use: the nearest existing one, else one in ``start``."""
    project = find_project_dir(start)
    base = project if project is not None else Path(start or _cwd()).resolve()
    return base / STORE_DIRNAME


def resolve_location(
    url: str | None = None,
    artifact_root: str | os.PathLike[str] | None = None,
    start: str | os.PathLike[str] | None = None,
) -> StoreLocation:
    """Resolve the store location from arguments, environment and the directory tree."""
    url = url or os.environ.get("NBMLOPS_STORE_URL") or None
    art = artifact_root or os.environ.get("NBMLOPS_ARTIFACT_URL") or None
    store_dir: Path | None = None
    if url is None:
        store_dir = default_store_dir(start)
        url = f"sqlite:///{store_dir / DB_FILENAME}"
    if art is None:
        if store_dir is not None:
            art_path = store_dir / ARTIFACTS_DIRNAME
        else:
            loc = StoreLocation(url=url, artifact_root=Path("."))
            db = loc.sqlite_path
            art_path = (db.parent if db else default_store_dir(start)) / ARTIFACTS_DIRNAME
    else:
        art_str = str(art)
        if art_str.startswith("file://"):
            art_str = art_str[len("file://") :]
        art_path = Path(art_str)
    return StoreLocation(url=url, artifact_root=art_path, store_dir=store_dir)
