"""``benchdata watch``: configure watched folders (``benchdata run`` watches them).

Registered lazily in ``app.cli.LAZY_SUBCOMMANDS``; the root command puts a ``Context``
(``.service``, ``.data_dir``) in ``ctx.obj``. Rule edits only touch the configuration file;
a running service picks them up when it is restarted (the GUI reloads them live).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import click

from app.cli_common import emit_json, parse_meta

from app.core.ids import id_for
from app.core.paths import BenchPaths, bench_paths
from app.ingest import originals
from app.ingest import rules as rules_module
from app.ingest.rules import WatchRule, find_rule, load_rules, validate_rule
from app.ingest.templates import describe
from app.ingest.watcher import RuleStatus

_OBSERVERS = ("auto", "native", "polling", "none")


def _paths(obj: Any) -> BenchPaths:
    return bench_paths(getattr(obj, "data_dir", None))


def _rule_options(editing: bool):  # type: ignore[no-untyped-def]
    """The options ``add`` and ``edit`` share (on ``edit`` an absent option = unchanged)."""

    def decorate(func):  # type: ignore[no-untyped-def]
        options = [
            click.option("--name", help="A short name for the rule (default: the folder name)."),
            click.option("--include", "-i", multiple=True, metavar="PATTERN",
                         help="File-name pattern to capture, e.g. '*.csv' (repeatable; "
                              "default '*'). A pattern with '/' matches the relative path."),
            click.option("--exclude", "-x", multiple=True, metavar="PATTERN",
                         help="File-name pattern to skip (repeatable)."),
            click.option("--quiet", "quiet_seconds", type=click.FloatRange(0, 86400),
                         metavar="SECONDS",
                         help="Seconds without a size/mtime change before a file counts as "
                              "complete (default 2)."),
            click.option("--lock-test/--no-lock-test", default=None,
                         help="Also require that the file can be opened exclusively."),
            click.option("--marker", metavar="TEMPLATE",
                         help="Capture only once a marker exists beside the file, e.g. "
                              "'{name}.done' or '{stem}.ok' ('' = none)."),
            click.option("--profile", metavar="NAME",
                         help="How the instrument says an acquisition is finished: quiet "
                              "(default), marker, held-open, dataset, bruker-nmr, "
                              "micromanager, thermo-epu, or an installed plugin "
                              "(benchdata watch profiles)."),
            click.option("--profile-option", "profile_option", multiple=True,
                         metavar="KEY=VALUE",
                         help="An option of the profile (repeatable), e.g. "
                              "marker='*.complete' or require='acqus,fid|ser'; KEY= removes "
                              "it."),
            click.option("--datasets/--files", default=None,
                         help="Capture each subfolder as one dataset (a zip archive) instead "
                              "of file by file."),
            click.option("--dataset-depth", type=click.IntRange(1, 16), metavar="N",
                         help="With --datasets: the folders N levels down are the datasets "
                              "(default 1)."),
            click.option("--path-template", metavar="TEMPLATE",
                         help="Map folders and file names onto metadata, e.g. "
                              "'{experiment}/{sample}/*' ('' = none)."),
            click.option("--label", "label_template", metavar="TEMPLATE",
                         help="Label template, e.g. '{stem}' or '{sample} {name}' "
                              "(default '{name}')."),
            click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE",
                         help="Fixed metadata (repeatable); user=, experiment= ... (or "
                              "user_id= ...) set ownership by name."),
            click.option("--observer", type=click.Choice(_OBSERVERS),
                         help="How changes are noticed: native events, polling, or none "
                              "(scans only); auto = polling on network shares."),
            click.option("--poll-interval", type=click.FloatRange(0.1, 3600), metavar="SECONDS",
                         help="Polling period (default 5)."),
            click.option("--rescan-interval", type=click.FloatRange(1, 86400), metavar="SECONDS",
                         help="Full reconcile scan period (default 300)."),
            click.option("--recursive/--no-recursive", default=None,
                         help="Watch subfolders too (default yes)."),
            click.option("--originals-after-days", type=float, metavar="DAYS",
                         help="Opt-in: remove the instrument's original files once their "
                              "central copy is verified and they were captured DAYS ago; only "
                              "files still byte-identical to the capture (negative = never, "
                              "the default)."),
            click.option("--originals-move-to", metavar="FOLDER",
                         help="Move those originals below FOLDER instead of removing them "
                              "('' = remove)."),
            click.option("--capture-temporary-names", "ignore_temporary",
                         flag_value=False, default=None,
                         help="Also capture *.tmp, *.part, ~$*, dotfiles ... (normally "
                              "ignored)."),
        ]
        if editing:
            options.append(click.option("--unset-meta", multiple=True, metavar="KEY",
                                        help="Remove a fixed metadata key (repeatable)."))
        else:
            options.append(click.option("--paused", is_flag=True,
                                        help="Add the rule paused."))
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _changes(values: dict[str, Any]) -> dict[str, Any]:
    """Option values -> rule fields (None and empty repeatables mean 'not given')."""
    changes: dict[str, Any] = {}
    for key in ("name", "quiet_seconds", "lock_test", "datasets", "dataset_depth",
                "label_template", "observer", "poll_interval", "rescan_interval", "recursive",
                "ignore_temporary"):
        if values.get(key) is not None:
            changes[key] = values[key]
    for key in ("include", "exclude"):
        if values.get(key):
            changes[key] = list(values[key])
    for key in ("marker", "path_template"):
        if values.get(key) is not None:
            changes[key] = values[key] or None
    days = values.get("originals_after_days")
    if days is not None:
        changes["originals_after_days"] = days if days >= 0 else None
    move_to = values.get("originals_move_to")
    if move_to is not None:
        changes["originals_action"] = "move" if move_to else "remove"
        changes["originals_move_to"] = move_to or None
    return changes


def _profile_changes(current: Optional[WatchRule], profile: Optional[str],
                     options: Sequence[str]) -> dict[str, Any]:
    """``--profile`` and ``--profile-option`` -> rule fields. Options are kept while the
    profile stays the same and start afresh when it changes (each profile has its own)."""
    if profile is None and not options:
        return {}
    changes: dict[str, Any] = {}
    keep: dict[str, str] = {}
    if current is not None and (profile is None or profile.strip().lower() == current.profile):
        keep = dict(current.profile_options)
    if profile is not None:
        changes["profile"] = profile
    for key, value in parse_meta(options).items():
        if value == "":
            keep.pop(key, None)
        else:
            keep[key] = value
    changes["profile_options"] = keep
    return changes


def _waiting_lines(status: RuleStatus) -> list[str]:
    """What the running watcher says the folder waits for right now."""
    lines = [f"    note: {status.note}"] if status.note else []
    if status.waiting_for:
        lines.append(f"    waiting ({status.waiting} in all):")
        lines.extend(f"      {path}: waiting for {what}"
                     for path, what in list(status.waiting_for.items())[:20])
    return lines


def _describe_rule(rule: WatchRule, captured: Optional[int] = None,
                   problems: Optional[dict[str, str]] = None,
                   status: Optional[RuleStatus] = None) -> str:
    lines = [f"{rule.id}  {rule.name}{'' if rule.enabled else '  (paused)'}",
             f"    folder: {rule.path}{'' if rule.root.is_dir() else '  (not there now)'}",
             f"    files: {', '.join(rule.include)}"
             + (f" except {', '.join(rule.exclude)}" if rule.exclude else "")
             + ("" if rule.recursive else " (top level only)"),
             f"    profile: {rule.profile}"
             + (" (" + ", ".join(f"{k}={v}" for k, v in rule.profile_options.items()) + ")"
                if rule.profile_options else ""),
             f"    {rule.describe_completeness()}"]
    if rule.path_template:
        lines.append(f"    path template: {rule.path_template}")
    lines.append(f"    label: {rule.label_template}")
    if rule.metadata:
        lines.append("    metadata: " + ", ".join(f"{k}={v}" for k, v in rule.metadata.items()))
    lines.append(f"    observer: {rule.observer}, rescan every {rule.rescan_interval:g}s")
    if rule.originals_after_days is not None:
        action = (f"moved to {rule.originals_move_to}" if rule.originals_action == "move"
                  else "removed")
        lines.append(f"    originals: {action} {rule.originals_after_days:g} day(s) after "
                     "capture, once verified central and unchanged")
    if captured is not None:
        lines.append(f"    captured: {captured} file(s)/dataset(s)")
    if status is not None:
        lines.extend(_waiting_lines(status))
    if problems:
        lines.append(f"    problems ({len(problems)}, reported by the running watcher):")
        lines.extend(f"      {path}: {why}" for path, why in list(problems.items())[:20])
        if len(problems) > 20:
            lines.append(f"      ... and {len(problems) - 20} more (--json lists them all)")
    return "\n".join(lines)


def _live_statuses(obj: Any) -> dict[str, RuleStatus]:
    """The statuses the running watcher publishes (``app.ingest.health``); none when it
    does not run (an old heartbeat)."""
    from app.ingest.health import HealthBoard

    published = HealthBoard(obj.service.store).read()
    return {rule_id: p.status for rule_id, p in published.items() if not p.stale}


def _captured_counts(obj: Any, rules: Sequence[WatchRule]
                     ) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Per rule: how many units it captured, and the problems its running watcher reports
    (files refused or failing, by relative path)."""
    from app.ingest.ledger import Ledger

    ledger = Ledger(obj.service.store)
    return ({rule.id: ledger.count(rule.id) for rule in rules},
            {rule.id: ledger.problems(rule.id) for rule in rules})


