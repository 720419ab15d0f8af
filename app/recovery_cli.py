"""``benchdata interrupted | deleted | undelete``: getting back what a crash or a delete
took (registered in ``app.cli.LAZY_SUBCOMMANDS``)."""

from __future__ import annotations

from typing import Optional

import click

from app.cli import Context, emit_json, pass_ctx
from app.core import fsnames
from app.core.timestamps import format_local
from app.core.units import human_size


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--retry", "retry_id", metavar="ID",
              help="Capture this interrupted capture again (same id, label and metadata).")
@click.option("--dismiss", "dismiss_id", metavar="ID",
              help="Forget this interrupted capture without capturing it.")
@pass_ctx
def interrupted(ctx: Context, as_json: bool, retry_id: Optional[str],
                dismiss_id: Optional[str]) -> None:
    """List captures that a crash cut short; capture one again or dismiss it."""
    service = ctx.service
    if retry_id and dismiss_id:
        raise click.UsageError("give either --retry or --dismiss, not both")
    if retry_id:
        captured = service.retry_interrupted(retry_id)
        if as_json:
            emit_json({"retried": retry_id, "datapoint_id": captured.datapoint_id})
        else:
            click.echo(f"captured {captured.datapoint_id}")
        return
    if dismiss_id:
        service.dismiss_interrupted(dismiss_id)
        if as_json:
            emit_json({"dismissed": dismiss_id})
        else:
            click.echo(f"dismissed {dismiss_id}")
        return
    notes = service.interrupted_captures()
    if as_json:
        emit_json([note.as_json() for note in notes])
        return
    if not notes:
        click.echo("No interrupted captures.")
        return
    for note in notes:
        click.echo(f"{note.note_id}  {format_local(note.started_at)}  "
                   f"{human_size(note.size_bytes)}  {fsnames.readable(note.source)}  "
                   f"[{note.front_end}: {note.retry_hint()}]")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="List at most this many.")
@pass_ctx
def deleted(ctx: Context, as_json: bool, limit: int) -> None:
    """List recently deleted datapoints (restorable with `benchdata undelete ID`)."""
    found = ctx.service.recently_deleted(limit=limit)
    if as_json:
        emit_json([item.as_json() for item in found])
        return
    if not found:
        click.echo("Nothing was deleted recently.")
        return
    for item in found:
        click.echo(f"{item.datapoint.datapoint_id}  deleted {format_local(item.deleted_at)}"
                   f"  by {item.deleted_by or 'unknown'}  {item.datapoint.label or ''}")


@click.command()
@click.argument("datapoint_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def undelete(ctx: Context, datapoint_ids: tuple[str, ...], as_json: bool) -> None:
    """Restore deleted datapoints (a new revision; sync brings them back everywhere)."""
    restored = [ctx.service.restore(ident).datapoint_id for ident in datapoint_ids]
    if as_json:
        emit_json({"restored": restored})
    else:
        for ident in restored:
            click.echo(f"restored {ident}")
