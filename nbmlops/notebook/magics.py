"""The ``%mlops`` line magic: control capture and look at runs, cells and lineage from a notebook.

One table, :data:`SUBCOMMANDS`, lists every subcommand with its one-line summary, its arguments
and the small function that runs it; the argument parser, ``%mlops --help`` and the "unknown
subcommand" message are all built from it. Parse errors and every
:class:`~nbmlops.errors.NbmlopsError` become ``UsageError`` (shown without a traceback).

Settings are traits (``%config MlopsMagics.widgets = False``). The store, pandas and ipywidgets
are imported only when a subcommand needs them, so registering the magics costs little.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import (
    ArgDecorator,
    MagicArgumentParser,
    MagicHelpFormatter,
    argument,
    kwds,
    magic_arguments,
)
from IPython.utils.process import arg_split
from traitlets import Bool, Int
from traitlets.config import Configurable

from ..errors import NbmlopsError

if TYPE_CHECKING:
    from ..capture.session import CaptureSession
    from ..store import Store

__all__ = ["MlopsMagics", "SUBCOMMANDS", "Subcommand"]

Handler = Callable[["MlopsMagics", argparse.Namespace], Any]
ArgSpec = tuple[tuple[str, ...], dict[str, Any]]

LINEAGE_TARGET_HELP = "a variable of the run, a file path, artifact:ID or cell:ID"
EXPORT_TARGET_HELP = "a variable of the run, a file path it read or wrote, artifact:ID or cell:ID"


# -- argument types -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _arg(*flags: str, **options: Any) -> ArgSpec:
    return flags, options


# -- helpers the subcommands share --------------------------------------------------------------


def _session() -> CaptureSession | None:
    from ..capture.session import active_session

    return active_session()


def _require_session() -> CaptureSession:
    session = _session()
    if session is None:
        raise UsageError("capture is not loaded in this kernel: run %load_ext nbmlops")
    return session


def _store() -> Store:
    from ..query import default_store

    return default_store()


def _current_run_id() -> str | None:
    session = _session()
    return session.run_id if session is not None else None


def _run_or_current(run: str | None, what: str) -> str:
    rid = run or _current_run_id()
    if rid is None:
        raise UsageError(
            f"no run is being recorded: name one with `%mlops {what} --run RUN` "
            "(ids from %mlops runs), or %mlops start"
        )
    return rid


def _describe(session: CaptureSession) -> str:
    from .._format import short_id

    exp = f" in experiment {session.run_experiment!r}" if session.run_experiment else ""
    return f"run {session.run_name!r} ({short_id(session.run_id)}){exp}"


# -- the subcommands ----------------------------------------------------------------------------


def _cmd_status(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import StatusView

    session = _session()
    if session is not None:
        return StatusView(session.status())
    from ..config import resolve_location

    return StatusView({"state": None, "store": resolve_location().describe()})


def _cmd_start(m: MlopsMagics, args: argparse.Namespace) -> None:
    session = _require_session()
    tags = dict(args.tag or [])
    previous = session.run_id
    session.start(args.name, experiment=args.experiment, tags=tags)
    ended = " (the previous run is finished)" if previous else ""
    print(f"nbmlops: recording {_describe(session)}{ended}")


def _cmd_stop(m: MlopsMagics, args: argparse.Namespace) -> None:
    session = _require_session()
    if session.run_id is None:
        print("nbmlops: no run is active; nothing to stop")
        return
    described = _describe(session)
    session.stop()
    print(f"nbmlops: finished {described}; %mlops start begins a new one")


def _cmd_pause(m: MlopsMagics, args: argparse.Namespace) -> None:
    session = _require_session()
    session.pause()
    print(f"nbmlops: paused {_describe(session)}; cells are not recorded until %mlops resume")


def _cmd_resume(m: MlopsMagics, args: argparse.Namespace) -> None:
    session = _require_session()
    session.resume()
    print(f"nbmlops: recording {_describe(session)} again")


def _cmd_history(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import HistoryView

    rid = _run_or_current(args.run, "history")
    store = _store()
    run = store.get_run(rid)
    cells = store.cell_executions(run.id)
    limit = args.limit or m.default_limit
    return HistoryView(cells[-limit:], run=run, total=len(cells))


def _cmd_runs(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import RunsView

    page = _store().list_runs(
        experiment=args.experiment,
        notebook=args.notebook,
        status=args.status,
        limit=args.limit or m.default_limit,
    )
    view = RunsView(page.runs, total=page.total, current_run_id=_current_run_id())
    return view.widget() if m.use_widgets() else view


def _cmd_show(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import RunView

    return RunView(_store().get_run(_run_or_current(args.run, "show")))


def _cmd_compare(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import ComparisonView

    if len(args.runs) < 2:
        raise UsageError("%mlops compare needs at least two runs: %mlops compare RUN RUN [RUN ...]")
    return ComparisonView(_store().compare(args.runs))


def _last_written(store: Store, run_id: str) -> str | None:
    for cell in reversed(store.cell_executions(run_id)):
        if cell.writes:
            return f"artifact:{cell.writes[-1].id}"
    return None


def _cmd_lineage(m: MlopsMagics, args: argparse.Namespace) -> Any:
    from .widgets import LineageView

    store = _store()
    run_id = args.run or _current_run_id()
    target = args.target
    if target is None:
        if run_id is None:
            raise UsageError(f"%mlops lineage: name a TARGET ({LINEAGE_TARGET_HELP}); no run is being recorded")
        target = _last_written(store, run_id)
        if target is None:
            raise UsageError(
                f"%mlops lineage: run {run_id[:8]} has not written a file yet; name a TARGET "
                f"({LINEAGE_TARGET_HELP})"
            )
    direction = "downstream" if args.downstream else "upstream"
    graph = store.lineage(target, run_id=run_id, direction=direction)
    return LineageView(graph, direction=direction)


def _cmd_export(m: MlopsMagics, args: argparse.Namespace) -> None:
    from ..environment import find_notebook_path
    from ..slicing import export_notebook

    rid = _run_or_current(args.run, "export TARGET -o NOTEBOOK")
    # the notebook open in this kernel is never overwritten, whichever run is exported
    running = find_notebook_path(m.shell.user_ns if m.shell is not None else None)
    result = export_notebook(args.target, args.output, run_id=rid, force=args.force,
                             protected=[running])
    print(result.summary(args.output))
    for note in result.warnings:
        print(f"  note: {note}")


def _cmd_register(m: MlopsMagics, args: argparse.Namespace) -> None:
    from ..errors import NotFoundError
    from ..registry import service

    ns = m.shell.user_ns if m.shell is not None else {}
    if args.variable not in ns:
        close = difflib.get_close_matches(args.variable, [k for k in ns if not k.startswith("_")], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(f"no variable {args.variable!r} in this kernel's namespace{hint}")
    version = service.register(_store(), ns[args.variable], args.name, alias=args.alias,
                               reason=args.reason, variable=args.variable, namespace=ns)
    where = f", run {version.run_id[:8]}" if version.run_id else ""
    alias = f"; {args.name}@{args.alias} -> v{version.version}" if args.alias else ""
    print(f"registered {args.variable} as {version.uri} ({version.format}{where}){alias}")


@dataclass(frozen=True)
class Subcommand:
    """One ``%mlops`` subcommand: its name, one-line summary, arguments and function."""

    name: str
    summary: str
    run: Handler
    arguments: tuple[ArgSpec, ...] = ()


_RUN = _arg("--run", metavar="RUN", help="run id or unique prefix (default: this kernel's run)")
_LIMIT = _arg("--limit", "-n", type=_positive_int, metavar="N",
              help="rows to show (default: MlopsMagics.default_limit)")

#: Every subcommand of ``%mlops``, in the order ``--help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {
    c.name: c
    for c in (
        Subcommand("status", "show whether this kernel is recording, which run and where to", _cmd_status),
        Subcommand(
            "start", "end the current run and start recording a new one", _cmd_start,
            (
                _arg("name", nargs="?", metavar="NAME", help="run name (default: the notebook's name)"),
                _arg("--experiment", "-e", metavar="E", help="experiment of the new run"),
                _arg("--tag", "-t", action="append", type=_key_value, metavar="K=V",
                     help="tag the run (repeatable)"),
            ),
        ),
        Subcommand("stop", "end the current run; nothing is recorded until start", _cmd_stop),
        Subcommand("pause", "stop recording cells for now (the run stays open)", _cmd_pause),
        Subcommand("resume", "record cells again after pause", _cmd_resume),
        Subcommand("history", "this run's cell executions: variables, data, models, metrics",
                   _cmd_history, (_RUN, _LIMIT)),
        Subcommand(
            "runs", "table of recorded runs, newest first (click a header to sort)", _cmd_runs,
            (
                _arg("--experiment", "-e", metavar="E", help="only runs of this experiment"),
                _arg("--notebook", metavar="N", help="only runs of this notebook (path or file name)"),
                _arg("--status", metavar="S",
                     help="only runs with this status (running, finished, failed, ...)"),
                _LIMIT,
            ),
        ),
        Subcommand("show", "one run: fields, params, metrics and tags", _cmd_show,
                   (_arg("run", nargs="?", metavar="RUN", help="run id or prefix (default: this run)"),)),
        Subcommand("compare", "params (differences highlighted) and metrics of several runs", _cmd_compare,
                   (_arg("runs", nargs="+", metavar="RUN", help="two or more run ids or prefixes"),)),
        Subcommand(
            "lineage", "where a variable, file or model came from, drawn as a graph", _cmd_lineage,
            (
                _arg("target", nargs="?", metavar="TARGET",
                     help=f"{LINEAGE_TARGET_HELP} (default: the last file this run wrote)"),
                _RUN,
                _arg("--downstream", action="store_true", help="what came of TARGET instead"),
            ),
        ),
        Subcommand(
            "export", "write a notebook of only the cells a variable or file needs",
            _cmd_export,
            (
                _arg("target", metavar="TARGET", help=EXPORT_TARGET_HELP),
                _arg("-o", "--output", required=True, metavar="NOTEBOOK",
                     help="the notebook to write (.ipynb)"),
                _RUN,
                _arg("--force", action="store_true", help="overwrite NOTEBOOK if it exists"),
            ),
        ),
        Subcommand(
            "register", "register a fitted model in the model registry as a new version",
            _cmd_register,
            (
                _arg("variable", metavar="VAR", help="the variable holding the fitted model"),
                _arg("--name", required=True, metavar="NAME", help="the registered model's name"),
                _arg("--alias", "-a", metavar="A", help="point this alias (e.g. champion) at it"),
                _arg("--reason", "-r", metavar="R", help="why, kept in the audit log"),
            ),
        ),
    )
}


# -- parser -------------------------------------------------------------------------------------


class _HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    """``-h/--help``: stop parsing and show the help of the (sub)parser it belongs to."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str = "show this help") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        raise _HelpRequested(parser.format_help())


