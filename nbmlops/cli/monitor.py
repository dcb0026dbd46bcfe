"""``nbmlops monitor NAME@ALIAS`` (drift/performance of logged traffic) and
``nbmlops monitor label FILE`` (ground truth joined to the prediction log by request id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import json_option, store_from


class MonitorGroup(click.Group):
    """``monitor TARGET ...`` runs the check; ``monitor label FILE`` is the one subcommand. A
    first argument that is not a subcommand is a target."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path,
                              "NAME@ALIAS|NAME/VERSION|NAME [OPTIONS]  |  label FILE [--model NAME]")


@click.group("monitor", cls=MonitorGroup)
def monitor_group() -> None:
    """Drift, prediction drift and performance of a served model's logged traffic against its
    training data; exit 1 when drifted, 0 when not, 4 when nothing was logged.

    \b
    nbmlops monitor wine@champion --window 1h [--threshold 0.2] [--html report.html] [--json]
    nbmlops monitor label labels.csv [--model wine]
    """


@monitor_group.command("check", hidden=True)
@click.argument("target", metavar="NAME@ALIAS|NAME/VERSION|NAME")
@click.option("--window", "-w", default=None, metavar="1h|30m|2d|N",
              help="A duration (45s, 30m, 1h, 2d, 1w) or the last N rows (default: all).")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Compare against this dataset file (csv/parquet/feather) or saved schema "
              "(.json) instead of the version's training data.")
@click.option("--threshold", type=click.FloatRange(min=0), default=None,
              help="PSI beyond chance above which a feature has drifted (default 0.2).")
@click.option("--min-rows", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fewer logged rows than this are reported but not judged.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the report as a self-contained HTML page.")
@click.option("--no-record", is_flag=True, help="Do not record the result in the store.")
@json_option
@click.pass_context
def check_command(ctx: click.Context, target: str, window: str | None, reference: Path | None,
                  threshold: float | None, min_rows: int, html_out: Path | None,
                  no_record: bool, as_json: bool) -> None:
    from ..monitoring.monitor import monitor
    from ._common import echo_json

    report = monitor(store_from(ctx), target, window=window, reference=reference,
                     threshold=threshold, min_rows=min_rows, record=not no_record, source="cli")
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = html_out.with_name(f".{html_out.name}.tmp")
        tmp.write_text(report.to_html(full=True), encoding="utf-8")
        tmp.replace(html_out)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.text())
        if html_out is not None:
            click.echo(f"wrote {html_out}")
    if report.drifted:
        ctx.exit(1)


def _read_label_file(path: Path) -> Any:
    from ..validation.service import load_dataset

    return load_dataset(path, what="label")


@monitor_group.command("label")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model", default=None, metavar="NAME",
              help="The model whose log the labels belong to (default: the one whose log holds "
              "these request ids).")
@json_option
@click.pass_context
def label_command(ctx: click.Context, file: Path, model: str | None, as_json: bool) -> None:
    """Join ground truth to logged predictions: FILE (csv/tsv/parquet) with columns request_id,
    label and optionally row (the row inside the request; absent = every row). Labels for
    request ids not in the log are kept (they may be logged later) and counted."""
    from ..errors import InvalidArgumentError, NotFoundError
    from ..monitoring.predlog import list_parts, read_predictions, write_labels
    from ..registry import service
    from ._common import echo_json

    store = store_from(ctx)
    frame = _read_label_file(file)
    for column in ("request_id", "label"):
        if column not in frame.columns:
            raise InvalidArgumentError(
                f"label file {file}: needs columns request_id and label (optionally row); "
                f"has {', '.join(map(str, frame.columns)) or 'none'}")
    root = store.location.predictions_dir
    ids = set(frame["request_id"].astype(str))
    if model is not None:
        service.get_model(store, service.check_name(model))  # unknown model: NotFoundError
        candidates = [model]
    else:
        candidates = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not candidates:
            raise NotFoundError(f"no prediction logs under {root}: nothing to label")
    known: dict[str, set[str]] = {}
    for name in candidates:
        logged = read_predictions(root / name, role=None, columns=["request_id"])
        known[name] = set(logged["request_id"].astype(str)) if not logged.empty else set()
    if model is None:
        matching = [n for n in candidates if known[n] & ids]
        if len(matching) == 1 or len(candidates) == 1:
            model = (matching or candidates)[0]
        elif not matching:
            raise NotFoundError(
                f"label file {file}: none of its {len(ids)} request ids is in a prediction log "
                f"({', '.join(candidates)}); name the model with --model")
        else:
            raise InvalidArgumentError(
                f"label file {file}: its request ids are in the logs of {', '.join(matching)}; "
                "name the model with --model")
    directory = root / model
    written = write_labels(directory, frame)
    unknown = sorted(ids - known.get(model, set()))
    out = {"model": model, "file": str(file), "labels": written,
           "request_ids": len(ids), "unknown_request_ids": len(unknown),
           "unknown_sample": unknown[:5], "log_files": len(list_parts(directory))}
    if as_json:
        echo_json(out)
        return
    click.echo(f"wrote {written} labels for {model} ({len(ids)} request ids)")
    if unknown:
        click.echo(f"{len(unknown)} request ids are not in the log yet (kept): "
                   f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")


__all__ = ["monitor_group"]
