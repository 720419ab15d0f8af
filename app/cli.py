"""``benchdata``: the command line of Bench Data Manager.

Every command works on the local store (``--data-dir``, else ``$BENCHDATA_HOME``, else the
platform's data directory) and needs no server. ``--json`` prints machine-readable output
for scripts; errors go to stderr with exit status 1 and a sentence saying what to do.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Optional

import click

from app import __version__
from app.cli_common import emit_json, exit_promptly_when_done, parse_meta, take_exit_promptly
from app.commands.context import Context, pass_ctx
from app.core import capture_notes
from app.core.errors import BenchDataError, describe_validation_error, is_disk_full

# The commands live in app/commands/ (one module per group) and beside the components they
# drive; all are imported when they run: `benchdata --version` must not load pydantic, the
# store or the sync engine (bench/bench_startup.py).
__all__ = ["Context", "cli", "emit_json", "exit_promptly_when_done", "main", "parse_meta",
           "pass_ctx"]


def _capture_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app.commands import capture

        command: click.Command = getattr(capture, name)
        return command

    return load


def _datapoint_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app.commands import datapoints

        command: click.Command = getattr(datapoints, name)
        return command

    return load


def _bench_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from app.commands import bench

        command: click.Command = getattr(bench, name)
        return command

    return load


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


#: Every subcommand, imported on use (plain imports inside the loaders, so import-linter
#: follows them): name -> loader. The root's own commands are in app/commands/; the groups
#: of components live beside the component they drive.
LAZY_SUBCOMMANDS: dict[str, Callable[[], click.Command]] = {
    "add": _capture_command("add"),
    **{name: _datapoint_command(name)
       for name in ("get", "value", "save", "query", "search", "edit", "delete", "export")},
    "list": _datapoint_command("list_"),
    "time-zone": _bench_command("time_zone"),
    **{name: _bench_command(name) for name in ("names", "info", "run", "gui")},
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
