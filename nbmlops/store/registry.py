"""The model registry, as the store keeps it: registered models, versions, aliases, audit events.

Reached as :attr:`Store.registry <nbmlops.store.Store.registry>`.
"""

from __future__ import annotations

from .engine import SessionManager

__all__ = ["RegistryRepo"]


class RegistryRepo:
    """The store's registry tables."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions
