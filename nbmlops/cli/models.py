"""``nbmlops models ls|show|versions|register|alias|promote|rollback|rm|history``: the model
registry on the command line, a click face over :mod:`nbmlops.registry.service`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._common import echo_json, json_option, store_from, writable_store

if TYPE_CHECKING:
    from ..store.entities import ModelEvent, ModelVersion

_reason_option = click.option("--reason", "-r", metavar="TEXT",
                              help="Why: kept with the change in the audit log.")


def _svc() -> Any:
    from ..registry import service

    return service






def _version_dict(v: ModelVersion) -> dict[str, Any]:
    out = v.to_dict()
    out["uri"] = v.uri
    return out


def _event_line(e: ModelEvent) -> str:
    from .._format import format_timestamp

    d = e.details or {}
    if e.kind == "gate" and d.get("candidate"):
        cand, champ = d["candidate"], d.get("champion") or {}
        held = (f"{d.get('rule', {}).get('must_beat') or e.alias} v{champ['version']} "
                f"{champ['score']:.4f}" if champ.get("score") is not None else "no holder")
        move = (f"{e.model} v{cand.get('version')} {str(d.get('decision', '?')).upper()} for "
                f"@{e.alias}: {d.get('metric')} {cand.get('score', float('nan')):.4f} vs {held}")
    elif e.kind in ("alias", "promote", "rollback", "gate", "unalias") and e.alias:
        move = f"{e.model}@{e.alias}: {_v(e.from_version)} -> {_v(e.to_version)}"
    elif e.kind == "rm":
        move = f"{e.model} version {e.from_version} removed"
    else:
        move = f"{e.model} version {e.to_version}"
    who = f"{e.user or '?'}@{e.host or '?'}"
    why = f"  ({e.reason})" if e.reason else ""
    return f"{format_timestamp(e.created_at)}  {e.kind:<8}  {move}  by {who}{why}"


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def _parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``NAME``, ``NAME@ALIAS``, ``NAME/VERSION`` or a ``models:/`` URI."""
    svc = _svc()
    uri = ref if ref.startswith(svc.MODEL_URI_PREFIX) else svc.MODEL_URI_PREFIX + ref
    parsed = svc.parse_model_uri(uri)
    assert parsed is not None
    return parsed  # type: ignore[no-any-return]


@click.group("models")
def models_group() -> None:
    """The model registry: versions with lineage, aliases, promotions and their audit log.

    A version is named models:/NAME/VERSION or models:/NAME@ALIAS wherever a model is loaded.
    """


@models_group.command("ls")
@json_option
@click.pass_context
def models_ls(ctx: click.Context, as_json: bool) -> None:
    """List registered models: newest version, number of versions and aliases.

    \b
    --json prints [{"id", "name", "description", "created_at", "updated_at",
    "latest_version", "version_count", "aliases": {ALIAS: VERSION}}...].
    """
    from .. import _format

    models = _svc().list_models(store_from(ctx))
    if as_json:
        echo_json([m.to_dict() for m in models])
        return
    if not models:
        click.echo("no registered models (nbmlops models register PATH --name NAME, "
                   "or %mlops register VAR --name NAME in a notebook)")
        return
    rows = [(m.name, m.version_count, _v(m.latest_version),
             ", ".join(f"{a}=v{v}" for a, v in m.aliases.items()) or _format.EMPTY,
             _format.format_timestamp(m.updated_at)) for m in models]
    click.echo(_format.render_table(["NAME", "VERSIONS", "LATEST", "ALIASES", "UPDATED"], rows,
                                    max_width=60))


