"""What every command module of the CLI shares: the error type that carries exit codes, the root
group class that maps nbmlops errors to them, per-invocation state (the store), common options."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..config import StoreLocation
    from ..store import Store

from ..errors import NbmlopsError, StoreUnavailableError

log = logging.getLogger(__name__)


class CliError(click.ClickException):
    """An :class:`NbmlopsError` as click shows it: ``Error: <message>``, with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


class NbmlopsGroup(click.Group):
    """The root group: the one place where nbmlops errors become exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbmlopsError as exc:
            log.debug("command failed", exc_info=True)
            raise CliError(str(exc), exc.exit_code) from exc


class CliState:
    """Per-invocation state: the store URL given on the command line and the opened store."""

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store: Store | None = None

    def location(self) -> StoreLocation:
        from ..config import resolve_location

        return resolve_location(self.store_url)

    def store(self, ctx: click.Context) -> Store:
        """The store to read, opened once; never creates a store that does not exist yet."""
        if self._store is None:
            from ..store import Store

            loc = self.location()
            db = loc.sqlite_path
            if db is not None and not db.exists():
                where = (
                    f"looked for .nbmlops/ from {os.getcwd()} upwards"
                    if loc.store_dir is not None
                    else "as given by --store or NBMLOPS_STORE_URL"
                )
                raise StoreUnavailableError(
                    f"no nbmlops store at {db} ({where}); run `nbmlops init` in your project "
                    "directory, or pass --store / set NBMLOPS_STORE_URL"
                )
            self._store = Store(loc)
            ctx.call_on_close(self._store.close)
            _recover_crashed_sessions(self._store)
        return self._store


def _recover_crashed_sessions(store: Store) -> None:
    """Write what kernels that died left in their crash journals (their runs become failed)."""
    from ..capture.journal import recover_journals

    try:
        recovered = recover_journals(store.location.journal_dir, store)
    except NbmlopsError as exc:  # a read-only store, say: the listing still works
        log.info("crash journals not replayed: %s", exc)
        return
    if recovered:
        log.info("recovered %d cell records from crashed sessions", recovered)


pass_state = click.make_pass_decorator(CliState)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
tag_option = click.option(
    "--tag", "tag_pairs", multiple=True, metavar="KEY=VALUE", hidden=True,
    help="Tag the run (the scheduler records what triggered a run this way). Repeatable.")

not_before_option = click.option(
    "--not-before", "not_before", type=float, default=None, hidden=True, metavar="EPOCH",
    help="Load everything, then wait until this UNIX time to start (the scheduler starts runs "
    "a little early so that the kernel starts on time).")


def warm_then_wait(not_before: float | None) -> None:
    """Import what a run needs (papermill, nbclient, the engine: about a second), then sleep
    until ``not_before``, so that the run itself starts on the dot."""
    if not_before is None:
        return
    import time

    import jupyter_client.manager  # noqa: F401
    import papermill.execute  # noqa: F401

    from .. import engine, execute  # noqa: F401

    delay = not_before - time.time()
    if delay > 0:
        time.sleep(delay)


def tags_from_pairs(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        out[key.strip()] = value
    return out



def recorded_status(state: CliState, run_id: str) -> str | None:
    """The status the store has for ``run_id`` (None when it cannot tell)."""
    from ..store import Store

    try:
        with Store(state.location()) as store:
            return store.get_run(run_id).status
    except NbmlopsError:
        return None


def valid_run_id(run_id: str | None) -> str | None:
    if run_id is not None and (len(run_id) != 32 or any(c not in "0123456789abcdef" for c in run_id)):
        raise click.BadParameter("must be 32 lowercase hex characters", param_hint="--run-id")
    return run_id


def store_from(ctx: click.Context) -> Store:
    state = ctx.find_object(CliState)
    assert state is not None, "commands run under the root group"
    return state.store(ctx)


def writable_store(ctx: click.Context) -> Store:
    """The store, created when missing: for commands that are a first use, like a run
    (adding a schedule, registering a model)."""
    from ..store import Store

    state = ctx.find_object(CliState)
    assert state is not None, "commands run under the root group"
    store = Store(state.location())
    ctx.call_on_close(store.close)
    return store


def echo_json(value: Any) -> None:
    """Print ``value`` as the CLI's strict JSON (sorted keys, NaN/inf as null)."""
    from .. import _format

    click.echo(_format.to_json(value))
