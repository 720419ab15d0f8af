"""``benchdata extract ID`` (run extraction again, now) and ``benchdata formats``.

Registered lazily in ``app.cli.LAZY_SUBCOMMANDS``; the root command puts a ``Context``
(``.service``) in ``ctx.obj``.
"""

from __future__ import annotations

from typing import Any, Optional

import click

from app.cli_common import emit_json
from app.core import extractqueue
from app.core.errors import NotFoundError
from app.extract import registry
from app.extract.api import ERROR_KEY, PREFIX
from app.extract.process import ExtractorProcess
from app.extract.worker import extract_datapoint, load_settings


@click.command()
@click.argument("datapoint_ids", metavar="ID...", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the extracted fields as JSON.")
@click.option("--serve", is_flag=True, hidden=True)
@click.option("--memory-mb", type=int, default=0, hidden=True)
@click.pass_obj
def extract(obj: Any, datapoint_ids: tuple[str, ...], as_json: bool, serve: bool,
            memory_mb: int) -> None:
    """Extract header metadata from the files of these datapoints again, now.

    The fields are kept as custom metadata extracted.* (a new revision that syncs);
    a failure is recorded as extracted.error. See docs/extractors.md."""
    if serve:  # the extractor process of a frozen build (app/extract/process.py)
        from app.extract import child

        child.main(["--memory-mb", str(memory_mb)])
        return
    if not datapoint_ids:
        raise click.UsageError("give the id of at least one file datapoint")
    service = obj.service
    settings = load_settings(service)
    process = ExtractorProcess(timeout_seconds=settings.timeout_seconds,
                               memory_mb=settings.memory_mb)
    results: dict[str, Optional[dict[str, str]]] = {}
    try:
        for datapoint_id in datapoint_ids:
            service.get(datapoint_id)  # an unknown id fails before any work
            results[datapoint_id] = extract_datapoint(service, process, datapoint_id)
            extractqueue.finish(service.store, [datapoint_id])
    finally:
        process.close()
    if as_json:
        emit_json({ident: {k[len(PREFIX):]: v for k, v in (fields or {}).items()}
                   for ident, fields in results.items()})
        return
    for ident, fields in results.items():
        if fields is None:
            raise NotFoundError(f"no datapoint with id {ident}")
        if not fields:
            click.echo(f"{ident}: no extractor reads this kind of file")
        elif ERROR_KEY in fields:
            click.echo(f"{ident}: extraction failed: {fields[ERROR_KEY]}")
        else:
            click.echo(f"{ident}: {fields.get(PREFIX + 'format', '?')}")
            for key, value in fields.items():
                click.echo(f"  {key[len(PREFIX):]} = {value}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def formats(as_json: bool) -> None:
    """List the installed extractors and the file formats they read."""
    rows = []
    for item in registry.load_all():
        missing = item.missing() if item.extractor is not None else []
        status = ("cannot be loaded: " + (item.error or "?")) if item.extractor is None else (
            f"not installed: {', '.join(missing)}" if missing else "ready")
        rows.append({"name": item.name, "formats": item.formats, "source": item.source,
                     "status": status})
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:<14} {row['status']:<10} {row['formats']} ({row['source']})")
