"""Fixtures of the Jupyter server extension tests that must be imported by each test module:
they override pytest-jupyter's own, which each module star-imports (a module's names win over
conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The server runs the nbmlops extension; with `configured_store`, at that store."""
    config: dict[str, Any] = {"ServerApp": {"jpserver_extensions": {"nbmlops.server": True}}}
    if "configured_store" in request.fixturenames:
        config["NbmlopsServerApp"] = {"store_url": request.getfixturevalue("configured_store")}
    return config
