"""Prometheus metrics of the service (``GET /metrics``, text format 0.0.4).

One process: a registry of the app's own. ``--workers N``: prometheus_client's multiprocess
mode (the CLI gives the workers a private ``PROMETHEUS_MULTIPROC_DIR``), collected per scrape.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Metrics"]

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg: Any = self.registry
        self.requests = Counter(
            "nbmlops_requests", "Predict requests answered, by HTTP status, alias and version.",
            ["model", "alias", "version", "status"], registry=reg)
        self.rows = Counter("nbmlops_predicted_rows", "Rows predicted, by alias, version and role.",
                            ["model", "alias", "version", "role"], registry=reg)
        self.latency = Histogram(
            "nbmlops_request_latency_seconds", "Predict request latency (arrival to answer).",
            ["model", "alias"], buckets=_BUCKETS, registry=reg)
        self.errors = Counter("nbmlops_errors", "Requests refused or failed, by kind.",
                              ["model", "kind"], registry=reg)
        gauge_kw: dict[str, Any] = {"multiprocess_mode": "livemax"} if self.multiprocess else {}
        self.version = Gauge("nbmlops_model_version", "Version loaded per alias and role.",
                             ["model", "alias", "role"], registry=reg, **gauge_kw)
        self.swaps = Counter("nbmlops_model_swaps", "Alias moves followed (new version loaded).",
                             ["model", "alias"], registry=reg)
        self.log_dropped = Counter("nbmlops_prediction_log_dropped_rows",
                                   "Rows the prediction log dropped (queue full).", ["model"],
                                   registry=reg)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
