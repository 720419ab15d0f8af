"""Completeness profiles, each on real files, then with the real watcher.

Instruments are played by threads and subprocesses writing real files at their own pace;
the tests wait for conditions (a status, an event), never for time to pass.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import ValidationError
from app.ingest import openfiles
from app.ingest.component import IngestComponent
from app.ingest.profiles import (
    BUILTIN,
    Candidate,
    HeldOpenProfile,
    MarkerProfile,
    MicroManagerProfile,
    make_profile,
    profile_names,
)
from app.ingest.rules import WatchRule
from app.ingest.scanner import list_dataset
from app.extract.component import ExtractComponent
from app.extract.worker import ExtractSettings
from app.service import BenchService
from tests.ingest.conftest import FAST, Harness, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

Start = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]


def folder_candidate(root: Path, rel: str) -> Candidate:
    """A dataset folder as the watcher hands it to a profile (listed by the scanner)."""
    rule = WatchRule(id="t", path=str(root), datasets=True)
    listing = list_dataset(root, rule, rel)
    return Candidate(root / rel, rel, True, tuple(listing.files))


def write_bruker(folder: Path, *, fid: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "acqus").write_text("##TITLE= Parameter file\n##$PULPROG= <zg30>\n##$NS= 16\n")
    (folder / "pulseprogram").write_text(";zg30\n#include <Avance.incl>\n")
    if fid:
        (folder / "fid").write_bytes(b"\x00\x01" * 512)


def holder(path: Path) -> subprocess.Popen[str]:
    """A separate process that opens ``path`` for writing, writes, and keeps it open until
    its stdin is closed (an instrument holding its output file)."""
    script = textwrap.dedent("""
        import sys
        with open(sys.argv[1], "wb") as out:
            out.write(b"held" * 256)
            out.flush()
            print("open", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


# -- each profile on real files ------------------------------------------------------


def test_the_registry_lists_the_built_ins_and_refuses_unknown_names_and_options() -> None:
    assert profile_names()[:len(BUILTIN)] == list(BUILTIN)
    with pytest.raises(ValidationError, match="no completeness profile 'nope' is installed"):
        make_profile("nope", {})
    with pytest.raises(ValidationError, match="unknown option colour"):
        make_profile("quiet", {"colour": "red"})
    with pytest.raises(ValidationError, match="give the files a complete dataset holds"):
        make_profile("dataset", {})
    with pytest.raises(ValidationError, match="yes or no"):
        make_profile("marker", {"capture_markers": "maybe"})
    with pytest.raises(ValidationError, match="only use {name} and {stem}"):
        make_profile("marker", {"marker": "{date}.done"})


def test_bruker_nmr_waits_for_each_required_file(tmp_path: Path) -> None:
    profile = make_profile("bruker-nmr", {})
    assert profile.folders
    experiment = tmp_path / "sample" / "1"
    write_bruker(experiment, fid=False)
    verdict = profile.check(folder_candidate(tmp_path, "sample/1"))
    assert not verdict.complete and verdict.waiting_for == "`fid` or `ser`"
    (experiment / "ser").write_bytes(b"\x00" * 64)  # a 2D experiment: ser instead of fid
    assert profile.check(folder_candidate(tmp_path, "sample/1")).complete
    (experiment / "pulseprogram").unlink()
    assert profile.check(folder_candidate(tmp_path, "sample/1")).waiting_for == "`pulseprogram`"
    # The files must be in the experiment folder itself, not deeper (a wrong depth shows).
    assert profile.check(folder_candidate(tmp_path, "sample")).waiting_for == \
        "`acqus`, `pulseprogram` and `fid` or `ser`"


def test_the_dataset_profile_takes_globs_and_alternatives(tmp_path: Path) -> None:
    profile = make_profile("dataset", {"require": "*.raw, meta/info.json; a.txt|b.txt"})
    run = tmp_path / "run1"
    (run / "meta").mkdir(parents=True)
    (run / "deep").mkdir()
    (run / "deep" / "scan.RAW").write_bytes(b"1")  # patterns are case-insensitive
    assert profile.check(folder_candidate(tmp_path, "run1")).waiting_for == \
        "`meta/info.json` and `a.txt` or `b.txt`"
    (run / "meta" / "info.json").write_text("{}")
    (run / "b.txt").write_text("b")
    assert profile.check(folder_candidate(tmp_path, "run1")).complete
    assert "`*.raw`, `meta/info.json` and `a.txt` or `b.txt`" in profile.describe()


def test_micromanager_waits_until_metadata_txt_is_closed_json(tmp_path: Path) -> None:
    profile = make_profile("micromanager", {})
    acquisition = tmp_path / "acq_1"
    (acquisition / "Pos0").mkdir(parents=True)
    (acquisition / "acq_MMStack_Pos0.ome.tif").write_bytes(b"II*\x00")
    assert profile.check(folder_candidate(tmp_path, "acq_1")).waiting_for == "`metadata.txt`"
    metadata = acquisition / "Pos0" / "metadata.txt"
    # Written as Micro-Manager does: the summary, frame after frame, the closing brace last.
    partial = '{\n"Summary": {"Prefix": "acq"},\n"FrameKey-0-0-0": {"Frame": 0}'
    metadata.write_text(partial)
    verdict = profile.check(folder_candidate(tmp_path, "acq_1"))
    assert verdict.waiting_for == "`Pos0/metadata.txt` to be finished (its JSON is not closed yet)"
    metadata.write_text(partial + "\n}\n")
    assert profile.check(folder_candidate(tmp_path, "acq_1")).complete


def test_micromanager_counts_braces_in_metadata_too_big_to_parse(tmp_path: Path) -> None:
    profile = MicroManagerProfile({})
    profile.PARSE_LIMIT = 16  # type: ignore[misc] - a big file without writing one
    acquisition = tmp_path / "acq_2"
    acquisition.mkdir()
    frames = ",\n".join(f'"FrameKey-{i}-0-0": {{"Frame": {i}}}' for i in range(50))
    (acquisition / "acq_metadata.txt").write_text("{\n" + frames)
    assert not profile.check(folder_candidate(tmp_path, "acq_2")).complete
    (acquisition / "acq_metadata.txt").write_text("{\n" + frames + "\n}")
    assert profile.check(folder_candidate(tmp_path, "acq_2")).complete


def test_thermo_epu_needs_the_session_file_and_every_images_metadata(tmp_path: Path) -> None:
    profile = make_profile("thermo-epu", {})
    session = tmp_path / "session1"
    data = session / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)
    (data / "FoilHole_1_Data_2_3_20260101_120000.mrc").write_bytes(b"m")
    (data / "FoilHole_1_Data_2_3_20260101_120000_Fractions.tiff").write_bytes(b"t")
    assert profile.check(folder_candidate(tmp_path, "session1")).waiting_for == "`EpuSession.dm`"
    (session / "EpuSession.dm").write_text("<EpuSessionXml/>")
    assert profile.check(folder_candidate(tmp_path, "session1")).waiting_for == \
        "`Images-Disc1/GridSquare_1/Data/FoilHole_1_Data_2_3_20260101_120000.xml`"
    (data / "FoilHole_1_Data_2_3_20260101_120000.xml").write_text("<MicroscopeImage/>")
    assert profile.check(folder_candidate(tmp_path, "session1")).complete


