"""Loaded model versions and the arms that serve them, following their aliases.

A :class:`Loaded` is one version in memory (model object, input columns, classes). An
:class:`ArmState` holds the one an arm answers with now; :meth:`Follower.poll` (run off the event
loop) asks the store where each arm's alias points, loads a new version completely and only then
swaps it in with a single reference assignment, so a request sees the old or the new version,
never a mix. Anything that fails (store locked, file deleted or changed, alias removed) leaves
the old version serving and is logged once per cause.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NbmlopsError, NotFoundError
from .inputs import Columns, ColumnSpec
from .options import Arm

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import ModelVersion

log = logging.getLogger(__name__)

__all__ = ["Loaded", "ArmState", "Follower", "load_version", "resolve_arm"]


@dataclass(frozen=True, eq=False)
class Loaded:
    """One model version in memory, ready to predict."""

    version: ModelVersion
    model: Any
    specs: list[ColumnSpec]
    classes: list[Any] | None
    kind: str
    has_proba: bool
    loaded_at: float
    #: a checked faster predictor (``fastpath.py``: scikit-learn forests), else None
    fast: Any = None

    @property
    def number(self) -> int:
        return self.version.version

    def frame(self, cols: Columns) -> Any:
        """A pandas DataFrame of checked columns, in signature order and dtypes."""
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {}
        for spec in self.specs:
            values = cols[spec.name]
            if spec.kind == "float":
                data[spec.name] = np.asarray(values, dtype=spec.dtype or "float64")
            elif spec.kind == "int":
                data[spec.name] = np.asarray(values, dtype="float64").astype(spec.dtype or "int64")
            elif spec.kind == "bool":
                data[spec.name] = np.asarray(values, dtype=bool)
            else:
                data[spec.name] = np.asarray(values, dtype=object)
        return pd.DataFrame(data, copy=False)


def _specs(version: ModelVersion, model: Any) -> list[ColumnSpec]:
    inputs = (version.signature or {}).get("inputs") or {}
    columns = inputs.get("columns")
    if columns:
        return [ColumnSpec(str(c["name"]), c.get("dtype")) for c in columns]
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [ColumnSpec(str(n), None) for n in names]
    return []


def load_version(store: Store, version: ModelVersion) -> Loaded:
    """Load ``version`` (its SHA-256 checked first by the registry) into a :class:`Loaded`."""
    from ..registry.service import load_model

    model = load_model(version.uri, store)
    if not hasattr(model, "predict"):
        raise NbmlopsError(f"{version.uri} is a {type(model).__name__}: it has no predict()")
    output = (version.signature or {}).get("output") or {}
    classes = getattr(model, "classes_", None)
    class_list = None if classes is None else list(getattr(classes, "tolist", lambda: classes)())
    kind = output.get("kind") or ("classification" if class_list is not None else "regression")
    if class_list is not None and kind == "unknown":
        kind = "classification"
    specs = _specs(version, model)
    fast = None
    if os.environ.get("NBMLOPS_SERVE_FAST_PATH", "1") != "0":
        from .fastpath import fast_predictor

        fast = fast_predictor(model, [s.name for s in specs] or None)
        if fast is not None:
            log.info("%s: forest fast path on (checked against the model's own predict)",
                     version.uri)
    _settle_heap()
    return Loaded(version=version, model=model, specs=specs, classes=class_list, kind=kind,
                  has_proba=hasattr(model, "predict_proba"), loaded_at=time.time(), fast=fast)


def _settle_heap() -> None:
    """Move what is alive now (the models) out of the cyclic collector's reach: a full
    collection walking a forest's many objects stalls every request in flight for 150-200 ms
    (measured under load, benchmarks/README.md). Objects freed by reference counting are
    still freed; an old version dropped at a swap goes that way."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


def resolve_arm(store: Store, name: str, arm: Arm) -> ModelVersion:
    """The version ``arm`` names now (``NotFoundError`` when its alias or version is gone)."""
    return store.registry.version(name, arm.version, alias=arm.alias)


