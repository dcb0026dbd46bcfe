"""Observation of reads, writes and metrics by wrapping library functions in place.

Wrapped: pandas ``read_*`` functions and ``DataFrame/Series.to_*`` methods, ``builtins.open``
(only calls made directly from notebook code), ``joblib.dump/load``, ``pickle.dump/load``,
``sklearn.metrics`` scoring functions and ``estimator.score`` (only direct calls from notebook
code, so scorers used inside a grid search are not logged thousands of times).

A wrapper always calls the original first and returns its result or raises its exception
untouched; recording happens afterwards inside ``try/except`` and reports its own failures to
the tracker. Modules imported after ``%load_ext`` are wrapped by an import hook on first import.
"""

from __future__ import annotations

import builtins
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from ..fingerprint import frame_schema
from ..store.entities import ArtifactIO

__all__ = ["Instrumentation", "Tracker"]


class Tracker(Protocol):
    """What the wrappers report to (the capture session)."""

    @property
    def cell_active(self) -> bool: ...

    def is_user_frame(self, frame: Any) -> bool: ...

    def on_io(self, io: ArtifactIO) -> None: ...

    def on_metric(self, name: str, value: Any) -> None: ...

    def on_internal_error(self, where: str, exc: BaseException) -> None: ...


PANDAS_READERS = (
    "read_csv", "read_table", "read_fwf", "read_json", "read_parquet", "read_feather",
    "read_excel", "read_pickle", "read_orc", "read_stata", "read_sas", "read_spss", "read_hdf",
    "read_xml",
)
PANDAS_WRITERS = (
    "to_csv", "to_json", "to_parquet", "to_feather", "to_excel", "to_pickle", "to_orc",
    "to_stata", "to_hdf", "to_xml",
)
_PATH_KWARGS = ("filepath_or_buffer", "path_or_buf", "path", "excel_writer", "fname", "io",
                "filename", "file")
_METRIC_SUFFIXES = ("_score", "_error", "_loss", "_deviance")
_NOT_METRICS = frozenset({"make_scorer", "get_scorer", "check_scoring", "get_scorer_names"})


def _path_of(args: tuple[Any, ...], kwargs: dict[str, Any], pos: int) -> str | None:
    """The file path argument of a call, when it is a local path (not a buffer)."""
    target: Any = args[pos] if len(args) > pos else None
    if target is None:
        for k in _PATH_KWARGS:
            if k in kwargs:
                target = kwargs[k]
                break
    if isinstance(target, (str, os.PathLike)):
        p = os.fspath(target)
        if isinstance(p, bytes):
            p = p.decode(errors="replace")
        if "://" in p and not p.startswith("file://"):
            return p  # a URL: recorded, not fingerprinted
        return os.path.abspath(p.removeprefix("file://"))
    name = getattr(target, "name", None)  # an open file object
    if isinstance(name, str) and name and not name.startswith("<"):
        return os.path.abspath(name)
    return None


def _looks_like_model(obj: Any) -> bool:
    return hasattr(obj, "fit") and (hasattr(obj, "predict") or hasattr(obj, "transform"))


class _Guard(threading.local):
    depth = 0


