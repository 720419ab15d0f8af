"""``benchdata sync``: run, inspect and configure the sync with the central store.

    benchdata sync --once          one reconcile pass; exit 0 only if nothing is left
    benchdata sync                 keep syncing in the foreground until Ctrl+C
    benchdata sync status          backlog, last success, quarantined items
    benchdata sync retry [ID ...]  put quarantined items back in the queue
    benchdata sync configure ...   store the central settings (secrets to the keyring)
    benchdata sync test            check the settings against the servers
    benchdata purge [--older-than DAYS] [--dry-run]   free verified local copies (sync.retention)

Exit status of ``--once``: 0 everything confirmed central, 1 items remain (retrying or
quarantined; a summary says which), 2 the settings are wrong (nothing was retried).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, Optional

import click

from app.cli_common import emit_json, exit_promptly_when_done
from app.core.errors import ValidationError

log = logging.getLogger(__name__)


def _emit(payload: Any) -> None:
    emit_json(payload, default=str)


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@click.group("sync", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run one reconcile pass and exit.")
@click.option("--no-pull", is_flag=True, help="Only push local changes.")
@click.option("--json", "as_json", is_flag=True, help="Print the pass report as JSON.")
@click.pass_context
def sync(ctx: click.Context, once: bool, no_pull: bool, as_json: bool) -> None:
    """Sync this bench with the central MongoDB and bucket."""
    if ctx.invoked_subcommand is not None:
        return
    from sync.engine import SyncEngine

    service = ctx.obj.service
    with SyncEngine(service) as engine:
        engine.settings.require_complete()
        if once:
            exit_promptly_when_done()
            report = engine.run_pass(force=True, pull=False if no_pull else None)
            _report_pass(report.as_dict(), as_json)
            if report.config_error:
                sys.exit(2)
            sys.exit(0 if report.ok and report.remaining == 0 else 1)
        _run_foreground(engine)


def _report_pass(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(report)
        return
    if report.get("clock"):
        click.echo(f"warning: {report['clock']['message']}", err=True)
    if report["config_error"] and not report.get("central_ok"):
        click.echo(f"configuration error: {report['config_error']}", err=True)
        return
    if report["config_error"]:
        click.echo(f"configuration error: {report['config_error']}", err=True)
    click.echo(f"confirmed {report['confirmed']} change(s), uploaded "
               f"{report['uploaded_bytes']} bytes, pulled {report['pulled']} datapoint(s) "
               f"and {report['pulled_deletions']} deletion(s)")
    if report["remaining"]:
        click.echo(f"{report['remaining']} item(s) not yet confirmed central "
                   f"({report['retrying']} retrying, {report['quarantined']} newly quarantined)",
                   err=True)
    for error in report["errors"][:10]:
        click.echo(f"  {error}", err=True)
    if report["error"]:
        click.echo(f"error: {report['error']}", err=True)
    if report.get("objects_error"):
        click.echo(f"object storage: {report['objects_error']} (files wait; values synced)",
                   err=True)


def _run_foreground(engine: Any) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_a: stopped.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start()
        click.echo("syncing; stop with Ctrl+C", err=True)
        while not stopped.wait(0.5):
            pass
    finally:
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@sync.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Any, as_json: bool) -> None:
    """Backlog (count, bytes, oldest change), last successful sync, quarantine."""
    from sync.engine import sync_status

    facts = sync_status(obj.service)
    if as_json:
        _emit(facts)
        return
    backlog = facts["backlog"]
    click.echo(f"     configured: {'yes' if facts['configured'] else 'no'}")
    click.echo(f"        backlog: {backlog['count']} item(s), {backlog['bytes']} bytes, "
               f"oldest {_age(backlog['oldest_age_s'])}")
    click.echo(f"   last success: {facts['last_success'] or 'never'}")
    attempt = facts.get("last_attempt")
    if attempt:
        click.echo(f"   last attempt: {attempt.get('at')}: {attempt.get('message')}")
    if facts.get("clock"):
        click.echo(f"          clock: {facts['clock']['message']}")
    if facts["config_error"]:
        click.echo(f"   config error: {facts['config_error']}")
    for retry in facts["retrying"]:
        click.echo(f"       retrying: {retry['datapoint_id']} ({retry['attempts']} attempt(s)): "
                   f"{retry['error']}")
    from app.core.custody import describe_scrub

    click.echo(f"  last verified: {describe_scrub(facts.get('last_scrub'))}")
    quarantined = facts["quarantined"]
    click.echo(f"    quarantined: {len(quarantined)}")
    for item in quarantined:
        click.echo(f"  {item['datapoint_id']}  {item['label'] or '-'}  {item['reason']}")


@sync.command("retry")
@click.argument("datapoint_ids", nargs=-1)
@click.pass_obj
def retry(obj: Any, datapoint_ids: tuple[str, ...]) -> None:
    """Retry quarantined items (all of them, or the ids given) at the next pass."""
    from sync.outbox import Outbox

    count = Outbox(obj.service.store).retry_quarantined(list(datapoint_ids) or None)
    click.echo(f"{count} item(s) will be retried")


@sync.command("configure")
@click.option("--preset", type=click.Choice(["seaweedfs", "minio", "aws", "gcs", "custom"]))
@click.option("--endpoint", help="S3 endpoint, host:port or URL.")
@click.option("--access-key")
@click.option("--secret-key", help="Prompted for (hidden) when '-' is given.")
@click.option("--secure/--insecure", default=None, help="Use TLS to reach the bucket.")
@click.option("--bucket")
@click.option("--region")
@click.option("--public-endpoint")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
              help="PEM bundle of the CAs to trust for TLS (e.g. the lab's own CA).")
@click.option("--mongo-url", help="MongoDB URL ('-' prompts; a password goes to the keyring).")
@click.option("--mongo-database")
@click.option("--mongo-collection")
@click.option("--free-after-days", type=float, help="Free local copies verified central for "
              "this many days (0 or negative: never).")
@click.pass_obj
def configure(obj: Any, **options: Any) -> None:
    """Store the central settings; secrets go to the OS keyring (or a private file)."""
    from sync.settings import CentralSettings, load_section_settings, save_settings, \
        secrets_location

    paths = obj.service.paths
    current = load_section_settings(paths)
    updates: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in ("secret_key", "mongo_url") and value == "-":
            value = click.prompt(key.replace("_", " "), hide_input=True)
        if key == "free_after_days":
            key, value = "free_verified_after_days", (value if value > 0 else None)
        updates[key] = value
    endpoint = str(options.get("endpoint") or "")
    if "://" in endpoint and options.get("secure") is None:
        # The endpoint is stored bare; its scheme must not be lost (https -> TLS on).
        updates["secure"] = endpoint.lower().startswith("https://")
    try:
        settings = CentralSettings(**{**current.model_dump(), **updates})
    except Exception as exc:  # noqa: BLE001
        raise ValidationError(f"invalid settings: {exc}") from exc
    save_settings(paths, settings)
    click.echo(f"saved the central settings; secrets are in the {secrets_location(paths)}")
    _emit(settings.describe())


@sync.command("test")
@click.pass_obj
def test(obj: Any) -> None:
    """Check the settings: MongoDB answers, the bucket exists, the keys are accepted."""
    from sync.central import CentralDatabase
    from sync.faults import SyncError
    from sync.objects import ObjectStore
    from sync.settings import load_settings

    settings = load_settings(obj.service.paths)
    _emit(settings.describe())
    settings.require_complete()
    problems = 0
    try:
        with CentralDatabase(settings) as central:
            central.ping()
        click.echo("MongoDB: ok")
    except SyncError as exc:
        problems += 1
        click.echo(f"MongoDB: {exc}", err=True)
    try:
        with ObjectStore(settings) as objects:
            objects.check_access()
            clock = objects.clock.status()
        click.echo("object storage: ok")
        if clock:
            click.echo(f"warning: {clock['message']}", err=True)
    except SyncError as exc:
        problems += 1
        click.echo(f"object storage: {exc}", err=True)
    if problems:
        sys.exit(2)


@click.command("purge")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), metavar="DAYS",
              help="Free copies whose central copy was verified more than DAYS ago "
                   "(default: the central setting free_verified_after_days).")
@click.option("--dry-run", is_flag=True, help="Only report what would be freed, and what "
              "would be lost if this PC were wiped now.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def purge(obj: Any, older_than: Optional[float], dry_run: bool, as_json: bool) -> None:
    """Free local copies of files whose central copy is verified.

    The records stay; a freed file is downloaded again, verified, when it is opened.
    Nothing that is not verified central is ever freed. The facility can lock the
    retention age (central.free_verified_after_days in its settings file)."""
    from sync.retention import check_allowed, free_verified
    from sync.settings import load_settings

    if older_than is None:
        older_than = load_settings(obj.service.paths).free_verified_after_days
        if older_than is None:
            raise ValidationError("say how old a verified copy must be to be freed: "
                                  "--older-than DAYS (or set it with "
                                  "`benchdata sync configure --free-after-days DAYS`)")
    check_allowed(older_than)
    report = free_verified(obj.service, older_than, dry_run=dry_run)
    if as_json:
        _emit(report.as_dict())
        return
    _print_retention(report)


def _print_retention(report: Any) -> None:
    from app.core.units import human_size

    verb = "would free" if report.dry_run else "freed"
    click.echo(f"{verb} {report.freed} local cop{'y' if report.freed == 1 else 'ies'} "
               f"({human_size(report.freed_bytes)}) verified central more than "
               f"{report.older_than_days:g} day(s) ago")
    risk = report.at_risk
    if not risk:
        click.echo("nothing would be lost if this PC were wiped now: every datapoint "
                   "captured here is verified central")
        return
    click.echo(f"would be LOST if this PC were wiped now: {len(risk)} datapoint(s) "
               f"({human_size(report.at_risk_bytes)} of files) not yet verified central:")
    for item in risk[:20]:
        size = f", {human_size(item.size_bytes)}" if item.size_bytes is not None else ""
        click.echo(f"  {item.datapoint_id}  {item.label or '-'}  ({item.data_type}{size}, "
                   f"{item.age_days:.1f} day(s) old, {item.sync_state})")
    if len(risk) > 20:
        click.echo(f"  ... and {len(risk) - 20} more (--json lists all)")


@click.command("verify")
@click.option("--rate", "rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Read at most this many MiB/s (local blobs and --deep downloads); "
                   "0 = unlimited.")
@click.option("--central", is_flag=True, help="Also check every central object: its size "
              "and SHA-256 metadata (size and ETag for objects MADSci wrote).")
@click.option("--deep", is_flag=True, help="With --central: download each object and "
              "re-hash it.")
@click.option("--repair", is_flag=True, help="Heal from verified copies: fetch a damaged or "
              "missing local blob from its verified central copy; upload a missing or "
              "damaged central object again from the verified local copy.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.pass_obj
def verify(obj: Any, rate: float, central: bool, deep: bool, repair: bool, as_json: bool,
           quiet: bool) -> None:
    """Scrub: re-hash this bench's files (and check the central copies); exit 1 if anything
    is wrong (and not repaired)."""
    from app.core import custody
    from sync.verify import Scrubber, _object_store

    service = obj.service
    objects = _object_store(service) if (central or deep or repair) else None
    if (central or deep) and objects is None:
        raise ValidationError("--central needs the central object storage configured "
                              "(benchdata sync configure)")

    def push_now() -> bool:
        from sync.engine import SyncEngine

        with SyncEngine(service) as engine:
            engine.run_pass(force=True, pull=False)
        return True

    try:
        report = Scrubber(service, rate_mib_s=rate, central=central or deep, deep=deep,
                          repair=repair, objects=objects, upload=push_now,
                          progress=None if quiet or as_json else _progress_printer()).run()
    finally:
        if objects is not None:
            objects.close()
    if as_json:
        _emit(report.as_dict())
    else:
        click.echo(custody.describe_scrub(custody.last_scrub_run(service.store)))
        click.echo(f"  {report.blobs} local file(s), {report.bytes_hashed} bytes hashed, "
                   f"{report.central_only} kept only centrally"
                   + (f", {report.objects} central object(s) checked" if report.central else ""))
        for problem in report.problems:
            click.echo(f"  {problem.line()}", err=not problem.repaired)
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
    sys.exit(0 if report.ok else 1)


def _progress_printer() -> Any:
    """Progress on stderr, at most twice a second."""
    import time

    last = [0.0]

    def show(progress: Any) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        if progress.phase == "local" and progress.bytes_total:
            share = 100.0 * progress.bytes_done / max(1, progress.bytes_total)
            click.echo(f"verify: local {progress.items_done}/{progress.items_total} file(s), "
                       f"{share:.0f}% of the bytes", err=True)
        else:
            click.echo(f"verify: {progress.phase} {progress.items_done} checked", err=True)

    return show


@click.group("fleet")
def fleet() -> None:
    """Every bench on this central store, from their heartbeats."""


@fleet.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--offline-after", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Minutes without a heartbeat after which a bench counts as offline.")
@click.pass_obj
def fleet_status_command(obj: Any, as_json: bool, offline_after: float) -> None:
    """Benches behind, offline or needing attention first; one line each."""
    from datetime import timedelta

    from sync.central import CentralDatabase
    from sync.fleet import describe_state, fleet_status, scrub_state
    from sync.settings import load_settings

    with CentralDatabase(load_settings(obj.service.paths)) as central:
        rows = fleet_status(central, offline_after=timedelta(minutes=offline_after))
    if as_json:
        _emit(rows)
        return
    if not rows:
        click.echo("no bench has sent a heartbeat to this central store yet")
        return
    click.echo(f"{'bench':<28} {'host':<16} {'state':<26} {'backlog':>8} {'oldest':>9} "
               f"{'last seen':>10} {'last scrub':<24} problems")
    for row in rows:
        scrub = scrub_state(row)
        if row.get("scrub_age_s") is not None:
            scrub += f", {_age(row['scrub_age_s'])} ago"
        click.echo(f"{row['bench_id']:<28} {str(row.get('host') or '-')[:16]:<16} "
                   f"{describe_state(row):<26} {row.get('backlog_count', 0):>8} "
                   f"{_age(row.get('backlog_age_s')):>9} {_age(row.get('silent_s')):>10} "
                   f"{scrub:<24} {'; '.join(row.get('problems') or []) or '-'}")
