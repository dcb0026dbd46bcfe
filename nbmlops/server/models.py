"""The model registry as the panel sees it: registered models, one model's versions, aliases and
audit history (gate decisions included), and the two changes a person makes from JupyterLab,
promote and rollback.

Every read and change goes through :mod:`nbmlops.registry.service`, the functions the CLI's
``nbmlops models ...`` calls, so a change made here is the same audit event (user, host, reason)
as one made in a terminal. Models live in the store the server itself uses (like schedules): the
configured one, else the nearest ``.nbmlops/`` from the server root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..registry import service as registry

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import ModelEvent, ModelVersion, RegisteredModel
    from .service import StoreService

__all__ = [
    "MAX_EVENTS", "MAX_REASON", "MAX_VERSIONS", "ModelService", "alias_arg", "event_view",
    "gate_view", "model_name", "model_summary", "reason_arg", "version_arg", "version_view",
]

#: Newest versions one model answer lists (``version_count`` says how many there are).
MAX_VERSIONS = 200
#: Newest audit events one model answer lists (``events_truncated`` says when there are more).
MAX_EVENTS = 500
#: Longest reason accepted from the panel (characters).
MAX_REASON = 2000
RootPath = Callable[[str | None], "str | None"]


# -- arguments (checked on the event loop, before any store work) --------------------------------


def model_name(value: str) -> str:
    """A model name from a URL path, checked like ``nbmlops models register --name``."""
    try:
        return registry.check_name(value)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"invalid model name {value[:70]!r}: names use letters, digits, '_', '.' and '-' "
            "(up to 200, starting with a letter or digit)") from None


def alias_arg(value: Any, default: str = "champion") -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise InvalidArgumentError("alias must be a string, e.g. champion")
    return registry.check_alias(value)


def version_arg(value: Any) -> int:
    """A version number from a JSON body: an integer from 1 (or its digits as a string)."""
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    ) or int(value) < 1:
        raise InvalidArgumentError(f"version must be a whole number from 1, not {value!r}")
    return int(value)


def reason_arg(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError("reason must be a string")
    text = value.strip()
    if len(text) > MAX_REASON:
        raise InvalidArgumentError(f"reason is longer than {MAX_REASON} characters")
    return text or None


# -- JSON shapes (docs/server-api.md; labextension/src/types.ts) ---------------------------------


def model_summary(m: RegisteredModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "latest_version": m.latest_version,
        "version_count": m.version_count,
        "aliases": dict(m.aliases),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def gate_view(event: ModelEvent) -> dict[str, Any] | None:
    """A ``gate`` event's decision, field by field (None for other events)."""
    if event.kind != "gate":
        return None
    d: Mapping[str, Any] = event.details if isinstance(event.details, Mapping) else {}
    cand = _mapping(d.get("candidate"))
    champ = _mapping(d.get("champion"))
    reasons = d.get("reasons")
    return {
        "decision": d.get("decision"),
        "metric": d.get("metric"),
        "alias": event.alias,
        "candidate_version": cand.get("version", event.to_version),
        "candidate_score": cand.get("score"),
        "champion_version": champ.get("version"),
        "champion_score": champ.get("score"),
        "rule": dict(d["rule"]) if isinstance(d.get("rule"), Mapping) else {},
        "reasons": [str(r) for r in reasons] if isinstance(reasons, list) else [],
        "data_fingerprint": d.get("data_fingerprint"),
        "rows": d.get("rows"),
    }


def event_view(event: ModelEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "alias": event.alias,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "reason": event.reason,
        "user": event.user,
        "host": event.host,
        "run_id": event.run_id,
        "created_at": event.created_at,
        "gate": gate_view(event),
    }


def version_view(v: ModelVersion, root_path: RootPath, gate: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "version": v.version,
        "uri": v.uri,
        "model_class": v.model_class,
        "format": v.format,
        "size": v.size,
        "digest": v.digest,
        "status": v.status,
        "run_id": v.run_id,
        "cell_seq": v.cell_seq,
        "source_path": root_path(v.source_uri) if v.source_uri else None,
        "signature": dict(v.signature),
        "aliases": list(v.aliases),
        "created_at": v.created_at,
        "created_by": v.created_by,
        "gate": gate,
    }


# -- the service ---------------------------------------------------------------------------------


class ModelService:
    """Answers the ``models`` endpoints (called in the server's thread pool)."""

    def __init__(self, stores: StoreService) -> None:
        self.stores = stores

    def _store(self) -> Store:
        return self.stores.store(None)

    def models(self) -> dict[str, Any]:
        return {"models": [model_summary(m) for m in registry.list_models(self._store())]}

    def model(self, name: str) -> dict[str, Any]:
        store = self._store()
        summary = registry.get_model(store, name)  # NotFoundError (with close names) first
        versions = registry.list_versions(store, name, limit=MAX_VERSIONS)
        events = registry.model_history(store, name, limit=MAX_EVENTS + 1)
        truncated = len(events) > MAX_EVENTS
        events = events[-MAX_EVENTS:]
        # each version's latest gate decision, from the audit log
        gates: dict[int, dict[str, Any]] = {}
        for e in events:
            gate = gate_view(e)
            if gate is not None and isinstance(gate["candidate_version"], int):
                gates[gate["candidate_version"]] = gate
        out = model_summary(summary)
        out.update({
            "versions": [version_view(v, self.stores.root_path, gates.get(v.version))
                         for v in versions],
            "events": [event_view(e) for e in events],
            "events_truncated": truncated,
        })
        return out

    def promote(self, name: str, version: int, alias: str, reason: str | None,
                by: str | None = None) -> dict[str, Any]:
        store = self._store()
        event = registry.promote(store, name, version, alias=alias, reason=reason, user=by)
        return self._change(store, name, alias, event)

    def rollback(self, name: str, alias: str, reason: str | None,
                 by: str | None = None) -> dict[str, Any]:
        store = self._store()
        event = registry.rollback(store, name, alias=alias, reason=reason, user=by)
        return self._change(store, name, alias, event)

    @staticmethod
    def _change(store: Store, name: str, alias: str, event: ModelEvent | None) -> dict[str, Any]:
        aliases = dict(registry.get_model(store, name).aliases)
        return {
            "name": name,
            "alias": alias,
            "version": aliases.get(alias),
            "changed": event is not None,
            "event": event_view(event) if event is not None else None,
            "aliases": aliases,
        }
