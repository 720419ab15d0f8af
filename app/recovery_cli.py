"""``benchdata interrupted``: captures a crash cut short (registered in
``app.cli.LAZY_SUBCOMMANDS``)."""

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