@models_group.command("show")
@click.argument("ref", metavar="NAME[@ALIAS|/VERSION]")
@json_option
@click.pass_context
def models_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one version (the newest when only NAME is given) with its lineage: run, cell,
    data read upstream, signature.

    \b
    --json prints the version (id, model, version, uri, digest, format, size, stored_path,
    source_uri, model_class, run_id, cell_execution_id, cell_seq, artifact_id, signature, info,
    status, created_at, created_by, aliases) with "lineage": {run, cell, cells, datasets,
    params, metrics, environment, git_commit, git_dirty}.
    """
    from .. import _format

    svc = _svc()
    store = store_from(ctx)
    name, version, alias = _parse_ref(ref)
    v = svc.get_version(store, name, version, alias=alias)
    lineage = svc.version_lineage(store, v)
    if as_json:
        out = _version_dict(v)
        out["lineage"] = lineage
        echo_json(out)
        return
    lines = [
        f"model     {v.model} version {v.version}  ({v.uri})",
        f"aliases   {', '.join(v.aliases) or _format.EMPTY}",
        f"class     {v.model_class or _format.EMPTY}",
        f"file      {v.format}, {_format.format_size(v.size)}, sha256 {v.digest[:16]}...",
        f"created   {_format.format_timestamp(v.created_at)} by {v.created_by or '?'}",
    ]
    run = lineage.get("run")
    if run:
        lines.append(f"run       {run['name']} ({_format.short_id(run['id'])}), {run['status']}"
                     + (f", {run['notebook_path']}" if run.get("notebook_path") else ""))
    elif v.run_id:
        lines.append(f"run       {v.run_id} (not in this store)")
    cell = lineage.get("cell")
    if cell:
        first = (cell.get("source") or "").strip().splitlines()[:1]
        lines.append(f"cell      #{cell['seq']}: {first[0] if first else ''}")
    elif v.cell_seq is not None:
        lines.append(f"cell      #{v.cell_seq} (not recorded yet)")
    for d in lineage.get("datasets", []):
        lines.append(f"data      {d['uri']}  {d['fingerprint'][:20]}")
    inputs = (v.signature or {}).get("inputs") or {}
    cols = inputs.get("columns") or []
    if cols:
        shown = ", ".join(f"{c['name']}:{c.get('dtype') or '?'}" for c in cols[:8])
        more = f" (+{len(cols) - 8})" if len(cols) > 8 else ""
        lines.append(f"inputs    {shown}{more}")
    elif inputs.get("n_features") is not None:
        lines.append(f"inputs    {inputs['n_features']} features")
    output = (v.signature or {}).get("output") or {}
    if output:
        classes = output.get("classes")
        lines.append(f"output    {output.get('kind', '?')}"
                     + (f", classes {classes}" if classes else ""))
    if lineage.get("metrics"):
        lines.append("metrics   " + ", ".join(f"{k}={_format.format_value(x)}"
                                              for k, x in sorted(lineage["metrics"].items())))
    click.echo("\n".join(lines))


@models_group.command("versions")
@click.argument("name")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show only the newest N versions.")
@json_option
@click.pass_context
def models_versions(ctx: click.Context, name: str, limit: int | None, as_json: bool) -> None:
    """List the versions of NAME, newest first.

    \b
    --json prints [VERSION...], each as in `nbmlops models show --json` (without lineage).
    """
    from .. import _format

    versions = _svc().list_versions(store_from(ctx), name, limit=limit)
    if as_json:
        echo_json([_version_dict(v) for v in versions])
        return
    rows = [(f"v{v.version}", ", ".join(v.aliases) or _format.EMPTY, v.format,
             _format.format_size(v.size), (v.model_class or "").rsplit(".", 1)[-1] or _format.EMPTY,
             _format.short_id(v.run_id) if v.run_id else _format.EMPTY,
             _format.format_timestamp(v.created_at)) for v in versions]
    click.echo(_format.render_table(
        ["VERSION", "ALIASES", "FORMAT", "SIZE", "CLASS", "RUN", "CREATED"], rows,
        right_align=[False] * 7))


@models_group.command("register")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", required=True, help="The registered model's name.")
@click.option("--run", "run", metavar="RUN",
              help="The run that made the file (default: the run capture saw write it).")
@click.option("--alias", "-a", metavar="ALIAS", help="Point this alias at the new version.")
@_reason_option
@json_option
@click.pass_context
def models_register(ctx: click.Context, path: str, name: str, run: str | None, alias: str | None,
                    reason: str | None, as_json: bool) -> None:
    """Register the model file PATH (skops, joblib or pickle) as the next version of NAME.

    The file is copied into the store's content-addressed artifact directory; its lineage (run,
    cell, data it was fitted on) comes from what capture recorded.

    \b
    --json prints the new version, as in `nbmlops models versions --json`.
    """
    v = _svc().register(writable_store(ctx), path, name, alias=alias, reason=reason, run_id=run)
    if as_json:
        echo_json(_version_dict(v))
        return
    where = f" (run {v.run_id[:8]})" if v.run_id else ""
    click.echo(f"registered {v.uri}{where}" + (f"; {name}@{alias} -> v{v.version}" if alias else ""))


def _change(event: ModelEvent | None, as_json: bool, unchanged: str) -> None:
    if as_json:
        echo_json({"changed": event is not None, "event": event.to_dict() if event else None})
    else:
        click.echo(_event_line(event) if event is not None else unchanged)


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", required=False, type=click.IntRange(min=1))
@click.option("--delete", is_flag=True, help="Remove ALIAS instead of moving it.")
@_reason_option
@json_option
@click.pass_context
def models_alias(ctx: click.Context, name: str, alias: str, version: int | None, delete: bool,
                 reason: str | None, as_json: bool) -> None:
    """Point ALIAS of NAME at VERSION (or remove it with --delete).

    \b
    --json prints {"changed": BOOL, "event": EVENT or null}, EVENT as in `models history`.
    """
    svc = _svc()
    store = store_from(ctx)
    if delete:
        if version is not None:
            raise click.UsageError("give either VERSION or --delete, not both")
        _change(svc.remove_alias(store, name, alias, reason=reason), as_json, "")
        return
    if version is None:
        raise click.UsageError("missing VERSION (or --delete)")
    _change(svc.set_alias(store, name, alias, version, reason=reason), as_json,
            f"{name}@{alias} already points at v{version}; nothing changed")


@models_group.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", "-a", default="champion", show_default=True, help="The alias to move.")
@_reason_option
@json_option
@click.pass_context
def models_promote(ctx: click.Context, name: str, version: int, alias: str, reason: str | None,
                   as_json: bool) -> None:
    """Promote VERSION of NAME: point the alias (champion by default) at it.

    \b
    --json prints {"changed": BOOL, "event": EVENT or null}.
    """
    _change(_svc().promote(store_from(ctx), name, version, alias=alias, reason=reason), as_json,
            f"{name}@{alias} already points at v{version}; nothing changed")


@models_group.command("rollback")
@click.argument("name")
@click.option("--alias", "-a", default="champion", show_default=True, help="The alias to move back.")
@_reason_option
@json_option
@click.pass_context
def models_rollback(ctx: click.Context, name: str, alias: str, reason: str | None,
                    as_json: bool) -> None:
    """Move the alias of NAME back to the version it pointed at before (from the audit log;
    again walks further back).

    \b
    --json prints {"changed": true, "event": EVENT}.
    """
    _change(_svc().rollback(store_from(ctx), name, alias=alias, reason=reason), as_json, "")


@models_group.command("rm")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_reason_option
@json_option
@click.pass_context
def models_rm(ctx: click.Context, name: str, version: int, reason: str | None, as_json: bool) -> None:
    """Remove VERSION of NAME (refused while an alias points at it).

    \b
    --json prints the removed version.
    """
    v = _svc().remove_version(store_from(ctx), name, version, reason=reason)
    if as_json:
        echo_json(_version_dict(v))
    else:
        click.echo(f"removed {v.uri}")


@models_group.command("history")
@click.argument("name")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show only the newest N events.")
@json_option
@click.pass_context
def models_history(ctx: click.Context, name: str, limit: int | None, as_json: bool) -> None:
    """The audit log of NAME, oldest first: what changed (from -> to), when, by whom, where,
    and why.

    \b
    --json prints [{"id", "model", "kind", "alias", "from_version", "to_version", "reason",
    "user", "host", "run_id", "details", "created_at"}...].
    """
    events = _svc().model_history(store_from(ctx), name, limit=limit)
    if as_json:
        echo_json([e.to_dict() for e in events])
        return
    for e in events:
        click.echo(_event_line(e))