def test_marker_templates_and_marker_patterns(tmp_path: Path) -> None:
    per_file = make_profile("marker", {})
    data = tmp_path / "run.raw"
    data.write_bytes(b"1")
    assert per_file.check(Candidate(data, "run.raw", False)).waiting_for == "`run.raw.done`"
    assert per_file.ignores("run.raw.done") and not per_file.ignores("run.raw")
    (tmp_path / "run.raw.done").write_text("")
    assert per_file.check(Candidate(data, "run.raw", False)).complete

    pattern = MarkerProfile({"marker": "*.complete"})
    assert pattern.check(Candidate(data, "run.raw", False)).waiting_for == \
        "a marker matching `*.complete`"
    pattern._FOLDER_TTL_S = 0.0  # type: ignore[misc] - look again at once
    (tmp_path / "ACQUISITION.COMPLETE").write_text("")
    assert pattern.check(Candidate(data, "run.raw", False)).complete
    assert pattern.ignores("acquisition.complete")
    assert not make_profile("marker", {"marker": "*.complete", "capture_markers": "yes"}
                            ).ignores("acquisition.complete")


def test_held_open_waits_for_the_writing_process_to_close_the_file(tmp_path: Path) -> None:
    profile = HeldOpenProfile({})
    profile._table = openfiles.OpenFileTable(ttl=0.0)
    target = tmp_path / "scan.raw"
    proc = holder(target)
    try:
        verdict = profile.check(Candidate(target, "scan.raw", False))
        assert not verdict.complete
        assert verdict.waiting_for == f"`scan.raw` to be closed by process {proc.pid} (python3)" \
            or verdict.waiting_for.startswith(f"`scan.raw` to be closed by process {proc.pid}")
    finally:
        release(proc)
    with open(target, "rb"):  # readers do not count
        assert profile.check(Candidate(target, "scan.raw", False)).complete


