"""Which names a rule captures, ignores or walks into; markers; validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ValidationError
from app.ingest.rules import WatchRule, validate_rule


@pytest.mark.parametrize(("rel_path", "accepted"), [
    ("a.csv", True),
    ("RUN1.CSV", True),  # patterns are case-insensitive
    ("deep/er/f.csv", True),
    ("sub/x.raw", True),  # a pattern with '/' matches the relative path
    ("x.raw", False),
    ("notes.txt", False),
    ("bad1.csv", False),  # excluded
    ("a.csv.part", False),  # temporary names
    ("a.csv.tmp", False),
    ("~$a.csv", False),
    (".hidden.csv", False),
    ("a.csv~", False),
    ("a.csv.done", False),  # marker files are never captured
])
def test_accepts_file(rel_path: str, accepted: bool) -> None:
    rule = WatchRule(id="r", path="/data", include=["*.csv", "sub/*.raw"], exclude=["bad*"],
                     marker="{name}.done")
    assert rule.accepts_file(rel_path) is accepted


def test_temporary_names_can_be_captured_on_request_and_folders_are_pruned() -> None:
    rule = WatchRule(id="r", path="/data")
    assert not rule.accepts_dir(".git") and rule.accepts_dir("plate1")
    keen = WatchRule(id="r", path="/data", ignore_temporary=False)
    assert keen.accepts_file("x.tmp") and keen.accepts_dir(".cache")


def test_marker_paths() -> None:
    rule = WatchRule(id="r", path="/data", marker="{stem}.ok")
    assert rule.marker_for(Path("/data/a/run.csv")) == Path("/data/a/run.ok")
    dataset = WatchRule(id="r", path="/data", datasets=True, marker="{name}/acqu.done")
    assert dataset.marker_for(Path("/data/exp1")) == Path("/data/exp1/acqu.done")


@pytest.mark.parametrize(("fields", "complaint"), [
    ({"include": []}, "at least one pattern"),
    ({"quiet_seconds": -1}, "quiet_seconds"),
    ({"marker": "{sample}.done"}, "only use {name} and {stem}"),
    ({"marker": "../x.done"}, "relative"),
    ({"label_template": "{experiment}"}, "neither the file nor the path template"),
    ({"observer": "magic"}, "observer"),
    ({"unknown_option": 1}, "unknown_option"),
])
def test_invalid_rules_are_refused_with_a_reason(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        validate_rule({"id": "r", "path": "/data", **fields})


def test_label_may_use_template_fields_metadata_and_bare_ownership_kinds() -> None:
    rule = validate_rule({"id": "r", "path": "/data", "path_template": "{experiment_id}/*",
                          "metadata": {"user_id": "alice", "site": "north"},
                          "label_template": "{experiment} {user} {site} {stem}"})
    assert rule.name == "data"
