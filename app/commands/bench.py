"""``benchdata time-zone | names | info | run | gui``: this bench itself — its zones, its
names, where it keeps its data, and running the capture service or the window."""

from __future__ import annotations

import sys
from typing import Optional

import click

from app import __version__
from app.cli_common import emit_json
from app.commands.context import Context, pass_ctx
from app.core import capture_notes
from app.core.errors import BenchDataError
from app.core.ids import OWNERSHIP_KINDS


@click.command("time-zone")
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


@click.group()
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


@click.command()
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


@click.command()
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


@click.command()
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
