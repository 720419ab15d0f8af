"""``benchdata get | value | save | list | query | search | edit | delete | export``: read,
find, change and export the datapoints of the local store."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import click

from app.cli_common import emit_json, parse_meta
from app.commands.context import Context, ownership_options, pass_ctx
from app.commands.output import (
    print_datapoint,
    print_datapoints,
    print_central,
    print_matches,
    print_summaries,
)
from app.core.errors import BenchDataError


@click.command()
@click.argument("datapoint_id")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
@pass_ctx
def get(ctx: Context, datapoint_id: str, as_json: bool) -> None:
    """Show a datapoint's metadata (one outside this bench's pull scope is fetched from
    the central store and kept here)."""
    ctx.service.get(datapoint_id)  # fetched on demand if this bench does not hold it
    stored = ctx.service.get_stored(datapoint_id)
    # Shown with the names every reader shows (pins included); --json is the document as stored.
    datapoint = stored.datapoint if as_json else next(ctx.service.with_names([stored.datapoint]))
    print_datapoint(datapoint, as_json, stored.sync_state, ctx.service.custody(datapoint_id))


@click.command()
@click.argument("datapoint_id")
@pass_ctx
def value(ctx: Context, datapoint_id: str) -> None:
    """Print a datapoint's value: JSON, or the file's bytes to stdout."""
    from app.core.models import ValueDataPoint

    datapoint = ctx.service.get(datapoint_id)
    if isinstance(datapoint, ValueDataPoint):
        emit_json(datapoint.value)
        return
    with ctx.service.open_file(datapoint_id) as stream:
        out = sys.stdout.buffer
        while chunk := stream.read(1024 * 1024):
            out.write(chunk)
        out.flush()


@click.command()
@click.argument("datapoint_id")
@click.argument("destination", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
@pass_ctx
def save(ctx: Context, datapoint_id: str, destination: Path, force: bool) -> None:
    """Save a datapoint's file (or JSON value) to DESTINATION (a file or a folder)."""
    if destination.is_dir():
        datapoint = ctx.service.get(datapoint_id)
        name = getattr(datapoint, "filename", None) or f"{datapoint.datapoint_id}.json"
        destination = destination / Path(name).name
    if (destination.exists() or destination.is_symlink()) and not force:
        raise BenchDataError(f"{destination} exists; nothing was written (--force replaces "
                             "it)")
    written = ctx.service.save_value(datapoint_id, destination)
    click.echo(f"saved {datapoint_id} to {written}")


@click.command("list")
@click.option("-n", "--number", default=10, show_default=True, help="How many (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print the documents as JSON.")
@pass_ctx
def list_(ctx: Context, number: int, as_json: bool) -> None:
    """List the newest datapoints, newest first."""
    if as_json:
        print_datapoints(ctx.service.latest(number), as_json)
    else:  # read from the rows: no models, so no pydantic to load (bench_startup.py)
        print_summaries(ctx.service.latest_summaries(number))


def _central_option(command: Any) -> Any:
    return click.option(
        "--central", is_flag=True,
        help="Ask the central store instead (datapoints outside this bench's pull scope "
             "too); `benchdata get ID` then keeps one here.")(command)


@click.command()
@click.argument("selector", default="{}")
@click.option("--sort", help="Sort keys, e.g. '-data_timestamp' or 'label,-value.t'.")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (0 = all).")
@click.option("--cursor", help="Continue after a previous page (printed as next_cursor).")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matches.")
@click.option("--json", "as_json", is_flag=True, help="Print {items, next_cursor} as JSON.")
@_central_option
@pass_ctx
def query(ctx: Context, selector: str, sort: Optional[str], limit: int, cursor: Optional[str],
          count_only: bool, as_json: bool, central: bool) -> None:
    """Find datapoints with a Mongo-style SELECTOR, e.g. '{"value.t": {"$gt": 20}}'.

    Ownership fields take names or ULIDs: '{"ownership_info.experiment_id": "EXP42"}'.
    """
    if central:
        print_central(ctx.service, _parse_selector(selector), None, sort=sort, limit=limit,
                      cursor=cursor, count_only=count_only, as_json=as_json)
        return
    print_matches(ctx.service, _parse_selector(selector), None, sort=sort, limit=limit,
                   cursor=cursor, count_only=count_only, as_json=as_json)


