"""``nbmlops card NAME@ALIAS -o card.md|card.html``: a model card from lineage alone."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import json_option, store_from


@click.command("card")
@click.argument("model", metavar="NAME@ALIAS|NAME/VERSION")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the card here; .html gives a self-contained page, anything else "
              "Markdown (default: print Markdown).")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default=None,
              help="Card format (default: from the -o suffix, else md).")
@json_option
@click.pass_context
def card_command(ctx: click.Context, model: str, output: Path | None, fmt: str | None,
                 as_json: bool) -> None:
    """Write the model card of a registered version: training and validation data
    (paths, fingerprints, schema, row counts), params, metrics, gate decisions and validation
    results, the cells that built it, environment, git commit and every alias change with its
    reason. Everything comes from the lineage store.

    --json prints the card's content as JSON instead."""
    from .. import _format
    from ..registry.card import build_card, render_html, render_markdown

    card = build_card(store_from(ctx), model)
    if as_json:
        click.echo(_format.to_json(card))
        return
    fmt = fmt or ("html" if output is not None and output.suffix.lower() in (".html", ".htm")
                  else "md")
    text = render_html(card) if fmt == "html" else render_markdown(card)
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    click.echo(f"wrote {output} ({card['title']}, {len(card['cells'])} cells of lineage)")