class ArmState:
    """An arm and the version it answers with now (``current``: swapped, never mutated)."""

    def __init__(self, arm: Arm, current: Loaded | None = None) -> None:
        self.arm = arm
        self.current: Loaded | None = current
        self.problem: str | None = None  # why the newest poll could not follow the alias

    @property
    def alias(self) -> str:
        return self.arm.alias or ""

    def route(self) -> dict[str, Any]:
        cur = self.current
        return {"alias": self.alias, "version": cur.number if cur else None,
                "role": self.arm.role, "weight": self.arm.weight if self.arm.role == "primary" else 0}


class Follower:
    """Keeps every arm on the version its alias points at (one :meth:`poll` per period)."""

    def __init__(self, name: str, arms: list[ArmState], open_store: Any) -> None:
        self.name = name
        self.arms = arms
        self._open_store = open_store
        self._store: Store | None = None
        self._reported: dict[str, str] = {}
        self._lock = threading.Lock()
        self.swaps = 0
        self.on_swap: Any = None  # callable(arm_state, old, new), set by the app

    def _report(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if self._reported.get(key) != message:
            self._reported[key] = message
            log.log(level, "%s", message)

    def _clear(self, key: str) -> None:
        self._reported.pop(key, None)

    def store(self) -> Store:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def poll(self) -> None:
        """One round: resolve each arm, load what changed, swap. Never raises."""
        with self._lock:
            try:
                store = self.store()
            except NbmlopsError as exc:
                self._report("store", f"store unavailable, still serving what is loaded "
                             f"(retrying every poll): {exc}")
                return
            self._clear("store")
            loaded_now: dict[tuple[int, str], Loaded] = {
                (a.current.number, a.current.version.digest): a.current
                for a in self.arms if a.current is not None}
            for state in self.arms:
                self._poll_arm(store, state, loaded_now)

    def _poll_arm(self, store: Store, state: ArmState, cache: dict[tuple[int, str], Loaded]) -> None:
        key = f"arm:{state.arm.role}:{state.arm.label}"
        cur = state.current
        label = f"{self.name}{state.arm.label}"
        try:
            target = resolve_arm(store, self.name, state.arm)
        except NotFoundError as exc:
            keep = f"still serving v{cur.number}" if cur else "nothing loaded yet"
            state.problem = str(exc)
            self._report(key, f"{label}: {exc}; {keep}")
            return
        except NbmlopsError as exc:  # locked, unreachable: next poll
            state.problem = str(exc)
            self._report("store", f"store unavailable, still serving what is loaded "
                         f"(retrying every poll): {exc}")
            return
        if cur is not None and cur.number == target.version and cur.version.digest == target.digest:
            state.problem = None
            self._clear(key)
            return
        new = cache.get((target.version, target.digest))
        if new is None:
            try:
                new = load_version(store, target)
            except Exception as exc:  # noqa: BLE001 - any load failure keeps the old one
                keep = f"still serving v{cur.number}" if cur else "nothing loaded yet"
                state.problem = f"v{target.version} failed to load: {exc}"
                self._report(key, f"{label} -> v{target.version} failed to load ({exc}); {keep}",
                             logging.ERROR)
                return
            cache[(target.version, target.digest)] = new
        state.current = new  # the swap: one reference assignment
        state.problem = None
        self._clear(key)
        self.swaps += cur is not None
        if cur is None:
            log.info("loaded %s v%d", label, new.number)
        else:
            log.warning("swapped %s %s v%d -> v%d", self.name, state.arm.alias or state.arm.label,
                        cur.number, new.number)
        if self.on_swap is not None:
            self.on_swap(state, cur, new)


def version_info(loaded: Loaded, store: Store | None) -> Mapping[str, Any]:
    v = loaded.version
    return {"version": v.version, "uri": v.uri, "digest": v.digest, "format": v.format,
            "model_class": v.model_class, "run_id": v.run_id, "created_at": v.created_at,
            "signature": v.signature, "loaded_at": loaded.loaded_at}
