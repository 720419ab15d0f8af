"""``benchdata``: the command line of Bench Data Manager.

Every command works on the local store (``--data-dir``, else ``$BENCHDATA_HOME``, else the
platform's data directory) and needs no server. ``--json`` prints machine-readable output
for scripts; errors go to stderr with exit status 1 and a sentence saying what to do.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from app import __version__
from app.cli_common import emit_json, exit_promptly_when_done, parse_meta, take_exit_promptly
from app.core import capture_notes, fsnames
from app.core.errors import BenchDataError, describe_validation_error, is_disk_full
from app.core.ids import OWNERSHIP_KINDS
from app.core.units import human_size
from app.core.timestamps import format_local

if TYPE_CHECKING:
    from app.core.models import DataPoint
    from app.service import BenchService

# The models, the service and the commands of components are imported where they are
# used: `benchdata --version` must not load pydantic, the store or the sync engine
# (bench/bench_startup.py).
__all__ = ["cli", "emit_json", "exit_promptly_when_done", "main", "parse_meta"]

#: Files at least this large get a progress bar while they are captured.
PROGRESS_THRESHOLD = 32 * 1024 * 1024
#: Ownership kinds offered as options (``--experiment EXP42``); names or ULIDs.
_CLI_KINDS = tuple(kind for kind in OWNERSHIP_KINDS if kind != "manager")


def _ownership_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for kind in reversed(_CLI_KINDS):
        func = click.option(f"--{kind}", f"{kind}_name", metavar="NAME",
                            help=f"{kind.capitalize()} name (or ULID).")(func)
    return func


class Context:
    """Lazily opened service shared by the commands of one invocation."""

    def __init__(self, data_dir: Optional[str]) -> None:
        self.data_dir = data_dir
        self._service: Optional[BenchService] = None

    @property
    def service(self) -> BenchService:
        if self._service is None:
            from app.service import BenchService

            self._service = BenchService(self.data_dir)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


pass_ctx = click.make_pass_decorator(Context)


def _summary_line(datapoint: DataPoint) -> str:
    from app.core.models import ValueDataPoint

    when = format_local(datapoint.data_instant)
    if isinstance(datapoint, ValueDataPoint):
        detail = json.dumps(datapoint.value, ensure_ascii=False)
        detail = detail if len(detail) <= 60 else detail[:57] + "..."
    else:
        size = getattr(datapoint, "size_bytes", None)
        detail = f"{getattr(datapoint, 'filename', None) or datapoint.path}"
        if size is not None:
            detail += f" ({human_size(size)})"
    label = datapoint.label or "-"
    return f"{when}  {datapoint.datapoint_id}  {datapoint.data_type.value:<6}  {label}  {detail}"


def _print_datapoints(datapoints: Sequence[DataPoint], as_json: bool) -> None:
    if as_json:
        emit_json([dp.to_document() for dp in datapoints])
        return
    if not datapoints:
        click.echo("No datapoints.")
    for datapoint in datapoints:
        click.echo(_summary_line(datapoint))


def _print_datapoint(datapoint: DataPoint, as_json: bool, sync_state: Optional[str] = None,
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
        _print_custody(receipt)


def _print_custody(receipt: dict[str, Any]) -> None:
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
def _progress_for(path: Path, quiet: bool) -> Iterator[Optional[Callable[[int, Optional[int]], None]]]:
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


def _sync_commands() -> click.Command:
    from sync.cli import sync

    return sync


def _watch_commands() -> click.Command:
    from app.ingest.cli import watch

    return watch


def _sync_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from sync import cli as sync_cli

        command: click.Command = getattr(sync_cli, name)
        return command

    return load


def _extract_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app.extract import cli as extract_cli

        command: click.Command = getattr(extract_cli, name)
        return command

    return load


def _recovery_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app import recovery_cli

        command: click.Command = getattr(recovery_cli, name)
        return command

    return load


def _admin_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app.admin import cli as admin_cli

        command: click.Command = getattr(admin_cli, name)
        return command

    return load


#: Subcommand groups that live beside the component they drive, imported on use (plain
#: imports inside the loaders, so import-linter follows them): name -> loader.
LAZY_SUBCOMMANDS: dict[str, Callable[[], click.Command]] = {
    "sync": _sync_commands,
    **{name: _sync_command(name) for name in ("verify", "purge", "fleet")},
    "watch": _watch_commands,
    **{name: _admin_command(name) for name in ("doctor", "backup", "restore", "logs")},
    **{name: _extract_command(name) for name in ("extract", "formats")},
    **{name: _recovery_command(name) for name in ("interrupted", "deleted", "undelete")},
}


class BenchGroup(click.Group):
    """Turns our errors into one clear line on stderr and exit status 1, and loads the
    component subcommands (``watch``, ``sync`` ...) only when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_SUBCOMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        load = LAZY_SUBCOMMANDS.get(cmd_name)
        if load is None:
            return super().get_command(ctx, cmd_name)
        return load()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchDataError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except Exception as exc:
            if _is_pydantic_error(exc):
                click.echo(f"error: {describe_validation_error(exc)}", err=True)
                ctx.exit(1)
            if not is_disk_full(exc):
                raise
            # A write outside the store and file store (config, export, a backup folder).
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: the disk is full{where}: free space on it and try again",
                       err=True)
            ctx.exit(1)


