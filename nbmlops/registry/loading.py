"""Model files: writing a model to a file, reading which class a file holds, and safe loading.

Formats:

- ``skops`` (scikit-learn estimators, when the optional ``skops`` package is installed and the
  model survives a round trip through it unchanged): loading never runs arbitrary code, only the
  types listed at registration are trusted.
- ``joblib`` (everything else that pickles; the scikit-learn documentation's usual format).
- ``pickle`` (a plain pickle given by path).

Every load first checks the stored file's SHA-256 against the digest recorded at registration;
a mismatch is refused before a single byte is unpickled (:class:`ModelFileChangedError`), and
nothing is written.
"""

from __future__ import annotations

import math
import os
import pickletools
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, StoreError
from ..store.artifacts import sha256_file

__all__ = [
    "FORMATS",
    "Dumped",
    "ModelFileChangedError",
    "dump_model",
    "detect_format",
    "class_of_file",
    "verify_file",
    "load_file",
    "skops_available",
]

FORMATS = ("skops", "joblib", "pickle")
_SUFFIXES = {".skops": "skops", ".joblib": "joblib", ".jbl": "joblib", ".pkl": "pickle",
             ".pickle": "pickle", ".p": "pickle"}


class ModelFileChangedError(StoreError):
    """A registered model's stored file no longer has the content recorded at registration."""


@dataclass(frozen=True)
class Dumped:
    path: Path
    format: str
    #: the types skops must be told to trust when loading (what the file holds beyond its defaults)
    trusted: list[str] = field(default_factory=list)


def skops_available() -> bool:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "sklearn"


def _same(a: Any, b: Any, depth: int = 0) -> bool:
    """Structural equality of two object graphs (arrays by value, padding bytes ignored)."""
    if depth > 60:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (str, bytes, int, bool, type(None), complex)):
        return bool(a == b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], depth + 1) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    import numpy as np

    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(_same(x, y, depth + 1) for x, y in zip(a.ravel(), b.ravel(), strict=True))
        try:
            return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        except TypeError:
            return bool(np.array_equal(a, b))
    if isinstance(a, np.generic):
        return _same(a.item(), b.item(), depth + 1)
    if isinstance(a, type):
        return a is b
    getstate = getattr(a, "__getstate__", None)
    if getstate is not None:
        try:
            return _same(getstate(), b.__getstate__(), depth + 1)
        except Exception:  # noqa: BLE001 - odd objects: compare their pickles below
            pass
    try:
        import joblib

        return bool(joblib.hash(a) == joblib.hash(b))
    except Exception:  # noqa: BLE001
        return False


def _skops_dump(obj: Any) -> tuple[bytes, list[str]] | None:
    """The skops bytes and trusted types when ``obj`` round-trips through skops unchanged."""
    try:
        import skops.io as sio

        data = sio.dumps(obj)
        trusted = list(sio.get_untrusted_types(data=data))
        back = sio.loads(data, trusted=trusted)
    except Exception:  # noqa: BLE001 - skops cannot hold it: joblib will
        return None
    return (data, trusted) if _same(obj, back) else None


def dump_model(obj: Any, directory: str | os.PathLike[str], *, fmt: str | None = None) -> Dumped:
    """Write ``obj`` to a new file in ``directory``: skops for scikit-learn models that
    round-trip through it (when installed), joblib otherwise (or the format asked for)."""
    if fmt is not None and fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown model format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model-")
    os.close(fd)
    path = Path(tmp)
    try:
        if fmt in (None, "skops") and (fmt == "skops" or _is_sklearn(obj)):
            dumped = _skops_dump(obj) if skops_available() else None
            if dumped is not None:
                path.write_bytes(dumped[0])
                return Dumped(path, "skops", dumped[1])
            if fmt == "skops":
                raise InvalidArgumentError(
                    f"{type(obj).__name__} does not round-trip through skops "
                    "(or skops is not installed: pip install skops); use --format joblib")
        if fmt == "pickle":
            import pickle

            with open(path, "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            return Dumped(path, "pickle")
        import joblib

        try:
            joblib.dump(obj, path)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot save a {type(obj).__name__} as a model file: {exc}") from exc
        return Dumped(path, "joblib")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def detect_format(path: str | os.PathLike[str]) -> str:
    """``skops``, ``joblib`` or ``pickle``, from the content (a zip is skops) then the suffix."""
    p = Path(path)
    if zipfile.is_zipfile(p):
        return "skops"
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is not None:
        return fmt
    with open(p, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":
        return "joblib"  # a pickle: joblib.load reads plain pickles too
    raise InvalidArgumentError(
        f"{p} is not a model file nbmlops can load (expected a skops, joblib or pickle file: "
        f"{', '.join(sorted(_SUFFIXES))})")


def class_of_file(path: str | os.PathLike[str], fmt: str) -> str | None:
    """The class a model file holds, read without loading it (None when it cannot tell)."""
    try:
        if fmt == "skops":
            import json

            with zipfile.ZipFile(path) as z:
                schema = json.loads(z.read("schema.json"))
            cls = schema.get("__class__")
            return str(cls) if cls else None
        strings: list[str] = []
        with open(path, "rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    module, _, name = arg.partition(" ")
                    return _class_name(module, name)
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return _class_name(strings[-2], strings[-1])
    except Exception:  # noqa: BLE001 - compressed joblib files and the like: unknown
        return None
    return None


def _class_name(module: str, name: str) -> str | None:
    if module.startswith(("copyreg", "builtins", "numpy", "joblib")) or not name:
        return None
    return name


def verify_file(path: str | os.PathLike[str], digest: str, *, label: str) -> None:
    """Refuse a stored model file that is missing or whose SHA-256 is not ``digest``."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileChangedError(
            f"the stored file of {label} is missing ({p}); nothing was loaded")
    actual = sha256_file(p)
    if actual != digest:
        raise ModelFileChangedError(
            f"the stored file of {label} was changed on disk (sha256 {actual[:12]}..., "
            f"registered {digest[:12]}...); refusing to load it: {p}")


def load_file(path: str | os.PathLike[str], fmt: str, *, trusted: list[str] | None = None) -> Any:
    """Load a model file whose digest was checked (:func:`verify_file`)."""
    if fmt == "skops":
        try:
            import skops.io as sio
        except ImportError:
            raise InvalidArgumentError(
                "this model version was saved with skops; install it to load it: pip install skops"
            ) from None
        untrusted = set(sio.get_untrusted_types(file=path))
        extra = sorted(untrusted - set(trusted or []))
        if extra:
            raise InvalidArgumentError(
                f"{path} holds types that were not trusted at registration: {', '.join(extra)}")
        return sio.load(path, trusted=sorted(untrusted))
    if fmt == "joblib":
        import joblib

        return joblib.load(path)
    if fmt == "pickle":
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - digest checked by the caller
    raise InvalidArgumentError(f"unknown model format {fmt!r}")