def test_held_open_falls_back_to_the_quiet_period_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "scan.raw"
    target.write_bytes(b"1")
    profile = HeldOpenProfile({})
    on_share = profile.check(Candidate(target, "scan.raw", False, on_network_share=True))
    assert on_share.complete and "network share" in on_share.note
    # Processes of the file's owner that cannot be looked into: the answer is not known.
    snapshot = openfiles.OpenFiles({}, frozenset({target.stat().st_uid}), 0.0)
    monkeypatch.setattr(openfiles, "take_snapshot", lambda now=None: snapshot)
    hidden = HeldOpenProfile({}).check(Candidate(target, "scan.raw", False))
    assert hidden.complete and "cannot be looked into (no permission)" in hidden.note
    monkeypatch.setattr(openfiles.sys, "platform", "darwin")
    elsewhere = HeldOpenProfile({}).check(Candidate(target, "scan.raw", False))
    assert elsewhere.complete and "cannot be seen on darwin" in elsewhere.note


def test_the_rule_says_in_one_sentence_what_it_waits_for(tmp_path: Path) -> None:
    quiet = WatchRule(id="a", path=str(tmp_path))
    assert quiet.describe_completeness() == "A file is complete when it has not changed for 2 s."
    bruker = WatchRule(id="b", path=str(tmp_path), profile="bruker-nmr", dataset_depth=2,
                       quiet_seconds=5)
    assert bruker.folder_units and not bruker.datasets
    assert bruker.describe_completeness() == (
        "Each folder 2 levels below the watched folder is one dataset (one zip archive); it is "
        "complete when it is a Bruker NMR experiment holding `acqus`, `pulseprogram` and "
        "`fid` or `ser`, and nothing in it has changed for 5 s.")
    marker = WatchRule(id="c", path=str(tmp_path), profile="marker", lock_test=True)
    assert marker.describe_completeness() == (
        "A file is complete when its marker `{name}.done` exists, no other program has it "
        "locked, and it has not changed for 2 s.")
    assert not marker.accepts_file("run.raw.done") and marker.accepts_file("run.raw")


# -- with the real watcher -----------------------------------------------------------


