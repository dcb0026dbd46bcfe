"""The content-addressed artifact store: a local directory (``.nbmlops/artifacts/sha256/ab/...``)
or any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``).

Every file is kept under ``sha256/<first two hex digits>/<digest>`` below the root, so a second
copy costs nothing and ``put`` is idempotent (a key that exists is not written again). On local
disk a put is atomic (a temporary file renamed into place). A remote store keeps a local read
cache with the same layout (``NBMLOPS_CACHE_DIR``, see :func:`nbmlops.config.cache_dir_for`) for
the loaders that need a path (joblib, skops, pickle). ``fsspec`` is imported only when a remote
URL is used, so ``import nbmlops`` and local stores stay light. See docs/storage.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidArgumentError, NotFoundError, StoreError, StoreUnavailableError

__all__ = ["ArtifactStore", "ArtifactDir", "is_remote_url", "sha256_file"]

_CHUNK = 1 << 20
#: env variables whose values must never appear in an error message
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
               "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def is_remote_url(root: str | os.PathLike[str]) -> bool:
    """True for a URL with a protocol other than ``file://`` (``s3://``, ``memory://``, ...)."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def _key(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest}"


def _atomic_copy(src: str | os.PathLike[str], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ArtifactStore:
    """Stores file copies by the SHA-256 of their content, locally or at an fsspec URL.

    ``root`` is the local directory files are written to: the artifact directory itself for a
    local store, the read cache for a remote one (callers stage temporary files there)."""

    def __init__(self, root: str | os.PathLike[str], *, cache_dir: Path | None = None) -> None:
        text = str(root)
        self.remote = is_remote_url(text)
        if self.remote:
            from ..config import cache_dir_for

            self.url = text.rstrip("/")
            self.root = Path(cache_dir) if cache_dir is not None else cache_dir_for(self.url)
        else:
            if text.startswith("file://"):
                text = text[len("file://"):]
            self.root = Path(text)
            self.url = str(self.root)
        self._fs: Any = None
        self._base = ""

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- addresses ----------------------------------------------------------------------------

    def path_for(self, digest: str) -> Path:
        """The local file of ``digest``: in the artifact directory, or in a remote store's cache
        (which may not hold it yet: use :meth:`get_local`)."""
        return self.root / "sha256" / digest[:2] / digest

    def uri_for(self, digest: str) -> str:
        """Where ``digest`` is kept: an absolute path locally, else ``<url>/sha256/ab/<digest>``."""
        if not self.remote:
            return str(self.path_for(digest).resolve())
        return f"{self.url}/{_key(digest)}"

    # -- operations ---------------------------------------------------------------------------

    def put(self, src: str | os.PathLike[str]) -> tuple[str, str]:
        """Store ``src`` (nothing is written when its content is already there) and return
        ``(sha256, uri)``; ``uri`` is the stored file's absolute path for a local store."""
        digest = sha256_file(src)
        if not self.remote:
            dest = self.path_for(digest)
            if not dest.exists():
                _atomic_copy(src, dest)
            return digest, str(dest.resolve())
        fs, path = self._remote(), self._path(digest)
        with self._errors("write to"):
            if not fs.exists(path):
                fs.put_file(str(src), path)
        cached = self.path_for(digest)
        if not cached.exists():
            try:
                _atomic_copy(src, cached)  # the next read of this content needs no download
            except OSError:
                pass
        return digest, self.uri_for(digest)

    def exists(self, digest: str) -> bool:
        if not self.remote:
            return self.path_for(digest).is_file()
        with self._errors("read from"):
            return bool(self._remote().exists(self._path(digest)))

    def get_local(self, digest: str) -> Path:
        """A local file holding ``digest`` (the stored file itself, or a verified cached copy of
        a remote one). :class:`NotFoundError` when the store does not hold it."""
        local = self.path_for(digest)
        if not self.remote:
            if not local.is_file():
                raise NotFoundError(f"artifact sha256:{digest[:12]}... is not in {self.root}")
            return local
        if local.is_file():
            return local
        fs, path = self._remote(), self._path(digest)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=".tmp-")
        os.close(fd)
        try:
            with self._errors("read from"):
                if not fs.exists(path):
                    raise NotFoundError(f"artifact sha256:{digest[:12]}... is not in {self.url}")
                fs.get_file(path, tmp)
            if sha256_file(tmp) != digest:
                raise StoreError(f"artifact store {self.url}: {self.uri_for(digest)} does not hold "
                                 f"the content its name says (sha256 mismatch); not cached")
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return local

    def local_copy(self, stored_path: str | None) -> Path | None:
        """A readable local file for a recorded ``stored_path`` (a local path, or a URI this store
        gave out: fetched and verified through the cache), or ``None`` when it is not there."""
        if not stored_path:
            return None
        if "://" not in stored_path:
            local = Path(stored_path)
            return local if local.is_file() else None
        if not (self.remote and stored_path.startswith(self.url + "/")):
            return None
        digest = stored_path.rsplit("/", 1)[-1]
        try:
            return self.get_local(digest)
        except NotFoundError:
            return None

    def open(self, digest: str, mode: str = "rb") -> IO[bytes]:
        """A binary file object reading ``digest`` (through the local cache for a remote store)."""
        if mode != "rb":
            raise InvalidArgumentError("artifacts are read-only: open them with mode 'rb'")
        return open(self.get_local(digest), "rb")  # noqa: SIM115 - the caller closes it

    # -- the remote filesystem ----------------------------------------------------------------

    def _path(self, digest: str) -> str:
        self._remote()
        return f"{self._base}/{_key(digest)}" if self._base else _key(digest)

    def _remote(self) -> Any:
        """The fsspec filesystem of the URL, made on first use (fsspec imported only here)."""
        if self._fs is not None:
            return self._fs
        protocol = self.url.split("://", 1)[0]
        try:
            import fsspec
        except ImportError:
            raise StoreError(f"artifact store {self.url}: the {protocol}:// URL needs fsspec: "
                             f"pip install 'nbmlops[s3]' (or fsspec and the package for "
                             f"{protocol}://)") from None
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            raise StoreError(f"artifact store {self.url}: {_scrub(str(exc))} "
                             f"(pip install {_package_hint(protocol, str(exc))})") from None
        except ValueError:
            raise StoreError(f"artifact store {self.url}: unknown protocol {protocol}:// (not an "
                             f"fsspec filesystem; install the package that provides it)") from None
        with self._errors("open"):
            fs, base = fsspec.core.url_to_fs(self.url)
        self._fs, self._base = fs, str(base).rstrip("/")
        return fs

    def _errors(self, doing: str) -> _ErrorMap:
        return _ErrorMap(self, doing)