class Instrumentation:
    """Installs and removes all wrappers for one tracker."""

    def __init__(self, tracker: Tracker, user_ns: dict[str, Any] | None = None) -> None:
        self.tracker = tracker
        self.user_ns = user_ns
        self._guard = _Guard()
        self._restore: list[tuple[Any, str, Any]] = []
        self._hook: _PostImportHook | None = None
        self._patched_modules: set[str] = set()
        #: code objects of the wrappers, spliced out of tracebacks shown to the user
        self.wrapper_codes: set[Any] = set()

    # -- install / uninstall --------------------------------------------------------------------

    def install(self) -> None:
        targets: dict[str, Callable[[ModuleType], None]] = {
            "pandas": self._patch_pandas,
            "joblib": self._patch_joblib,
            "pickle": self._patch_pickle,
            "sklearn.metrics": self._patch_sklearn_metrics,
            "sklearn.base": self._patch_sklearn_base,
        }
        self._patch_open()
        for name, patch in targets.items():
            module = sys.modules.get(name)
            if module is not None:
                self._apply(name, patch, module)
        pending = {n: p for n, p in targets.items() if n not in self._patched_modules}
        if pending:
            self._hook = _PostImportHook(
                {n: functools.partial(self._apply, n, p) for n, p in pending.items()}
            )
            sys.meta_path.insert(0, self._hook)

    def uninstall(self) -> None:
        if self._hook is not None:
            try:
                sys.meta_path.remove(self._hook)
            except ValueError:
                pass
            self._hook = None
        for owner, attr, original in reversed(self._restore):
            try:
                if isinstance(owner, dict):
                    if owner.get(attr) is not None and hasattr(owner[attr], "__nbmlops_original__"):
                        owner[attr] = original
                else:
                    setattr(owner, attr, original)
            except Exception:  # noqa: BLE001 - best effort on teardown
                pass
        self._restore.clear()
        self._patched_modules.clear()

    def _apply(self, name: str, patch: Callable[[ModuleType], None], module: ModuleType) -> None:
        if name in self._patched_modules:
            return
        self._patched_modules.add(name)
        try:
            patch(module)
        except Exception as exc:  # noqa: BLE001 - never break an import
            self.tracker.on_internal_error(f"instrumenting {name}", exc)

    def _set(self, owner: Any, attr: str, wrapper: Any) -> None:
        original = getattr(owner, attr)
        self._restore.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    # -- recording helpers ----------------------------------------------------------------------

    def _record(self, path: str | None, direction: str, via: str, kind: str, obj: Any = None) -> None:
        if path is None:
            return
        try:
            schema = frame_schema(obj) if obj is not None and hasattr(obj, "shape") else None
            self.tracker.on_io(
                ArtifactIO(uri=path, direction=direction, via=via, kind=kind, schema=schema)
            )
        except Exception as exc:  # noqa: BLE001
            self.tracker.on_internal_error(via, exc)

    def _wrap(
        self, original: Callable[..., Any], label: str,
        after: Callable[[tuple[Any, ...], dict[str, Any], Any, Any], None],
    ) -> Callable[..., Any]:
        """Call ``original`` untouched; then, in a cell and outside our own calls, report
        ``after(args, kwargs, result, caller_frame)``. Internal failures never reach the user."""
        guard = self._guard
        tracker = self.tracker

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if guard.depth or not tracker.cell_active:
                return original(*args, **kwargs)
            guard.depth += 1
            try:
                result = original(*args, **kwargs)
            finally:
                guard.depth -= 1
            try:
                after(args, kwargs, result, sys._getframe(1))
            except Exception as exc:  # noqa: BLE001
                tracker.on_internal_error(label, exc)
            return result

        wrapper.__nbmlops_original__ = original  # type: ignore[attr-defined]
        self.wrapper_codes.add(wrapper.__code__)  # type: ignore[attr-defined]
        return wrapper

    def _wrap_io(
        self, original: Callable[..., Any], via: str, direction: str, pos: int,
        kind_of: Callable[[tuple[Any, ...], Any], str], frame_of: Callable[[tuple[Any, ...], Any], Any],
    ) -> Callable[..., Any]:
        def after(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, _caller: Any) -> None:
            path = _path_of(args, kwargs, pos)
            self._record(path, direction, via, kind_of(args, result), frame_of(args, result))

        return self._wrap(original, via, after)

    # -- patches --------------------------------------------------------------------------------

    def _patch_pandas(self, pd: ModuleType) -> None:
        for name in PANDAS_READERS:
            if hasattr(pd, name):
                self._set(pd, name, self._wrap_io(
                    getattr(pd, name), f"pandas.{name}", "read", 0,
                    kind_of=lambda a, r: "dataset", frame_of=lambda a, r: r,
                ))
        for cls in (pd.DataFrame, pd.Series):
            for name in PANDAS_WRITERS:
                if hasattr(cls, name):
                    self._set(cls, name, self._wrap_io(
                        getattr(cls, name), f"pandas.{name}", "wrote", 1,
                        kind_of=lambda a, r: "dataset", frame_of=lambda a, r: a[0],
                    ))

    def _patch_joblib(self, joblib: ModuleType) -> None:
        self._set(joblib, "dump", self._wrap_io(
            joblib.dump, "joblib.dump", "wrote", 1,
            kind_of=lambda a, r: "model" if a and _looks_like_model(a[0]) else "file",
            frame_of=lambda a, r: a[0] if a and hasattr(a[0], "dtypes") else None,
        ))
        self._set(joblib, "load", self._wrap_io(
            joblib.load, "joblib.load", "read", 0,
            kind_of=lambda a, r: "model" if _looks_like_model(r) else "file",
            frame_of=lambda a, r: r if hasattr(r, "dtypes") else None,
        ))

    def _patch_pickle(self, pickle: ModuleType) -> None:
        self._set(pickle, "dump", self._wrap_io(
            pickle.dump, "pickle.dump", "wrote", 1,
            kind_of=lambda a, r: "model" if a and _looks_like_model(a[0]) else "file",
            frame_of=lambda a, r: None,
        ))
        self._set(pickle, "load", self._wrap_io(
            pickle.load, "pickle.load", "read", 0,
            kind_of=lambda a, r: "model" if _looks_like_model(r) else "file",
            frame_of=lambda a, r: None,
        ))

    def _patch_open(self) -> None:
        self._set(builtins, "open", self._wrap_open(builtins.open))
        # IPython puts its own ``open`` (guarding fds 0-2) into the user namespace
        ns = self.user_ns
        if ns is not None and callable(ns.get("open")) and ns["open"] is not builtins.open:
            original = ns["open"]
            self._restore.append((ns, "open", original))
            ns["open"] = self._wrap_open(original)

    def _wrap_open(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracker = self.tracker
        guard = self._guard

        @functools.wraps(original)
        def open_wrapper(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            fh = original(file, mode, *args, **kwargs)
            if guard.depth or not tracker.cell_active:
                return fh
            try:
                if tracker.is_user_frame(sys._getframe(1)) and isinstance(file, (str, os.PathLike)):
                    m = mode if isinstance(mode, str) else "r"
                    direction = "wrote" if any(c in m for c in "wax+") else "read"
                    self._record(os.path.abspath(os.fsdecode(file)), direction, "open", "file")
            except Exception as exc:  # noqa: BLE001
                tracker.on_internal_error("open", exc)
            return fh

        open_wrapper.__nbmlops_original__ = original  # type: ignore[attr-defined]
        self.wrapper_codes.add(open_wrapper.__code__)  # type: ignore[attr-defined]
        return open_wrapper

    def _wrap_metric(self, original: Callable[..., Any], name: str) -> Callable[..., Any]:
        tracker = self.tracker

        def after(_args: tuple[Any, ...], _kwargs: dict[str, Any], result: Any, caller: Any) -> None:
            if tracker.is_user_frame(caller):  # not the scorers inside a grid search
                tracker.on_metric(name, result)

        return self._wrap(original, name, after)

    def _patch_sklearn_metrics(self, metrics: ModuleType) -> None:
        for name in getattr(metrics, "__all__", ()):
            if name in _NOT_METRICS or not name.endswith(_METRIC_SUFFIXES):
                continue
            fn = getattr(metrics, name, None)
            if callable(fn):
                self._set(metrics, name, self._wrap_metric(fn, name))

    def _patch_sklearn_base(self, base: ModuleType) -> None:
        for mixin in ("ClassifierMixin", "RegressorMixin", "ClusterMixin", "OutlierMixin"):
            cls = getattr(base, mixin, None)
            if cls is not None and "score" in vars(cls):
                self._set(cls, "score", self._wrap_metric(vars(cls)["score"], "score"))


def splice_traceback(exc: BaseException | None, codes: set[Any]) -> None:
    """Unlink the frames of ``codes`` from ``exc``'s traceback (and chained exceptions').

    Wrappers sit between the user's code and the library; without this, every traceback through
    them would show an nbmlops frame the user never wrote.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            if tb.tb_next.tb_frame.f_code in codes:
                tb.tb_next = tb.tb_next.tb_next
            else:
                tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__


class _WrappingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, after: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Calls ``callbacks[name](module)`` right after ``name`` is first imported."""

    def __init__(self, callbacks: dict[str, Callable[[ModuleType], None]]) -> None:
        self._callbacks = callbacks
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        cb = self._callbacks.get(fullname)
        if cb is None or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname
        try:
            spec = importlib.util.find_spec(fullname)
        except Exception:  # noqa: BLE001 - let the normal machinery report it
            return None
        finally:
            self._busy.name = None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _WrappingLoader(spec.loader, cb)
        return spec