def _parse_selector(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint="SELECTOR") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("a selector is a JSON object, e.g. '{\"label\": \"x\"}'",
                                 param_hint="SELECTOR")
    return parsed


@click.command()
@click.argument("text")
@click.option("--where", "selector", default="{}", metavar="SELECTOR",
              help="Also match this query-language selector, e.g. '{\"data_type\": \"file\"}'.")
@click.option("--sort", help="Sort keys (default newest first).")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (0 = all).")
@click.option("--cursor", help="Continue after a previous page (printed as next_cursor).")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matches.")
@click.option("--json", "as_json", is_flag=True, help="Print {items, next_cursor} as JSON.")
@_central_option
@pass_ctx
def search(ctx: Context, text: str, selector: str, sort: Optional[str], limit: int,
           cursor: Optional[str], count_only: bool, as_json: bool, central: bool) -> None:
    """Find datapoints whose label, file name, names, metadata or value contain TEXT.

    Every word must occur; the last one may be the start of a word from three characters
    on ("cloud" finds "cloudy"). Quotes and operators are plain text.
    """
    from app.core.search import match_expression

    if match_expression(text) is None:
        raise click.BadParameter("give a word or number to search for", param_hint="TEXT")
    if central:  # words as substrings of label, file name and names (sync.centralquery)
        print_central(ctx.service, _parse_selector(selector), text, sort=sort, limit=limit,
                      cursor=cursor, count_only=count_only, as_json=as_json)
        return
    print_matches(ctx.service, _parse_selector(selector), text, sort=sort, limit=limit,
                   cursor=cursor, count_only=count_only, as_json=as_json)


@click.command()
@click.argument("datapoint_id")
@click.option("--label", "-l", help="New label.")
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Set custom metadata.")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a metadata key.")
@ownership_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def edit(ctx: Context, datapoint_id: str, label: Optional[str], meta: Sequence[str],
         unset: Sequence[str], as_json: bool, **names: Optional[str]) -> None:
    """Change a datapoint's label, custom metadata or ownership.

    --experiment EXP43 moves the datapoint to another experiment (a new revision with the
    new id and name; --experiment "" clears it); the same for --user, --campaign ...
    """
    ownership = {key[:-5]: value for key, value in names.items() if value is not None}
    datapoint = ctx.service.update(datapoint_id, label=label, set_metadata=parse_meta(meta),
                                   remove_metadata=unset, ownership=ownership)
    print_datapoint(datapoint, as_json)


@click.command()
@click.argument("datapoint_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Context, datapoint_ids: Sequence[str], yes: bool) -> None:
    """Delete datapoints (tombstones; sync removes them centrally)."""
    if not yes:
        click.confirm(f"Delete {len(datapoint_ids)} datapoint(s)?", abort=True, err=True)
    for datapoint_id in datapoint_ids:
        ctx.service.delete(datapoint_id)
        click.echo(f"deleted {datapoint_id}")


@click.command()
@click.argument("selector", default="{}")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]),
              help="Default: from the output file's suffix.")
@click.option("--sort", help="Sort keys (default newest first).")
@pass_ctx
def export(ctx: Context, selector: str, output: Path, fmt: Optional[str], sort: Optional[str]) -> None:
    """Export datapoints matching SELECTOR to CSV or Parquet."""
    from app.core.export import export_datapoints

    service = ctx.service
    rows = export_datapoints(
        service.with_names(service.iter_query(_parse_selector(selector), sort=sort)),
        output, fmt)
    click.echo(f"exported {rows} datapoint(s) to {output}")