#: the one name kept from before fsspec support
ArtifactDir = ArtifactStore


def _package_hint(protocol: str, message: str) -> str:
    for word in message.replace(",", " ").split():
        if word.endswith("fs") and word.isidentifier() and word != "fsspec":
            return word
    return {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
            "abfs": "adlfs"}.get(protocol, f"the fsspec implementation of {protocol}://")


def _scrub(text: str) -> str:
    for var in _SECRET_ENV:
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _bucket(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


class _ErrorMap:
    """Turns a filesystem failure into one :class:`StoreError` line naming the bucket and URL
    (never the credentials)."""

    def __init__(self, store: ArtifactStore, doing: str) -> None:
        self.store, self.doing = store, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if exc is None or isinstance(exc, (StoreError, NotFoundError)) \
                or not isinstance(exc, Exception):
            return
        url, bucket = self.store.url, _bucket(self.store.url)
        name = type(exc).__name__
        where = f"artifact store {url}: cannot {self.doing} bucket {bucket!r}"
        if isinstance(exc, PermissionError) or name in ("NoCredentialsError",
                                                         "PartialCredentialsError"):
            raise StoreError(f"{where}: access denied ({name}); check the credentials "
                             f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)") from None
        if isinstance(exc, FileNotFoundError):
            raise StoreError(f"{where}: the bucket does not exist: "
                             f"{_scrub(str(exc))}") from None
        if isinstance(exc, (ConnectionError, TimeoutError)) or "Connect" in name \
                or "Endpoint" in name:
            raise StoreUnavailableError(f"{where}: cannot reach the endpoint ({name}: "
                                        f"{_scrub(str(exc))})") from None
        raise StoreError(f"{where}: {name}: {_scrub(str(exc))}") from None
