"""``benchdata doctor | backup | restore | logs`` (mounted by ``app.cli.LAZY_SUBCOMMANDS``)."""

from __future__ import annotations

import sys

import click

from app.cli_common import emit_json, exit_promptly_when_done
from app.core.paths import BenchPaths, bench_paths


def _paths(ctx: click.Context) -> BenchPaths:
    """The store's paths without opening the store (doctor/restore must not create one)."""
    return bench_paths(getattr(ctx.obj, "data_dir", None))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--full", is_flag=True,
              help="Re-hash every stored file (default: a random sample).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, full: bool) -> None:
    """Check that this bench is ready: disk, store, its files, watched folders, central
    store."""
    from app.admin.doctor import CHECKS, FAIL, check_all_blobs, check_blobs, run_checks
    from app.admin.doctor import as_json as to_json

    exit_promptly_when_done()  # no half-second wait for MongoDB client threads at exit
    checks = [check_all_blobs if full and check is check_blobs else check
              for check in CHECKS]
    results = run_checks(_paths(ctx), checks)
    if as_json:
        emit_json(to_json(results))
    else:
        for check in results:
            click.echo(check.line())
        failed = sum(c.status == FAIL for c in results)
        click.echo("All checks passed." if not failed else f"{failed} check(s) failed.")
    if any(c.status == FAIL for c in results):
        ctx.exit(1)


@click.command()
@click.argument("destination", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def backup(ctx: click.Context, destination: str, as_json: bool) -> None:
    """Back the store, its files and the configuration up into DESTINATION.

    Safe while the service is capturing; run it again into the same folder to refresh it
    (files already there are skipped)."""
    from app.admin.backup import backup as do_backup

    report = do_backup(_paths(ctx), destination)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"Backed up {report.datapoints} datapoint(s) and {report.files.copied} new "
               f"file(s) ({report.files.skipped} already there) to {report.destination}")


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True, help="Replace a store that already holds data.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def restore(ctx: click.Context, source: str, force: bool, as_json: bool) -> None:
    """Restore a backup folder made by `benchdata backup` (stop the service first)."""
    from dataclasses import asdict

    from app.admin.backup import restore as do_restore

    report = do_restore(_paths(ctx), source, force=force)
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"Restored {report.datapoints} datapoint(s) and {report.files.copied} file(s) "
               f"from {report.source}" + (" (and the configuration)" if report.config else ""))


@click.command()
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl+C stops).")
@click.option("--path", "show_path", is_flag=True, help="Only print the log file's path.")
@click.option("--window", is_flag=True, help="The desktop window's log instead of the service's.")
@click.pass_context
def logs(ctx: click.Context, lines: int, follow: bool, show_path: bool, window: bool) -> None:
    """Print the end of the service's log file."""
    from app.admin.logs import LOG_NAME, WINDOW_LOG_NAME, log_file, tail
    from app.admin.logs import follow as follow_log

    path = log_file(_paths(ctx), WINDOW_LOG_NAME if window else LOG_NAME)
    if show_path:
        click.echo(str(path))
        return
    if not path.exists() and not follow:
        writer = "the desktop window" if window else "`benchdata run`"
        click.echo(f"No log yet ({path}); {writer} writes it.", err=True)
        return
    for line in tail(path, lines):
        click.echo(line)
    if follow:
        try:
            for line in follow_log(path):
                click.echo(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


__all__ = ["backup", "doctor", "logs", "restore"]