class _HelpFormatter(MagicHelpFormatter):
    """IPython's magic help layout, with a plain ``usage: %mlops ...`` line."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = "usage: %") -> None:
        super().add_usage(usage, actions, groups, prefix)


class _SubcommandParsers(ArgDecorator):
    """Adds one subparser per entry of :data:`SUBCOMMANDS` to the magic's parser."""

    def __init__(self, table: dict[str, Subcommand]) -> None:
        self.table = table
        self.parsers: dict[str, argparse.ArgumentParser] = {}

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> None:
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", title="subcommands", parser_class=MagicArgumentParser,
        )
        for command in self.table.values():
            sub = subparsers.add_parser(command.name, help=command.summary, description=command.summary,
                                        formatter_class=_HelpFormatter)
            sub.add_argument("-h", "--help", action=_HelpAction)
            for flags, options in command.arguments:
                sub.add_argument(*flags, **options)
            self.parsers[command.name] = sub


_subcommand_parsers = _SubcommandParsers(SUBCOMMANDS)


def _split(line: str) -> list[str]:
    """Shell-like words: quotes group and are removed (Windows rules on Windows, like ``%run``)."""
    try:
        return arg_split(line, posix=os.name == "posix", strict=True)
    except ValueError as exc:
        raise UsageError(f"%mlops: cannot read the arguments ({exc})") from None


