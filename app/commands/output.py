"""How ``benchdata`` prints datapoints: one summary line each, a document, a custody
receipt, a page of matches, and a progress bar for large captures."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from app.cli_common import emit_json
from app.core import fsnames
from app.core.timestamps import format_local
from app.core.units import human_size

if TYPE_CHECKING:
    from app.core.models import DataPoint
    from app.core.rows import RowSummary
    from app.service import BenchService

#: Files at least this large get a progress bar while they are captured.
PROGRESS_THRESHOLD = 32 * 1024 * 1024


def summary_line(summary: RowSummary) -> str:
    """One datapoint on one line (``app.core.rows``: from its row or from its model)."""
    when = format_local(summary.instant)
    if summary.holds_value:
        detail = json.dumps(summary.value, ensure_ascii=False)
        detail = detail if len(detail) <= 60 else detail[:57] + "..."
    else:
        detail = f"{summary.filename}"
        if summary.size_bytes is not None:
            detail += f" ({human_size(summary.size_bytes)})"
    label = summary.label or "-"
    return f"{when}  {summary.datapoint_id}  {summary.data_type:<6}  {label}  {detail}"


def print_datapoints(datapoints: Sequence[DataPoint], as_json: bool) -> None:
    if as_json:
        emit_json([dp.to_document() for dp in datapoints])
        return
    from app.core.rows import datapoint_summary

    print_summaries([datapoint_summary(dp) for dp in datapoints])


def print_summaries(summaries: Sequence[RowSummary]) -> None:
    if not summaries:
        click.echo("No datapoints.")
    for summary in summaries:
        click.echo(summary_line(summary))


def print_datapoint(datapoint: DataPoint, as_json: bool, sync_state: Optional[str] = None,
                     receipt: Optional[dict[str, Any]] = None) -> None:
    document = datapoint.to_document()
    if as_json:
        if sync_state is not None:
            document["sync_state"] = sync_state
        if receipt is not None:
            document["custody"] = receipt
        emit_json(document)
        return
    for key, value in document.items():
        if key == "ownership_info":
            for field, ident in (value or {}).items():
                name = datapoint.custom_metadata.get(f"{field[:-3]}_name")
                click.echo(f"{field:>16}: {ident}" + (f"  ({name})" if name else ""))
            continue
        if value in (None, {}, ""):
            continue
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        click.echo(f"{key:>16}: {shown}")
    if sync_state is not None:
        click.echo(f"{'sync_state':>16}: {sync_state}")
    if receipt is not None:
        print_custody(receipt)


def print_custody(receipt: dict[str, Any]) -> None:
    """The custody receipt in a few lines (``get --json`` has all of it)."""
    uploaded, verified = receipt["uploaded"], receipt["central_verified"]
    scrub = receipt["last_scrub"] or {}
    lines = {
        "uploaded": f"{uploaded['at']} to {uploaded['bucket']}/{uploaded['object_name']}"
        if uploaded else "no",
        "central verified": f"{verified['at']} ({verified['how']})" if verified
        else receipt["central_problem"] or "no",
        "last scrub": ", ".join(f"{where} {facts['at']} {'ok' if facts['ok'] else 'FAILED'}"
                                for where, facts in scrub.items()) or "never",
        "safe to delete": "yes" if receipt["safe_to_delete"] else "no",
    }
    for key, text in lines.items():
        click.echo(f"{key:>16}: {text}")


@contextmanager
def progress_for(path: Path, quiet: bool) -> Iterator[Optional[Callable[[int, Optional[int]], None]]]:
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if quiet or size < PROGRESS_THRESHOLD:
        yield None
        return
    with click.progressbar(length=size, label=f"Capturing {fsnames.readable(path.name)}",
                           file=sys.stderr,
                           show_eta=True, show_percent=True) as bar:
        last = [0]

        def advance(done: int, _total: Optional[int]) -> None:
            bar.update(done - last[0])
            last[0] = done

        yield advance


def report_captured(datapoints: Sequence[DataPoint], as_json: bool) -> None:
    if as_json:
        payload: Any = [dp.to_document() for dp in datapoints]
        emit_json(payload[0] if len(payload) == 1 else payload)
        return
    for datapoint in datapoints:
        click.echo(f"captured {datapoint.datapoint_id}  {datapoint.label or ''}".rstrip())


def print_matches(service: BenchService, selector: dict[str, Any], text: Optional[str], *,
                   sort: Optional[str], limit: int, cursor: Optional[str], count_only: bool,
                   as_json: bool) -> None:
    """What ``query`` and ``search`` print: a count, one page (and the next cursor on
    stderr), or every match with ``limit`` 0."""
    if count_only:
        total = service.count(selector, text=text)
        emit_json({"count": total}) if as_json else click.echo(str(total))
        return
    if limit == 0:
        items, next_cursor = list(service.iter_query(selector, sort=sort, text=text)), None
    else:
        page = service.query(selector, sort=sort, limit=limit, cursor=cursor, text=text)
        items, next_cursor = page.items, page.next_cursor
    if as_json:
        emit_json({"items": [dp.to_document() for dp in items], "next_cursor": next_cursor})
        return
    print_datapoints(items, False)
    if next_cursor:
        click.echo(f"next_cursor: {next_cursor}", err=True)


def print_central(service: BenchService, selector: dict[str, Any], text: Optional[str], *,
                  sort: Optional[str], limit: int, cursor: Optional[str], count_only: bool,
                  as_json: bool) -> None:
    """What ``query --central`` and ``search --central`` print: the newest matches in the
    central store, each marked ``here`` (this bench holds it) or ``central``."""
    from app.core.query import MAX_CENTRAL_RESULTS
    from app.core.rows import datapoint_summary

    for given, option in ((sort, "--sort"), (cursor, "--cursor"), (count_only, "--count")):
        if given:
            raise click.UsageError(f"{option} cannot go with --central: a central query "
                                   f"answers the newest matches, up to {MAX_CENTRAL_RESULTS}")
    items = service.query_central(selector, text=text,
                                  limit=min(limit, MAX_CENTRAL_RESULTS) or MAX_CENTRAL_RESULTS)
    held = service.store.existing_ids([dp.datapoint_id for dp in items])
    if as_json:
        emit_json({"items": [{**dp.to_document(), "location": "here" if dp.datapoint_id in held
                              else "central"} for dp in items], "next_cursor": None})
        return
    if not items:
        click.echo("No datapoints in the central store match.")
        return
    for datapoint in items:
        where = "here   " if datapoint.datapoint_id in held else "central"
        click.echo(f"{where}  {summary_line(datapoint_summary(datapoint))}")
    if len(held) < len(items):
        click.echo("`benchdata get ID` fetches a central one and keeps it on this bench",
                   err=True)
