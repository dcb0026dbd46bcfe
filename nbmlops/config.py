"""Where the store lives: discovery of the project's ``.nbmlops`` directory and URL resolution.

Resolution order (first wins):

1. an explicit ``url`` argument;
2. ``NBMLOPS_STORE_URL`` (any SQLAlchemy URL) and ``NBMLOPS_ARTIFACT_URL`` (a directory, or an
   fsspec URL such as ``s3://bucket/prefix``: see docs/storage.md);
3. the nearest ``.nbmlops/`` found by walking up from the working directory, like git;
4. ``.nbmlops/`` in the working directory (created on first use).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STORE_DIRNAME", "StoreLocation", "cache_dir_for", "find_project_dir",
           "resolve_location"]

STORE_DIRNAME = ".nbmlops"
DB_FILENAME = "nbmlops.db"
ARTIFACTS_DIRNAME = "artifacts"
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^/]*@")


@dataclass(frozen=True)
class StoreLocation:
    """Where one store keeps its database and its artifacts."""

    url: str
    #: a local directory, or an fsspec URL string (``s3://bucket/prefix``) for object storage
    artifact_root: Path | str
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
        return self._local_base() / "runs"

    @property
    def predictions_dir(self) -> Path:
        """Where served models log their predictions (``.nbmlops/predictions/<NAME>/``): local
        files beside the embedded store, or beside the artifact root for a server store."""
        if self.store_dir is not None:
            return self.store_dir / "predictions"
        return self._local_base() / "predictions"

    @property
    def artifact_url(self) -> str:
        """The artifact root as text (a directory or an fsspec URL), for environments."""
        return str(self.artifact_root)

    def _local_base(self) -> Path:
        """The local directory that holds runs/predictions of a store without ``.nbmlops``:
        the SQLite file's directory, the local artifact directory's parent, or (remote
        artifacts) the cache directory of the artifact URL."""
        db = self.sqlite_path
        if db is not None:
            return db.parent
        text = str(self.artifact_root)
        if "://" in text and not text.startswith("file://"):
            return cache_dir_for(text).parent
        return Path(self.artifact_root).parent

    def describe(self) -> str:
        """A human-readable location with any password masked."""
        path = self.sqlite_path
        if path is not None:
            return str(path)
        return _PASSWORD_IN_URL.sub(r"\1***@", self.url)


def cache_dir_for(artifact_url: str) -> Path:
    """The local read cache of a remote artifact store: ``NBMLOPS_CACHE_DIR`` (a directory shared
    by every remote URL; content addresses never collide), else
    ``$XDG_CACHE_HOME/nbmlops/<16 hex of the URL>/artifacts`` (``~/.cache`` by default)."""
    explicit = os.environ.get("NBMLOPS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "artifacts"
    import hashlib

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(artifact_url.rstrip("/").encode()).hexdigest()[:16]
    return base / "nbmlops" / key / "artifacts"


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
    art_path: Path | str
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
            art_path = Path(art_str[len("file://") :])
        elif "://" in art_str:
            art_path = art_str.rstrip("/")  # object storage: kept as a URL (docs/storage.md)
        else:
            art_path = Path(art_str)
    return StoreLocation(url=url, artifact_root=art_path, store_dir=store_dir)