def _is_pydantic_error(exc: BaseException) -> bool:
    """A pydantic ValidationError, without importing pydantic (a process that never
    loaded it cannot have raised one)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


@click.group(cls=BenchGroup)
@click.option("--data-dir", type=click.Path(file_okay=False), envvar=None,
              help="Use the local store in this folder (default: $BENCHDATA_HOME or the "
                   "platform's data directory).")
@click.version_option(__version__, prog_name="benchdata")
@click.pass_context
def cli(ctx: click.Context, data_dir: Optional[str]) -> None:
    """Bench Data Manager: capture lab data on this bench, offline first."""
    capture_notes.set_front_end(capture_notes.COMMAND_LINE)
    context = Context(data_dir)
    ctx.obj = context
    ctx.call_on_close(context.close)


@cli.group()
def add() -> None:
    """Capture a JSON value or files."""


@add.command("value")
@click.argument("value")
@click.option("--label", "-l", help="Label of the datapoint.")
@_ownership_options
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Custom metadata (repeatable).")
@click.option("--timestamp", help="When the data was taken (ISO-8601; without a zone: this "
              "bench's local time); default now.")
@click.option("--json", "as_json", is_flag=True, help="Print the datapoint as JSON.")
@pass_ctx
def add_value(ctx: Context, value: str, label: Optional[str], meta: Sequence[str],
              timestamp: Optional[str], as_json: bool, **names: Optional[str]) -> None:
    """Capture VALUE, a JSON text ('-' reads it from stdin), e.g. '{"t": 23.5}'."""
    text = sys.stdin.read() if value == "-" else value
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "quote text values, e.g. '\"hello\"'", param_hint="VALUE") from exc
    from app.core.models import ValueDataPoint

    service = ctx.service
    extra: dict[str, Any] = {"data_timestamp": timestamp} if timestamp else {}
    datapoint = service.submit(ValueDataPoint(
        label=label, value=parsed, ownership_info=_ownership(service, names),
        custom_metadata=parse_meta(meta), **extra))
    _report_captured([datapoint], as_json)


def _reject_constant(name: str) -> Any:
    raise click.BadParameter(f"{name} is not JSON; use null or a number", param_hint="VALUE")


def _ownership(service: BenchService, names: dict[str, Optional[str]]) -> Any:
    return service.ownership(**{key[:-5]: value for key, value in names.items() if value})


@add.command("file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--label", "-l", help="Label (default: the file name).")
@_ownership_options
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Custom metadata (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the datapoints as JSON.")
@pass_ctx
def add_file(ctx: Context, paths: Sequence[Path], label: Optional[str], meta: Sequence[str],
             quiet: bool, as_json: bool, **names: Optional[str]) -> None:
    """Capture one or more files (copied into the store; the originals are untouched)."""
    from app.core.models import FileDataPoint

    service = ctx.service
    ownership = _ownership(service, names)
    metadata = parse_meta(meta)
    captured: list[DataPoint] = []
    failures = 0
    for path in paths:
        try:
            source = _link_target(path, service)
            with _progress_for(source, quiet or as_json) as progress:
                captured.append(service.submit(
                    FileDataPoint(label=label or fsnames.readable(path.name), path=str(source),
                                  ownership_info=ownership, custom_metadata=metadata),
                    progress=progress))
        except BenchDataError as exc:
            failures += 1
            click.echo(f"error: {fsnames.readable(str(exc))}", err=True)
    _report_captured(captured, as_json)
    if failures:
        click.echo(f"{failures} of {len(paths)} file(s) were not captured.", err=True)
        sys.exit(1)


def _link_target(path: Path, service: BenchService) -> Path:
    """The file to capture for ``path``: a symbolic link is resolved and its target named
    (a link into the bench's own folders is refused by the service)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    service.refuse_private(target)
    click.echo(f"{fsnames.readable(str(path))} is a symbolic link: capturing its target "
               f"{fsnames.readable(str(target))}", err=True)
    return target


def _report_captured(datapoints: Sequence[DataPoint], as_json: bool) -> None:
    if as_json:
        payload: Any = [dp.to_document() for dp in datapoints]
        emit_json(payload[0] if len(payload) == 1 else payload)
        return
    for datapoint in datapoints:
        click.echo(f"captured {datapoint.datapoint_id}  {datapoint.label or ''}".rstrip())


@cli.command()
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
    _print_datapoint(datapoint, as_json, stored.sync_state, ctx.service.custody(datapoint_id))


@cli.command()
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


@cli.command()
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


@cli.command("list")
@click.option("-n", "--number", default=10, show_default=True, help="How many (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print the documents as JSON.")
@pass_ctx
def list_(ctx: Context, number: int, as_json: bool) -> None:
    """List the newest datapoints, newest first."""
    _print_datapoints(ctx.service.latest(number), as_json)


def _central_option(command: Any) -> Any:
    return click.option(
        "--central", is_flag=True,
        help="Ask the central store instead (datapoints outside this bench's pull scope "
             "too); `benchdata get ID` then keeps one here.")(command)


@cli.command()
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
        _print_central(ctx.service, _parse_selector(selector), None, sort=sort, limit=limit,
                       cursor=cursor, count_only=count_only, as_json=as_json)
        return
    _print_matches(ctx.service, _parse_selector(selector), None, sort=sort, limit=limit,
                   cursor=cursor, count_only=count_only, as_json=as_json)


def _print_matches(service: BenchService, selector: dict[str, Any], text: Optional[str], *,
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
    _print_datapoints(items, False)
    if next_cursor:
        click.echo(f"next_cursor: {next_cursor}", err=True)


def _print_central(service: BenchService, selector: dict[str, Any], text: Optional[str], *,
                   sort: Optional[str], limit: int, cursor: Optional[str], count_only: bool,
                   as_json: bool) -> None:
    """What ``query --central`` and ``search --central`` print: the newest matches in the
    central store, each marked ``here`` (this bench holds it) or ``central``."""
    from app.core.query import MAX_CENTRAL_RESULTS

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
        click.echo(f"{where}  {_summary_line(datapoint)}")
    if len(held) < len(items):
        click.echo("`benchdata get ID` fetches a central one and keeps it on this bench",
                   err=True)


def _parse_selector(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint="SELECTOR") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("a selector is a JSON object, e.g. '{\"label\": \"x\"}'",
                                 param_hint="SELECTOR")
    return parsed


@cli.command()
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
        _print_central(ctx.service, _parse_selector(selector), text, sort=sort, limit=limit,
                       cursor=cursor, count_only=count_only, as_json=as_json)
        return
    _print_matches(ctx.service, _parse_selector(selector), text, sort=sort, limit=limit,
                   cursor=cursor, count_only=count_only, as_json=as_json)


@cli.command()
@click.argument("datapoint_id")
@click.option("--label", "-l", help="New label.")
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Set custom metadata.")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a metadata key.")
@_ownership_options
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
    _print_datapoint(datapoint, as_json)


@cli.command()
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


@cli.command()
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


@cli.command("time-zone")
@click.option("--lab", "lab", metavar="ZONE",
              help="Zone of the naive times MADSci itself wrote (IANA, e.g. America/Chicago); "
                   "'' = this bench's own.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def time_zone(ctx: Context, lab: Optional[str], as_json: bool) -> None:
    """Show (or set, with --lab) the zones naive timestamps are read in."""
    from app.core.config import load_section, save_section
    from app.core.paths import bench_paths
    from app.core.timestamps import LAB_ZONE_KEY, TIME_SECTION, lab_zone, zone_name, zone_named

    paths = bench_paths(ctx.data_dir)
    if lab is not None:
        section = dict(load_section(paths, TIME_SECTION) or {})
        if lab:
            section[LAB_ZONE_KEY] = zone_named(lab).key
        else:
            section.pop(LAB_ZONE_KEY, None)
        save_section(paths, TIME_SECTION, section or None)
    zones = {"bench_zone": zone_name(), "lab_zone": zone_name(lab_zone(paths))}
    if as_json:
        emit_json(zones)
    else:
        click.echo(f"bench: {zones['bench_zone']} (naive times sent to this bench)\n"
                   f"lab:   {zones['lab_zone']} (naive times MADSci itself wrote)")


@cli.group()
def names() -> None:
    """The names-to-ids mapping (experiment EXP42 -> its ULID)."""


@names.command("list")
@click.argument("kind", type=click.Choice(OWNERSHIP_KINDS))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def names_list(ctx: Context, kind: str, as_json: bool) -> None:
    """Names this bench has seen for KIND."""
    pairs = ctx.service.names.names(kind)
    if as_json:
        emit_json([{"name": name, "id": ident} for name, ident in pairs])
        return
    for name, ident in pairs:
        click.echo(f"{ident}  {name}")


@names.command("id")
@click.argument("kind", type=click.Choice(OWNERSHIP_KINDS))
@click.argument("name")
@pass_ctx
def names_id(ctx: Context, kind: str, name: str) -> None:
    """Print the id of a name (the same on every bench)."""
    click.echo(ctx.service.names.resolve(kind, name))


@names.command("pin")
@click.argument("kind", type=click.Choice(OWNERSHIP_KINDS))
@click.argument("name")
@click.argument("ulid")
@pass_ctx
def names_pin(ctx: Context, kind: str, name: str, ulid: str) -> None:
    """Map NAME to an id that already exists (e.g. assigned by MADSci)."""
    ctx.service.names.pin(kind, name, ulid)
    click.echo(f"{kind} {name} -> {ulid.upper()}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def info(ctx: Context, as_json: bool) -> None:
    """Where this bench keeps its data, and how much it holds."""
    service = ctx.service
    facts = {
        "version": __version__,
        "data_dir": str(service.paths.data_dir),
        "database": str(service.paths.database),
        "files": str(service.paths.files),
        "config": str(service.paths.config_file),
        "datapoints": service.count(),
        "sync_states": service.store.sync_state_counts(),
    }
    if as_json:
        emit_json(facts)
        return
    for key, val in facts.items():
        click.echo(f"{key:>11}: {val}")


@cli.command()
@click.option("--api-host", help="Address of the local REST API (default 127.0.0.1).")
@click.option("--api-port", type=int, envvar="BENCHDATA_API_PORT",
              help="Port of the local REST API (default 8004; env BENCHDATA_API_PORT).")
@click.option("--no-api", is_flag=True, help="Do not serve the REST API.")
@click.option("--no-sync", is_flag=True, help="Do not sync with the central store.")
@click.option("--no-watch", is_flag=True, help="Do not watch folders.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@pass_ctx
def run(ctx: Context, api_host: Optional[str], api_port: Optional[int], no_api: bool,
        no_sync: bool, no_watch: bool, log_level: str) -> None:
    """Run the capture service headless until stopped (SIGINT/SIGTERM)."""
    from app.admin.lock import ServiceLock
    from app.admin.logs import setup_logging
    from app.core.paths import bench_paths
    from app.runner import HeadlessRunner, RunOptions

    # Lock before opening the store: a second service must not even clean up the first's
    # in-flight temp files. The runner keeps (and releases) this lock.
    lock = ServiceLock(bench_paths(ctx.data_dir))
    lock.acquire()
    capture_notes.set_front_end(capture_notes.SERVICE)
    setup_logging(ctx.service.paths, log_level)  # console + rotating file, secrets redacted
    options = RunOptions(watch=not no_watch, api=not no_api, api_host=api_host,
                         api_port=api_port, sync=not no_sync)
    runner = HeadlessRunner(ctx.service, options)
    runner.lock = lock
    runner.run_until_stopped()


@cli.command()
@pass_ctx
def gui(ctx: Context) -> None:
    """Open the desktop window."""
    from app.ui import run_gui
    from app.ui.display import display_problem

    problem = display_problem()  # Qt aborts (exit 134) where it cannot open a window
    if problem is not None:
        raise BenchDataError(problem)
    status = run_gui(data_dir=ctx.data_dir)  # the window opens its own service
    if status:
        sys.exit(status)


def main(argv: Optional[Sequence[str]] = None) -> None:
    take_exit_promptly()  # only the command this call runs may ask for it
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="benchdata")
    except SystemExit as done:
        # app.cli_common.exit_promptly_when_done: no wait for library threads at exit.
        if not take_exit_promptly():
            raise
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