def _unknown_subcommand(name: str) -> UsageError:
    valid = ", ".join(SUBCOMMANDS)
    close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UsageError(f"%mlops: unknown subcommand {name!r}; valid subcommands: {valid}.{hint}")


# -- the magics ---------------------------------------------------------------------------------


@magics_class
class MlopsMagics(Magics, Configurable):
    """The ``%mlops`` magic. Settings: ``%config MlopsMagics.<name> = <value>``."""

    widgets = Bool(
        True, config=True,
        help="Show interactive ipywidgets views (sortable runs table) when a kernel can display them; "
             "False always returns plain HTML/text views.",
    )
    default_limit = Int(
        20, config=True, help="Rows `%mlops runs` and `%mlops history` show without --limit.",
    )

    def use_widgets(self) -> bool:
        """True when widgets are wanted and a kernel with a comm channel can display them."""
        if not self.widgets or getattr(self.shell, "kernel", None) is None:
            return False
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return False
        return True

    @magic_arguments()
    @kwds(
        formatter_class=_HelpFormatter,
        epilog="`%mlops SUBCOMMAND --help` shows the options of one subcommand; "
               "without a subcommand, %mlops shows the status.",
    )
    @argument("-h", "--help", action=_HelpAction)
    @_subcommand_parsers
    @line_magic
    def mlops(self, line: str = "") -> Any:
        """Record notebook lineage and explore runs, cell history, comparisons and lineage."""
        argv = _split(line)
        name = argv[0] if argv and not argv[0].startswith("-") else None
        if name is not None and name not in SUBCOMMANDS:
            raise _unknown_subcommand(name)
        try:
            # the parser @magic_arguments built; words split here so that quotes are removed
            # (parse_argstring keeps them: `start "my run"` would name the run '"my run"')
            args = self.mlops.parser.parse_args(argv)
        except _HelpRequested as shown:
            print(shown.text.rstrip())
            return None
        except UsageError as exc:
            sub = _subcommand_parsers.parsers.get(name or "")
            prog = f"%mlops {name}" if sub is not None else "%mlops"
            usage = (sub or self.mlops.parser).format_usage().strip()
            raise UsageError(f"{prog}: {exc}\n{usage}") from None
        command = SUBCOMMANDS[args.subcommand or "status"]
        try:
            return command.run(self, args)
        except NbmlopsError as exc:
            raise UsageError(f"%mlops {command.name}: {exc}") from None
