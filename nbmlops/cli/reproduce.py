"""``nbmlops reproduce RUN``: re-run a recorded run and say whether it reproduces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import json_option, store_from

if TYPE_CHECKING:
    from ..reproduce import Difference, Drift


_HASH_PREFIXES = ("sha256:", "sampled:", "frame:")


def _short(value: Any) -> str:
    """A value for a table cell: fingerprints and hashes cut to 12 hex digits (the JSON
    report has them whole), floats with every digit."""
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    for prefix in _HASH_PREFIXES:
        if text.startswith(prefix):
            return text[: len(prefix) + 12]
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12]
    return text


def _drift_table(drift: list[Drift]) -> str:
    from .. import _format

    def now(d: Drift) -> str:
        return _short(d.current) if d.current else "(gone)" if d.kind == "missing" else "-"

    rows = [[d.kind, d.name, d.step or "", _short(d.recorded) if d.recorded else "-", now(d),
             d.note or ""] for d in drift]
    return _format.render_table(["what", "name", "step", "recorded", "now", "note"], rows,
                                max_width=200, right_align=[False] * 6)


def _difference_table(diffs: list[Difference]) -> str:
    from .. import _format

    def show(value: Any) -> str:
        return "(none)" if value is None else _short(value)

    rows = [[d.kind, d.step or "", d.name, show(d.original), show(d.reproduced)] for d in diffs]
    return _format.render_table(["what", "step", "name", "original", "reproduced"], rows,
                                max_width=200, right_align=[False] * 5)


@click.command("reproduce")
@click.argument("run_id", metavar="RUN")
@click.option("--allow-drift", is_flag=True,
              help="Run even when notebooks, inputs or packages changed since RUN (the changes "
              "are reported).")
@click.option("--rtol", type=float, default=1e-7, show_default=True,
              help="Relative tolerance of metrics (numpy.isclose: |new-old| <= atol + rtol*|old|).")
@click.option("--atol", type=float, default=0.0, show_default=True,
              help="Absolute tolerance of metrics.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the executed notebook(s) of the reproduction here (default: "
              ".nbmlops/runs/<run-id>/).")
@json_option
@click.pass_context
def reproduce_command(ctx: click.Context, run_id: str, allow_drift: bool, rtol: float,
                      atol: float, output_dir: Path | None, as_json: bool) -> None:
    """Re-run RUN (a `nbmlops run`/papermill run, or a pipeline run) with its recorded
    notebook content, params and inputs, and compare the outputs.

    First checks what changed since RUN: notebook content, the files it read (fingerprints,
    missing files), package and Python versions. Any change is refused (exit 1, with the list)
    unless --allow-drift. The reproduction is recorded as a new run tagged
    nbmlops.reproduces=RUN. Then metrics (within --rtol/--atol), written files (by fingerprint)
    and every cell's status are compared: prints "reproducible: yes" (exit 0) or
    "reproducible: no" with the differences (exit 1).

    \b
    --json prints {"original_run_id", "run_id", "kind", "status", "reproducible", "drift":
    [{"kind", "name", "step", "recorded", "current", "blocking", "note"}], "differences":
    [{"kind", "name", "step", "original", "reproduced"}], "compared": {"metrics", "files",
    "cells", "steps"}, "rtol", "atol", "notebooks"}; a refusal prints {"original_run_id",
    "refused": true, "drift": [...]}.
    """
    from .. import _format
    from ..errors import InvalidArgumentError
    from ..reproduce import DriftError, check, reproduce

    if rtol < 0 or atol < 0:
        raise InvalidArgumentError("--rtol and --atol must be >= 0")
    store = store_from(ctx)
    plan = check(store, run_id)
    display = None
    if plan.kind == "pipeline" and not as_json and sys.stderr.isatty():
        from ..pipeline.load import load_pipeline
        from ..pipeline.progress import ProgressDisplay

        if plan.pipeline_path is not None and plan.pipeline_path.exists():
            order = load_pipeline(plan.pipeline_path).topological_order()
            display = ProgressDisplay(sys.stderr, order)
    try:
        report = reproduce(store, plan.run.id, allow_drift=allow_drift, rtol=rtol, atol=atol,
                           output_dir=output_dir, on_event=display, plan=plan)
    except DriftError as exc:
        if as_json:
            click.echo(_format.to_json({"original_run_id": exc.run_id, "refused": True,
                                        "drift": [d.to_dict() for d in exc.drift]}))
        else:
            click.echo(f"changed since run {exc.run_id[:8]}:")
            click.echo(_drift_table([d for d in exc.drift if d.blocking]))
            for d in exc.drift:
                if d.kind == "secret":
                    click.echo(f"note: {d.name}{f' (step {d.step})' if d.step else ''} held a secret: {d.note}")
        raise
    finally:
        if display is not None:
            display.finish()
    if as_json:
        click.echo(_format.to_json(report.to_dict()))
    else:
        click.echo(f"reproduction of run {report.original_run_id[:8]}: run {report.run_id[:8]} "
                   f"{report.status}")
        added = [d for d in report.drift if d.kind == "package" and d.recorded is None]
        shown = [d for d in report.drift if d not in added]
        if shown:
            click.echo("drift (run anyway):" if any(d.blocking for d in shown) else "notes:")
            click.echo(_drift_table(shown))
        if added:
            click.echo(f"note: {len(added)} package(s) installed since the run (not checked): "
                       + ", ".join(d.name for d in added[:5]) + (", ..." if len(added) > 5 else ""))
        for path in report.notebooks:
            click.echo(f"executed notebook: {path}")
        c = report.compared
        click.echo(f"compared: {c['metrics']} metrics (rtol {rtol:g}, atol {atol:g}), "
                   f"{c['files']} written files, {c['cells']} cells"
                   + (f", {c['steps']} steps" if c["steps"] else ""))
        if report.differences:
            click.echo(_difference_table(report.differences))
        click.echo(f"reproducible: {'yes' if report.reproducible else 'no'}")
    if not report.reproducible:
        ctx.exit(1)  # an answer, not an error: the report above says why
