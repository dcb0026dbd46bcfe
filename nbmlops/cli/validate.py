"""``nbmlops validate DATA --against REF``: the command-line face of :func:`nbmlops.validate`.

Exit codes: 0 passed, 1 violations, 2 bad arguments, 4 a data file or reference that does not
exist. The result is recorded in the store given by ``--store``/``NBMLOPS_STORE_URL`` or the
project's ``.nbmlops/`` when there is one (``--no-record``: never).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import click

from ..errors import InvalidArgumentError
from ._common import CliState, json_option, pass_state

__all__ = ["validate_command", "parse_thresholds"]


def parse_thresholds(pairs: Sequence[str]) -> dict[str, Any]:
    """``psi=0.3`` (every column) and ``age.psi=0.5`` (one column) as the ``thresholds``
    mapping; ``none`` turns a check off."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"--threshold {pair!r}: expected KEY=VALUE or "
                                       "COLUMN.KEY=VALUE, e.g. psi=0.3")
        value: float | None
        if raw.strip().lower() in ("none", "off"):
            value = None
        else:
            try:
                value = float(raw)
            except ValueError:
                raise InvalidArgumentError(
                    f"--threshold {pair!r}: {raw!r} is not a number (or 'none')") from None
            if not math.isfinite(value):
                raise InvalidArgumentError(f"--threshold {pair!r}: {raw!r} is not a number")
        column, dot, name = key.strip().rpartition(".")
        if dot:
            out.setdefault("columns", {}).setdefault(column, {})[name] = value
        else:
            out[name] = value
    return out


@click.command("validate")
@click.argument("data", metavar="DATA")
@click.option("--against", "against", required=True, metavar="REF",
              help="Reference: a dataset file (csv, tsv, parquet, feather), a saved schema "
              "(.json), or artifact:ID of a recorded dataset or schema.")
@click.option("--threshold", "threshold_pairs", multiple=True, metavar="[COLUMN.]KEY=VALUE",
              help="Override a threshold (psi, chi2_pvalue, range_tolerance, null_tolerance) "
              "for every column or for one (age.psi=0.5); 'none' turns it off. Repeatable.")
@click.option("--strict-columns", is_flag=True,
              help="Columns the reference does not have are violations too.")
@click.option("--no-record", is_flag=True, help="Do not record the result in the store.")
@json_option
@pass_state
@click.pass_context
def validate_command(ctx: click.Context, state: CliState, data: str, against: str,
                     threshold_pairs: tuple[str, ...], strict_columns: bool, no_record: bool,
                     as_json: bool) -> None:
    """Validate DATA (a dataset file) against a reference dataset or saved schema.

    Checks columns and dtypes, nulls, numeric ranges, category sets and drift (PSI), prints the
    violations and exits 1 if there are any."""
    from ..validation import validate

    thresholds = parse_thresholds(threshold_pairs)
    store = state.store(ctx) if state.store_url and not no_record else None
    result = validate(data, against, thresholds=thresholds,
                      allow_extra_columns=not strict_columns, record=not no_record, store=store)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(str(result))
        if result.recorded:
            click.echo(f"recorded: {result.recorded}")
    if not result.passed:
        ctx.exit(1)