@click.group("watch")
def watch() -> None:
    """Watched folders: instrument output captured automatically, once, when complete.

    Rules are stored in the configuration; `benchdata run` watches every enabled one.
    """


@watch.command("add")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@_rule_options(editing=False)
@click.option("--json", "as_json", is_flag=True, help="Print the rule as JSON.")
@click.pass_obj
def add(obj: Any, folder: Path, meta: Sequence[str], paused: bool, as_json: bool,
        profile: Optional[str], profile_option: Sequence[str], **values: Any) -> None:
    """Watch FOLDER, e.g.:  benchdata watch add /instrument/out --include '*.csv'
    --quiet 2 --label '{stem}' --meta user=alice --path-template '{experiment}/{sample}/*'"""
    fields = {**_changes(values), **_profile_changes(None, profile, profile_option)}
    if meta:
        fields["metadata"] = parse_meta(meta)
    if paused:
        fields["enabled"] = False
    rule = rules_module.add_rule(_paths(obj), str(folder), **fields)
    if not rule.root.is_dir():
        click.echo(f"warning: {rule.root} is not there now; it will be watched once it is",
                   err=True)
    if as_json:
        emit_json(rule.to_config())
        return
    click.echo(f"added watch rule {rule.id}")
    click.echo(_describe_rule(rule))