def test_a_bruker_folder_written_file_by_file_is_captured_once_when_complete(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    """TopSpin writes the parameters first and the FID last, with pauses, one longer than
    the quiet period: the folder is quiet but not complete, and must not be captured."""
    h = start_watch(profile="bruker-nmr", dataset_depth=2, quiet_seconds=0.6,
                    label_template="NMR {name}")
    h.wait_first_scan()
    experiment = watched / "ethylbenzene" / "10"
    pace = threading.Event()  # the instrument's own pace, shorter than the quiet period
    failures: list[BaseException] = []

    def topspin() -> None:
        try:
            experiment.mkdir(parents=True)
            (experiment / "acqus").write_text("##TITLE= Parameter file\n##$NUC1= <1H>\n"
                                              "##$PULPROG= <zg30>\n")
            pace.wait(0.3)
            (experiment / "audita.txt").write_text("acquisition started\n")
            pace.wait(0.3)
            (experiment / "pulseprogram").write_text(";zg30\n")
            # A long pause before the FID (the acquisition itself): the folder is quiet
            # but incomplete; the writer carries on once the watcher says what it waits for.
            wait_for(lambda: h.status().waiting_for.get("ethylbenzene/10") == "`fid` or `ser`",
                     what="the status to say it waits for the fid")
            with open(experiment / "fid", "wb") as fid:
                for block in range(6):
                    fid.write(bytes([block]) * 4096)
                    fid.flush()
                    pace.wait(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    writer = threading.Thread(target=topspin)
    writer.start()
    writer.join(60)
    assert not failures, failures
    assert h.captured() == []  # nothing while it was incomplete
    [datapoint] = h.wait_captured(1, "ethylbenzene/10")
    assert datapoint.label == "NMR 10" and datapoint.filename == "10.zip"
    with service.open_file(datapoint.datapoint_id) as stored:
        archive = zipfile.ZipFile(io.BytesIO(stored.read()))
    assert sorted(archive.namelist()) == ["acqus", "audita.txt", "fid", "pulseprogram"]
    assert archive.read("acqus").startswith(b"##TITLE= Parameter file")
    assert archive.read("fid") == (experiment / "fid").read_bytes()
    assert h.status().waiting_for == {}
    # Its acqus fields become searchable once the extractor has read the dataset (#16).
    worker = ExtractComponent(service, ExtractSettings(poll_seconds=0.05))
    worker.start()
    try:
        wait_for(lambda: "extracted.format" in service.get(datapoint.datapoint_id)
                 .custom_metadata, what="the extracted acqus fields", timeout=60)
    finally:
        worker.stop()
    assert [d.datapoint_id for d in service.search("zg30").items] == [datapoint.datapoint_id]
    assert service.count({"custom_metadata.extracted.nucleus": "1H"}) == 1

    h.rescan_and_wait()
    h.stop()
    # A restart captures nothing again (the ledger).
    again = Harness(IngestComponent(service, [h.rule], options=FAST), h.rule)
    again.component.start()
    try:
        again.wait_first_scan()
        again.rescan_and_wait()
        assert again.captured() == [] and service.count() == 1
    finally:
        again.stop()


@pytest.mark.parametrize("marker_first", [True, False], ids=["marker-before", "marker-after"])
def test_a_marker_before_or_after_the_data(
        start_watch: Start, watched: Path, service: BenchService, marker_first: bool) -> None:
    h = start_watch(profile="marker", quiet_seconds=0.4)
    h.wait_first_scan()
    data = watched / "run7.raw"
    if marker_first:
        # The marker is already there: the data is still complete only once quiet.
        (watched / "run7.raw.done").write_text("")
        with open(data, "wb") as out:
            for block in range(5):
                out.write(bytes([block]) * 1000)
                out.flush()
                threading.Event().wait(0.15)  # the instrument's pace (< quiet period)
    else:
        data.write_bytes(bytes(5000))
        wait_for(lambda: h.status().waiting_for.get("run7.raw") == "`run7.raw.done`",
                 what="the status to say it waits for the marker")
        assert h.captured() == []
        (watched / "run7.raw.done").write_text("")
    [datapoint] = h.wait_captured(1, "run7.raw")
    assert datapoint.size_bytes == 5000
    h.rescan_and_wait()
    assert [e.rel_path for e in h.of_kind("captured")] == ["run7.raw"]  # never the marker
    assert service.count() == 1


def test_held_open_captures_when_the_instrument_closes_the_file(
        start_watch: Start, watched: Path) -> None:
    h = start_watch(profile="held-open", quiet_seconds=0.2)
    h.wait_first_scan()
    target = watched / "acquisition.raw"
    proc = holder(target)
    try:
        what = wait_for(lambda: h.status().waiting_for.get("acquisition.raw"),
                        what="the status to say it waits for the writer")
        assert what.startswith(f"`acquisition.raw` to be closed by process {proc.pid}")
        (watched / "other.raw").write_bytes(b"closed at once")
        h.wait_captured(1, "other.raw")  # the held file holds back nothing else
        assert h.captured("acquisition.raw") == []
    finally:
        release(proc)
    [datapoint] = h.wait_captured(1, "acquisition.raw")
    assert datapoint.size_bytes == 1024 and h.status().note == ""


def test_a_micromanager_acquisition_waits_for_its_metadata_to_close(
        start_watch: Start, watched: Path) -> None:
    h = start_watch(profile="micromanager", quiet_seconds=0.3)
    h.wait_first_scan()
    acquisition = watched / "cells_1"
    acquisition.mkdir()
    (acquisition / "cells_MMStack_Pos0.ome.tif").write_bytes(b"II*\x00" + bytes(100))
    (acquisition / "metadata.txt").write_text('{"Summary": {"Frames": 1}')
    wait_for(lambda: "to be finished" in h.status().waiting_for.get("cells_1", ""),
             what="the status to say the metadata is not closed")
    assert h.captured() == []
    with open(acquisition / "metadata.txt", "a") as metadata:
        metadata.write("\n}\n")
    h.wait_captured(1, "cells_1")


def test_a_profile_that_is_not_installed_stops_only_its_own_folder(
        service: BenchService, tmp_path: Path) -> None:
    broken_folder, good_folder = tmp_path / "broken", tmp_path / "good"
    broken_folder.mkdir()
    good_folder.mkdir()
    (broken_folder / "a.raw").write_text("never captured by a profile nobody installed")
    broken = WatchRule(id="broken", path=str(broken_folder), profile="uninstalled-thing",
                       quiet_seconds=0.2, observer="native")
    good = WatchRule(id="good", path=str(good_folder), quiet_seconds=0.2, observer="native")
    component = IngestComponent(service, [broken, good], options=FAST)
    h = Harness(component, good)
    component.start()
    try:
        (good_folder / "b.raw").write_text("captured")
        h.wait_captured(1, "b.raw")
        problems = wait_for(lambda: component.worker("broken").status().problems,
                            what="the broken rule to report its profile")
        assert "no completeness profile 'uninstalled-thing' is installed" in problems["."]
        assert service.count() == 1
    finally:
        component.stop()


# -- plugins -------------------------------------------------------------------------

PLUGIN = '''
"""A third party's completeness profile: a file is complete when it ends with END."""
from app.ingest.profiles import COMPLETE, Profile, waiting


class EndsWithEnd(Profile):
    """Complete when the file's last line is END."""

    options = ("word",)

    def __init__(self, options):
        super().__init__(options)
        self.word = options.get("word", "END").encode()

    def describe(self):
        return f"its last line is `{self.word.decode()}`"

    def check(self, candidate):
        if candidate.path.read_bytes().rstrip().endswith(self.word):
            return COMPLETE
        return waiting(f"`{self.word.decode()}` at the end of `{candidate.path.name}`")


def broken(options):
    raise RuntimeError("this plugin is broken")


class Fussy(Profile):
    """Fails on files named bad*, and says nothing else is missing."""

    def check(self, candidate):
        if candidate.path.name.startswith("bad"):
            raise RuntimeError("cannot make sense of " + candidate.path.name)
        return COMPLETE
'''


def install_plugin(site: Path) -> Path:
    """A package installed the way pip would leave it: a module and its dist-info with
    an ``entry_points.txt``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "bench_endprofile.py").write_text(PLUGIN)
    info = site / "bench_endprofile-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-endprofile\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[benchdata.completeness]\nends-with-end = bench_endprofile:EndsWithEnd\n"
        "broken-plugin = bench_endprofile:broken\nfussy = bench_endprofile:Fussy\n")
    return site


def test_a_plugin_profile_from_an_installed_package_drives_the_watcher(
        start_watch: Start, watched: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(install_plugin(tmp_path / "site")))
    assert "ends-with-end" in profile_names()
    rule = WatchRule(id="p", path=str(watched), profile="ends-with-end")
    assert rule.describe_completeness() == \
        "A file is complete when its last line is `END`, and it has not changed for 2 s."
    with pytest.raises(ValidationError, match="failed to start: this plugin is broken"):
        make_profile("broken-plugin", {})

    h = start_watch(profile="ends-with-end", quiet_seconds=0.2)
    h.wait_first_scan()
    log = watched / "run.log"
    log.write_text("step 1\n")
    assert wait_for(lambda: h.status().waiting_for.get("run.log")) == \
        "`END` at the end of `run.log`"
    with open(log, "a") as out:
        out.write("step 2\nEND\n")
    [datapoint] = h.wait_captured(1, "run.log")
    assert datapoint.size_bytes == len("step 1\nstep 2\nEND\n")


def test_the_cli_lists_and_uses_a_plugin_profile_in_a_fresh_process(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]),
           "BENCHDATA_HOME": str(tmp_path / "home")}

    def benchdata(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", *args], env=env, text=True,
                              capture_output=True, timeout=120)

    listed = benchdata("watch", "profiles", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {item["name"]: item for item in json.loads(listed.stdout)}
    assert names["ends-with-end"] == {"name": "ends-with-end", "builtin": False,
                                      "summary": "Complete when the file's last line is END."}
    folder = tmp_path / "out"
    added = benchdata("watch", "add", str(folder), "--profile", "ends-with-end",
                      "--profile-option", "word=DONE", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["profile_options"] == {"word": "DONE"}
    shown = benchdata("watch", "list")
    assert "when its last line is `DONE`, and it has not changed for 2 s." in shown.stdout
    bad = benchdata("watch", "edit", "out", "--profile-option", "colour=red")
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("error: completeness profile 'ends-with-end': unknown option "
                                  "colour; this profile takes word")


def test_watch_list_shows_what_a_running_folder_waits_for(
        service: BenchService, tmp_path: Path) -> None:
    """``watch list`` in another process reads the status the running watcher publishes."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.ingest.rules import add_rule

    folder = tmp_path / "nmr"
    write_bruker(folder / "sample" / "2", fid=False)
    rule = add_rule(service.paths, str(folder), profile="bruker-nmr", dataset_depth=2,
                    quiet_seconds=0.2, observer="native")
    component = IngestComponent(service, [rule], options=FAST)
    component.start()
    try:
        wait_for(lambda: component.health_board.read().get(rule.id) and
                 component.health_board.read()[rule.id].status.waiting_for,
                 what="the waiting reason to be published")
        result = CliRunner().invoke(cli, ["--data-dir", str(service.paths.data_dir), "watch",
                                          "list"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert "      sample/2: waiting for `fid` or `ser`" in result.stdout
        assert "one dataset (one zip archive); it is complete when it is a Bruker NMR " \
               "experiment holding `acqus`" in result.stdout
        listed = CliRunner().invoke(cli, ["--data-dir", str(service.paths.data_dir), "watch",
                                          "list", "--json"], catch_exceptions=False)
        [item] = json.loads(listed.stdout)
        assert item["waiting_for"] == {"sample/2": "`fid` or `ser`"}
        assert item["profile"] == "bruker-nmr"
    finally:
        component.stop()


def test_a_profile_failing_on_one_file_never_stops_the_folder(
        start_watch: Start, watched: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(install_plugin(tmp_path / "site")))
    h = start_watch(profile="fussy", quiet_seconds=0.2)
    h.wait_first_scan()
    (watched / "bad.raw").write_bytes(b"1")
    problem = h.wait_event("problem", "bad.raw")
    assert problem.message == "completeness profile 'fussy' failed: cannot make sense of bad.raw"
    (watched / "good.raw").write_bytes(b"2")
    h.wait_captured(1, "good.raw")
    assert h.captured("bad.raw") == [] and "bad.raw" in h.status().problems


def test_a_name_that_is_not_utf8_waits_and_is_published_as_text(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    h = start_watch(profile="marker", quiet_seconds=0.2)
    h.wait_first_scan()
    name = os.fsdecode(b"r\xe9sultat.raw")
    (watched / name).write_bytes(b"latin-1 instrument")
    waiting_for = wait_for(lambda: h.status().waiting_for, what="the file to wait for its marker")
    assert waiting_for == {"r\\xe9sultat.raw": "`r\\xe9sultat.raw.done`"}
    h.component.health_board.publish(h.component.status())  # valid text for the store
    published = h.component.health_board.read()[h.rule.id].status
    assert published.waiting_for == waiting_for
    (watched / (name + ".done")).write_text("")
    [datapoint] = h.wait_captured(1)
    assert datapoint.filename == "r\\xe9sultat.raw"


def test_held_open_where_open_files_cannot_be_seen_says_so_in_the_status(
        start_watch: Start, watched: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openfiles, "supported", lambda: "open files cannot be seen on win32")
    h = start_watch(profile="held-open", quiet_seconds=0.2)
    h.wait_first_scan()
    (watched / "scan.raw").write_bytes(b"captured after the quiet period alone")
    h.wait_captured(1, "scan.raw")
    assert h.status().note == ("held-open cannot be checked (open files cannot be seen on "
                               "win32); complete after the quiet period")
