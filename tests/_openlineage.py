"""OpenLineage test helpers: offline JSON-schema validation of events (the spec files in
tests/fixtures/openlineage/, our custom facets' schemas in nbmlops/openlineage/facets/), reading
a file transport's events, and a lineage receiver on loopback (http.server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import nbmlops.openlineage

FIXTURES = Path(__file__).parent / "fixtures" / "openlineage"
OUR_FACETS = Path(nbmlops.openlineage.__file__).parent / "facets"


def _core() -> dict[str, Any]:
    # the stored copy names its definitions "definitions"; the facet files point at "$defs"
    text = (FIXTURES / "OpenLineage.json").read_text()
    text = text.replace('"definitions"', '"$defs"').replace("#/definitions/", "#/$defs/")
    return json.loads(text)


_CORE = _core()


def _retrieve(uri: str) -> Resource[Any]:
    name = uri.rsplit("/", 1)[-1]
    if name == "OpenLineage.json":
        return Resource.from_contents(_CORE, default_specification=DRAFT202012)
    for folder in (FIXTURES / "facets", OUR_FACETS):
        if (folder / name).is_file():
            doc = json.loads((folder / name).read_text())
            return Resource.from_contents(doc, default_specification=DRAFT202012)
    raise LookupError(f"no schema stored for {uri}")


REGISTRY: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
CORE_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _check(ref: str, instance: Any) -> None:
    jsonschema.Draft202012Validator(
        {"$ref": ref}, registry=REGISTRY, format_checker=FORMATS
    ).validate(instance)


def _facet_bags(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "run", event["run"].get("facets") or {}
    yield "job", event["job"].get("facets") or {}
    for key in ("inputs", "outputs"):
        for ds in event.get(key) or []:
            yield f"{key}:{ds['name']}", ds.get("facets") or {}
            yield f"{key}:{ds['name']}:io", ds.get("inputFacets") or ds.get("outputFacets") or {}


def validate_event(event: dict[str, Any]) -> None:
    """The event against the core spec, then every facet against the schema its ``_schemaURL``
    names (a facet without a stored schema fails: we emit no facet we cannot check)."""
    _check(f"{CORE_URL}#/$defs/RunEvent", event)
    for where, facets in _facet_bags(event):
        for name, facet in facets.items():
            url = facet["_schemaURL"]
            assert "#/$defs/" in url, f"{where}.{name}: {url}"
            try:
                _check(url, facet)
            except jsonschema.ValidationError as exc:
                raise AssertionError(f"facet {where}.{name} invalid: {exc.message}") from exc


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Receiver:
    """A lineage endpoint on 127.0.0.1: keeps every POSTed JSON body with its path; ``hold``
    (a threading.Event) makes requests wait until it is set."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.hold = hold
        self.arrived = 0  # requests that reached the handler (held or not)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                receiver.arrived += 1
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.events.append(json.loads(body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def by_run(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Events grouped by OpenLineage run id, in emission order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        out.setdefault(ev["run"]["runId"], []).append(ev)
    return out


def assert_lifecycle(events: list[dict[str, Any]]) -> None:
    """Every run: exactly one START, first, then exactly one terminal event."""
    for run_id, evs in by_run(events).items():
        kinds = [e["eventType"] for e in evs]
        assert kinds[0] == "START", (run_id, kinds)
        assert kinds.count("START") == 1, (run_id, kinds)
        terminal = [k for k in kinds if k in ("COMPLETE", "FAIL", "ABORT")]
        assert len(terminal) == 1 and kinds[-1] == terminal[0], (run_id, kinds)