@watch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@click.pass_obj
def list_rules(obj: Any, as_json: bool) -> None:
    """The watched folders and how many files each has captured."""
    rules = load_rules(_paths(obj))
    counts, problems = _captured_counts(obj, rules) if rules else ({}, {})
    statuses = _live_statuses(obj) if rules else {}
    if as_json:
        emit_json([{**rule.to_config(), "captured": counts.get(rule.id, 0),
                     "folder_present": rule.root.is_dir(),
                     "problems": problems.get(rule.id, {}),
                     "completeness": rule.describe_completeness(),
                     "waiting_for": getattr(statuses.get(rule.id), "waiting_for", {}),
                     "note": getattr(statuses.get(rule.id), "note", ""),
                     "originals": originals.let_go_summary(obj.service.store, rule.id)}
                    for rule in rules])
        return
    if not rules:
        click.echo("No watched folders. Add one with: benchdata watch add FOLDER")
    for rule in rules:
        click.echo(_describe_rule(rule, counts.get(rule.id), problems.get(rule.id),
                                  statuses.get(rule.id)))
        if (summary := originals.let_go_summary(obj.service.store, rule.id)) is not None:
            click.echo(f"    originals: {summary}")


@watch.command("edit")
@click.argument("rule_ref", metavar="RULE")
@_rule_options(editing=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rule as JSON.")
@click.pass_obj
def edit(obj: Any, rule_ref: str, meta: Sequence[str], unset_meta: Sequence[str],
         as_json: bool, profile: Optional[str], profile_option: Sequence[str],
         **values: Any) -> None:
    """Change a rule (RULE: its id, name or folder). Options not given stay as they are."""
    paths = _paths(obj)
    changes = _changes(values)
    if profile is not None or profile_option:
        current = find_rule(load_rules(paths), rule_ref)
        changes.update(_profile_changes(current, profile, profile_option))
    if meta or unset_meta:
        metadata = dict(find_rule(load_rules(paths), rule_ref).metadata)
        metadata.update(parse_meta(meta))
        for key in unset_meta:
            metadata.pop(key, None)
        changes["metadata"] = metadata
    if not changes:
        raise click.UsageError("nothing to change; give at least one option (see --help)")
    rule = rules_module.update_rule(paths, rule_ref, changes)
    if as_json:
        emit_json(rule.to_config())
        return
    click.echo(f"updated watch rule {rule.id}")
    click.echo(_describe_rule(rule))


def _set_enabled(obj: Any, rule_ref: str, enabled: bool) -> None:
    rule = rules_module.update_rule(_paths(obj), rule_ref, {"enabled": enabled})
    click.echo(f"{'resumed' if enabled else 'paused'} watch rule {rule.id} ({rule.path})")


@watch.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profiles(as_json: bool) -> None:
    """The completeness profiles installed (built-in and from plugins)."""
    from app.ingest.profiles import BUILTIN, profile_names, summary

    found = [{"name": name, "builtin": name in BUILTIN, "summary": summary(name)}
             for name in profile_names()]
    if as_json:
        emit_json(found)
        return
    for item in found:
        origin = "" if item["builtin"] else "  (plugin)"
        click.echo(f"{item['name']}{origin}\n    {item['summary']}")


@watch.command("pause")
@click.argument("rule_ref", metavar="RULE")
@click.pass_obj
def pause(obj: Any, rule_ref: str) -> None:
    """Stop watching a folder for now (the rule and what it captured are kept)."""
    _set_enabled(obj, rule_ref, False)


@watch.command("resume")
@click.argument("rule_ref", metavar="RULE")
@click.pass_obj
def resume(obj: Any, rule_ref: str) -> None:
    """Watch a paused folder again (files that arrived meanwhile are captured)."""
    _set_enabled(obj, rule_ref, True)


@watch.command("remove")
@click.argument("rule_ref", metavar="RULE")
@click.option("--forget", is_flag=True,
              help="Also forget which files it captured (watching the folder again would "
                   "then capture them all again).")
@click.pass_obj
def remove(obj: Any, rule_ref: str, forget: bool) -> None:
    """Stop watching a folder and delete its rule (captured datapoints stay)."""
    rule = rules_module.remove_rule(_paths(obj), rule_ref)
    message = f"removed watch rule {rule.id} ({rule.path})"
    if forget:
        from app.ingest.ledger import Ledger

        forgotten = Ledger(obj.service.store).forget_rule(rule.id)
        message += f"; forgot {forgotten} captured file(s)"
    click.echo(message)


@watch.command("test-template")
@click.argument("paths", nargs=-1, required=True)
@click.option("--rule", "rule_ref", metavar="RULE",
              help="Use this rule's templates and metadata (paths may be relative to its folder).")
@click.option("--path-template", metavar="TEMPLATE", help="Path template to try.")
@click.option("--label", "label_template", metavar="TEMPLATE", help="Label template to try.")
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Fixed metadata to try.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def test_template(obj: Any, paths: Sequence[str], rule_ref: Optional[str],
                  path_template: Optional[str], label_template: Optional[str],
                  meta: Sequence[str], as_json: bool) -> None:
    """Show the label and metadata PATHS would be captured with (nothing is stored).

    PATHS are relative to the watched folder (or absolute inside it, with --rule)."""
    base: dict[str, Any] = {}
    root: Optional[Path] = None
    if rule_ref is not None:
        rule = find_rule(load_rules(_paths(obj)), rule_ref)
        base = rule.to_config()
        root = rule.root
    base.setdefault("id", "test")
    base.setdefault("path", str(root or Path.cwd()))
    if path_template is not None:
        base["path_template"] = path_template or None
    if label_template is not None:
        base["label_template"] = label_template
    if meta:
        base["metadata"] = {**base.get("metadata", {}), **parse_meta(meta)}
    rule = validate_rule(base)
    results: list[dict[str, Any]] = []
    for given in paths:
        rel = given.replace("\\", "/")
        if root is not None and Path(given).is_absolute():
            try:
                rel = Path(given).relative_to(root).as_posix()
            except ValueError as exc:
                raise click.BadParameter(f"{given} is not inside {root}",
                                         param_hint="PATHS") from exc
        described = describe(rel, path_template=rule.compiled_template,
                             label_template=rule.label_template, fixed_metadata=rule.metadata,
                             rule_name=rule.name)
        results.append({
            "path": rel,
            "template_match": described.template_matched,
            "captured": rule.accepts_file(rel),
            "label": described.label,
            "ownership": {f"{kind}_id": {"name": name, "id": id_for(kind, name)}
                          for kind, name in described.ownership.items()},
            "custom_metadata": described.custom_metadata,
        })
    if as_json:
        emit_json(results)
        return
    for result in results:
        match = {True: "matches", False: "DOES NOT MATCH (captured, flagged)",
                 None: "no path template"}[result["template_match"]]
        click.echo(f"{result['path']}: {match}"
                   + ("" if result["captured"] else "  [not captured by this rule's patterns]"))
        click.echo(f"    label: {result['label']}")
        for field, pair in result["ownership"].items():
            click.echo(f"    {field}: {pair['id']}  ({pair['name']})")
        for key, value in result["custom_metadata"].items():
            click.echo(f"    {key}: {value}")
