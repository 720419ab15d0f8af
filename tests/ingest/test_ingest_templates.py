"""Path and label templates: table-driven, path in, fields and label out."""

from __future__ import annotations

from typing import Optional

import pytest

from app.core.errors import ValidationError
from app.ingest.templates import PathTemplate, check_label_template, describe


@pytest.mark.parametrize(("template", "path", "fields"), [
    ("{experiment}/{sample}/*", "EXP42/S7/run.csv", {"experiment": "EXP42", "sample": "S7"}),
    ("{experiment}/{sample}/*", "EXP42/run.csv", None),
    ("{experiment}/{sample}/*", "EXP42/S7/deeper/run.csv", None),
    ("{experiment_id}/*.csv", "EXP1/a.csv", {"experiment_id": "EXP1"}),
    ("{experiment_id}/*.csv", "EXP1/a.txt", None),
    ("{date}_{sample}.csv", "2024-05-01_S7.csv", {"date": "2024-05-01", "sample": "S7"}),
    ("{date}_{sample}.csv", "2024-05-01_S7_rep2.csv", {"date": "2024-05-01", "sample": "S7_rep2"}),
    ("**/{sample}.raw", "a/b/c/S9.raw", {"sample": "S9"}),
    ("**/{sample}.raw", "S9.raw", {"sample": "S9"}),
    ("{user}/**", "alice/x/y/z.bin", {"user": "alice"}),
    ("{user}/**", "alice", None),
    ("run?/{name}", "run1/a", {"name": "a"}),
    ("run?/{name}", "run12/a", None),
    ("{a}/{a}.txt", "x/x.txt", {"a": "x"}),
    ("{a}/{a}.txt", "x/y.txt", None),
    ("literal {{braces}}/{f}", "literal {braces}/q", {"f": "q"}),
    ("dots.and+plus/{f}", "dots.and+plus/q", {"f": "q"}),
    ("dots.and+plus/{f}", "dotsXand+plus/q", None),
])
def test_path_template_matching(template: str, path: str, fields: Optional[dict[str, str]]) -> None:
    assert PathTemplate(template).match(path) == fields


@pytest.mark.parametrize(("template", "complaint"), [
    ("", "empty"),
    ("{a", "unmatched"),
    ("a}", "unmatched"),
    ("{1bad}/x", "bad field"),
    ("{a b}/x", "bad field"),
    ("a//b", "empty folder level"),
])
def test_bad_path_templates_are_refused_with_a_reason(template: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        PathTemplate(template)


def test_describe_splits_ownership_from_custom_metadata_and_flags_mismatches() -> None:
    template = PathTemplate("{experiment}/{sample}/*")
    matched = describe("EXP42/S7/run.csv", path_template=template,
                       label_template="{sample} {stem}",
                       fixed_metadata={"user_id": "alice", "lab": "L1", "site": "north"})
    assert matched.label == "S7 run"
    assert matched.ownership == {"experiment": "EXP42", "user": "alice", "lab": "L1"}
    assert matched.custom_metadata == {"sample": "S7", "site": "north", "template_match": "yes"}
    assert matched.template_matched is True

    unmatched = describe("loose.csv", path_template=template, label_template="{sample} {stem}",
                         fixed_metadata={"user_id": "alice"})
    assert unmatched.label == "loose.csv"  # the label needed {sample}: falls back to the name
    assert unmatched.ownership == {"user": "alice"}
    assert unmatched.custom_metadata == {"template_match": "no"}

    plain = describe("a/b.txt", path_template=None, label_template="{parent}-{ext}",
                     fixed_metadata={})
    assert plain.label == "a-txt" and plain.template_matched is None
    assert "template_match" not in plain.custom_metadata


def test_template_fields_win_over_fixed_metadata() -> None:
    described = describe("EXP9/x.csv", path_template=PathTemplate("{experiment}/*"),
                         label_template="{experiment}", fixed_metadata={"experiment": "EXP1"})
    assert described.ownership["experiment"] == "EXP9" and described.label == "EXP9"


def test_label_templates_are_checked_against_what_the_rule_provides() -> None:
    check_label_template("{stem} {sample}", known={"sample"})
    with pytest.raises(ValidationError, match="sample"):
        check_label_template("{stem} {sample}", known=set())
    with pytest.raises(ValidationError, match="not valid"):
        check_label_template("{stem", known=set())
    with pytest.raises(ValidationError, match="plain names"):
        check_label_template("{0}", known=set())
