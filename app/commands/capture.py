"""``benchdata add value | file``: capture a JSON value or files into the local store."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from app.cli_common import parse_meta
from app.commands.context import Context, ownership_from_options, ownership_options, pass_ctx
from app.commands.output import progress_for, report_captured
from app.core import fsnames
from app.core.errors import BenchDataError

if TYPE_CHECKING:
    from app.core.models import DataPoint
    from app.service import BenchService


@click.group()
def add() -> None:
    """Capture a JSON value or files."""


@add.command("value")
@click.argument("value")
@click.option("--label", "-l", help="Label of the datapoint.")
@ownership_options
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
        label=label, value=parsed, ownership_info=ownership_from_options(service, names),
        custom_metadata=parse_meta(meta), **extra))
    report_captured([datapoint], as_json)


def _reject_constant(name: str) -> Any:
    raise click.BadParameter(f"{name} is not JSON; use null or a number", param_hint="VALUE")


@add.command("file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--label", "-l", help="Label (default: the file name).")
@ownership_options
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Custom metadata (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the datapoints as JSON.")
@pass_ctx
def add_file(ctx: Context, paths: Sequence[Path], label: Optional[str], meta: Sequence[str],
             quiet: bool, as_json: bool, **names: Optional[str]) -> None:
    """Capture one or more files (copied into the store; the originals are untouched)."""
    from app.core.models import FileDataPoint

    service = ctx.service
    ownership = ownership_from_options(service, names)
    metadata = parse_meta(meta)
    captured: list[DataPoint] = []
    failures = 0
    for path in paths:
        try:
            source = _link_target(path, service)
            with progress_for(source, quiet or as_json) as progress:
                captured.append(service.submit(
                    FileDataPoint(label=label or fsnames.readable(path.name), path=str(source),
                                  ownership_info=ownership, custom_metadata=metadata),
                    progress=progress))
        except BenchDataError as exc:
            failures += 1
            click.echo(f"error: {fsnames.readable(str(exc))}", err=True)
    report_captured(captured, as_json)
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
