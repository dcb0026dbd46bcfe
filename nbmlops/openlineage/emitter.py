"""Delivery: one bounded queue and one daemon thread per process.

Writers only ``put_nowait`` (a full queue drops the item and counts its events); the thread
builds the events and sends them in queue order, so a run's START always goes before its
COMPLETE. A failed send drops the event, and for the next few seconds events are dropped
without trying (an endpoint that is down costs one attempt, not one timeout per event). At
process exit the queue gets a bounded wait. Nothing is ever retried later or written to disk:
lineage is best effort, the store is the record.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any

from .listener import Item
from .settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Emitter", "RETRY_AFTER"]

#: seconds during which events are dropped without a try after a failed send
RETRY_AFTER = 5.0
_STOP = ("stop",)


def _weight(item: Item) -> int:
    """How many events an item becomes."""
    return 2 * len(item[2]) if item[0] == "cells" else 1


class Emitter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._queue: queue.Queue[Item] = queue.Queue(settings.queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.sent = 0
        self.dropped = 0
        self._down_until = 0.0
        self._warned = False
        self._closed = False
        # runs whose START was dropped for a full queue: their other events are dropped too
        self._lost: set[str] = set()
        # registered when the first store opens, before the writers that use it register
        # theirs: exit handlers run last-in first-out, so this one runs after they flushed
        atexit.register(self.close)

    # -- writers' side (any thread) ---------------------------------------------------------------

    def submit(self, item: Item) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if item[0] == "start":
                self._lost.add(item[1].run_id)
            self._drop(_weight(item), "the queue is full")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="nbmlops-openlineage", daemon=True)
                t.start()
                self._thread = t

    def _drop(self, n: int, reason: str) -> None:
        with self._lock:
            self.dropped += n
            first = not self._warned
            self._warned = True
        if first:
            log.warning(
                "OpenLineage: events dropped (%s); the run and its cells are recorded as usual. "
                "nbmlops.openlineage.stats() counts what was sent and dropped.", reason,
            )

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._deliver(item)
            except Exception:  # noqa: BLE001 - the thread must outlive any one item
                log.debug("openlineage: item failed", exc_info=True)
            finally:
                self._queue.task_done()

    def _get_client(self) -> Any:
        if self._client is None:
            from openlineage.client import OpenLineageClient

            if self.settings.transport is not None:
                self._client = OpenLineageClient(config={"transport": self.settings.transport})
            else:
                self._client = OpenLineageClient()
        return self._client

    def _deliver(self, item: Item) -> None:
        if item[1].run_id in self._lost:
            if item[0] == "end":
                self._lost.discard(item[1].run_id)
            self._drop(_weight(item), "the queue is full")
            return
        try:
            from .events import build

            client = self._get_client()
            events = build(item, self.settings.namespace)
        except ImportError as exc:
            self._drop(_weight(item), f"openlineage-python is not importable ({exc}); "
                                      "install it with: pip install 'nbmlops[openlineage]'")
            return
        except Exception as exc:  # noqa: BLE001
            log.debug("openlineage: could not build events", exc_info=True)
            self._drop(_weight(item), f"{type(exc).__name__}: {exc}")
            return
        for event in events:
            if time.monotonic() < self._down_until:
                self._drop(1, "the endpoint is not answering")
                continue
            try:
                client.emit(event)
            except Exception as exc:  # noqa: BLE001 - the endpoint is down, or refused it
                self._down_until = time.monotonic() + RETRY_AFTER
                self._drop(1, f"sending failed: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.sent += 1

    # -- flush, stats, exit -------------------------------------------------------------------

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until every queued event was sent (or dropped)."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def close(self) -> None:
        """At exit: a bounded wait for the queue; what is left is dropped and counted."""
        if self._closed or self.pid != os.getpid():
            return
        atexit.unregister(self.close)
        flushed = self.flush(self.settings.exit_wait)
        self._closed = True
        if not flushed:
            left = 0
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                left += _weight(item)
                self._queue.task_done()
            if left:
                self._drop(left, "the process exited before they were sent")
        if self.dropped:
            log.warning("OpenLineage: %d event(s) sent, %d dropped in this process",
                        self.sent, self.dropped)
        client = self._client
        if client is not None:
            try:
                client.close(0)
            except Exception:  # noqa: BLE001
                pass

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"sent": self.sent, "dropped": self.dropped, "queued": self.pending()}
