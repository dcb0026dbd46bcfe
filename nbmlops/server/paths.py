"""Paths the browser names, confined to the Jupyter server's root directory.

The panel names notebooks and files relative to ``ServerApp.root_dir``, like the rest of
JupyterLab. Every such path is resolved here, symlinks included, and refused when it leaves the
root: the server answers 403 and never reads, stats or returns anything outside it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..errors import InvalidArgumentError, NbmlopsError

__all__ = ["OutsideRootError", "resolve_in_root", "relative_to_root"]


class OutsideRootError(NbmlopsError):
    """A path names something outside the server's root directory (HTTP 403)."""


def resolve_in_root(root: Path, rel: str) -> Path:
    """The absolute, symlink-free path of ``rel`` inside ``root``; refuse anything else.

    ``rel`` is an API path (``/``-separated, relative to the root, as JupyterLab's contents API
    writes them). Absolute paths, ``..`` escapes and symlinks leading out of the root raise
    :class:`OutsideRootError`; malformed paths raise :class:`InvalidArgumentError`.
    """
    if not isinstance(rel, str):
        raise InvalidArgumentError("path must be a string")
    if "\x00" in rel:
        raise InvalidArgumentError("path must not contain NUL characters")
    if len(rel) > 4096:
        raise InvalidArgumentError("path is too long")
    text = rel.replace("\\", "/")
    if text.startswith("/") or text.startswith("~") or (len(text) > 1 and text[1] == ":"):
        raise OutsideRootError(f"path {rel!r} is absolute; give a path relative to the server root")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    real_root = Path(os.path.realpath(root))
    candidate = real_root.joinpath(*parts) if parts else real_root
    # realpath resolves every symlink (existing or not) and every "..": compare the result
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        raise OutsideRootError(f"path {rel!r} is outside the server root")
    return real


def relative_to_root(root: Path, path: str | os.PathLike[str] | None) -> str | None:
    """``path`` as an API path relative to ``root`` when it lies inside, else ``None``."""
    if not path:
        return None
    real_root = os.path.realpath(root)
    for candidate in (os.path.normpath(os.fspath(path)), os.path.realpath(path)):
        try:
            rel = os.path.relpath(candidate, real_root)
        except ValueError:  # another drive on Windows
            continue
        if rel == ".":
            return ""
        if not rel.startswith(".." + os.sep) and rel != ".." and not os.path.isabs(rel):
            return PurePosixPath(*Path(rel).parts).as_posix()
    return None
