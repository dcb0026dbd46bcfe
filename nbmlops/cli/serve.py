"""``nbmlops serve NAME@ALIAS|NAME/VERSION|NAME``: a registered model over HTTP (a click face
over :mod:`nbmlops.serving`)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from typing import TYPE_CHECKING

import click

from ..errors import InvalidArgumentError, NotFoundError
from ._common import store_from

if TYPE_CHECKING:
    from ..serving.models import Loaded
    from ..serving.options import Arm, ServeOptions
    from ..store import Store

log = logging.getLogger(__name__)


@click.command("serve")
@click.argument("target", metavar="NAME@ALIAS|NAME/VERSION|NAME")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes (each loads the model; metrics are aggregated).")
@click.option("--log-sample", default=1.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of requests written to the prediction log.")
@click.option("--no-log", is_flag=True, help="Write no prediction log.")
@click.option("--no-fast-path", is_flag=True,
              help="Predict scikit-learn forests with their own predict() (the default fast "
                   "path sums the trees directly, checked against it at load).")
@click.option("--split", "split", metavar="ALIAS=W,ALIAS=W", default=None,
              help="Route requests between aliases by weight, e.g. champion=90,challenger=10.")
@click.option("--shadow", metavar="ALIAS", default=None,
              help="Also score every request with this alias (logged, never returned).")
@click.option("--poll", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between checks of where the aliases point.")
@click.option("--max-body", default=10 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024), help="Largest request body in bytes (larger: 413).")
@click.option("--max-rows", default=10_000, show_default=True, type=click.IntRange(1),
              help="Most rows per request (more: 422).")
@click.pass_context
def serve_command(ctx: click.Context, target: str, host: str, port: int, workers: int,
                  log_sample: float, no_log: bool, no_fast_path: bool, split: str | None,
                  shadow: str | None, poll: float, max_body: int, max_rows: int) -> None:
    """Serve a registered model: POST /v1/models/NAME/predict, GET /health, GET /v1/models/NAME,
    GET /metrics. Follows its aliases: a promote or rollback is served within --poll seconds."""
    from ..registry.service import check_alias
    from ..serving.options import Arm, ServeOptions, parse_split, parse_target

    name, version, alias = parse_target(target)
    if split is not None:
        if version is not None or alias is not None:
            raise InvalidArgumentError("--split takes the model NAME alone (the aliases are in "
                                       "--split), e.g. nbmlops serve wine --split champion=90,challenger=10")
        arms = parse_split(split)
    else:
        arms = [Arm(alias=alias, version=version)]
    if shadow is not None:
        check_alias(shadow)
        if any(a.alias == shadow for a in arms):
            raise InvalidArgumentError(f"--shadow {shadow} is also answering requests; shadow "
                                       "an alias that is not in the split")
        arms.append(Arm(alias=shadow, version=None, role="shadow", weight=0))

    if no_fast_path:  # read by load_version, here and in --workers processes
        os.environ["NBMLOPS_SERVE_FAST_PATH"] = "0"
    store = store_from(ctx)
    loaded = _load_arms(store, name, arms)
    loc = store.location
    options = ServeOptions(
        model=name, arms=arms, host=host, port=port, workers=workers, log=not no_log,
        log_sample=log_sample, poll=poll, max_body=max_body, max_rows=max_rows,
        store_url=loc.url, artifact_root=str(loc.artifact_root),
        store_dir=str(loc.store_dir) if loc.store_dir else None,
        predictions_dir=str(loc.predictions_dir))
    logging.getLogger("nbmlops.serving").setLevel(logging.INFO)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    options.port = port
    desc = ", ".join(f"{name}{a.label} v{loaded[i].number}"
                     + (f" ({a.weight})" if split else "") + (" shadow" if a.role == "shadow" else "")
                     for i, a in enumerate(arms))
    click.echo(f"serving {desc} on http://{host}:{port}  (POST /v1/models/{name}/predict; "
               f"log: {'off' if no_log else f'{options.predictions_dir}/{name}'})", err=True)
    if workers == 1:
        _run_one(options, loaded, sock)
    else:
        sock.close()
        _run_many(options)


def _load_arms(store: Store, name: str, arms: list[Arm]) -> dict[int, Loaded]:
    """Every arm resolved and loaded once before listening: a target that does not resolve or
    load is a clear error and exit code, not a service answering 503."""
    from ..serving.models import load_version, resolve_arm

    if arms[0].alias is None and arms[0].version is None and len(arms) == 1:
        # NAME alone: the champion when there is one, else the newest version
        from ..serving.options import DEFAULT_ALIAS, Arm

        try:
            resolve_arm(store, name, Arm(alias=DEFAULT_ALIAS, version=None))
            arms[0] = Arm(alias=DEFAULT_ALIAS, version=None)
        except NotFoundError:
            store.registry.get_model(name)  # an unknown model is named as such
    loaded: dict[int, Loaded] = {}
    cache: dict[tuple[int, str], Loaded] = {}
    for i, arm in enumerate(arms):
        v = resolve_arm(store, name, arm)
        if (v.version, v.digest) not in cache:
            cache[(v.version, v.digest)] = load_version(store, v)
        loaded[i] = cache[(v.version, v.digest)]
    return loaded


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidArgumentError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _run_one(options: ServeOptions, loaded: dict[int, Loaded], sock: socket.socket) -> None:
    import uvicorn

    from ..serving.app import create_app

    app = create_app(options, loaded)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _run_many(options: ServeOptions) -> None:
    import uvicorn

    from ..serving.app import OPTIONS_ENV

    metrics_dir = tempfile.mkdtemp(prefix="nbmlops-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[OPTIONS_ENV] = options.to_json()
    try:
        uvicorn.run("nbmlops.serving.app:app_from_env", factory=True, host=options.host,
                    port=options.port, workers=options.workers, log_level="warning",
                    access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
