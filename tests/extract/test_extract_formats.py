"""Each built-in extractor on files the tests write, and a damaged file of each kind,
through the same function the extractor process answers with (``child.answer``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import extract_samples as samples
from app.core.tabular import read_table
from app.extract import child, registry
from app.extract.api import ERROR_KEY, MAX_FIELDS, to_metadata


@pytest.fixture(scope="module")
def extractors() -> list:
    return registry.usable(registry.load_all())


def fields(extractors: list, path: Path) -> dict[str, str]:
    reply = child.answer(extractors, path)
    assert "fields" in reply, reply
    return {key.removeprefix("extracted."): value for key, value in reply["fields"].items()}


def test_ome_tiff(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_ome_tiff(tmp_path / "cells.ome.tif"))
    assert got["format"] == "ome-tiff" and got["format_version"] == "OME 2016-06"
    assert got["extractor"] == "tiff"
    assert (got["ome.SizeX"], got["ome.SizeY"], got["ome.SizeZ"], got["ome.SizeC"]) == \
        ("32", "24", "3", "2")
    assert got["ome.Type"] == "uint16" and got["pixel_type"] == "uint16"
    assert got["ome.PhysicalSizeX"] == "0.108" and got["ome.PhysicalSizeXUnit"] == "µm"
    assert got["channels"] == "2" and got["channel_names"] == "DAPI, GFP"
    assert got["instrument.manufacturer"] == "Nikon" and got["instrument.model"] == "Ti2-E"
    assert got["objective.Model"] == "CFI Plan Apo 60x" and got["objective.LensNA"] == "1.4"
    assert got["acquisition_date"] == "2026-03-01T10:00:00"


def test_plain_tiff(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_tiff(tmp_path / "scan.tif"))
    assert got["format"] == "tiff" and (got["width"], got["height"]) == ("30", "20")
    assert got["pixel_type"] == "uint8"


def test_nexus(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_nexus(tmp_path / "run7.nxs"))
    assert got["format"] == "nexus" and got["format_version"] == "NeXus 4.4.3"
    assert got["definition"] == "NXmx" and got["start_time"] == "2026-03-01T10:00:00Z"
    assert got["sample_name"] == "lysozyme" and got["title"] == "lysozyme run 7"
    assert "NXentry" in got["nx_classes"] and "NXsample" in got["nx_classes"]
    assert "/entry/data/data 4x16x16 int32" in got["dataset_list"]


def test_plain_hdf5(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_hdf5(tmp_path / "trace.h5"))
    assert got["format"] == "hdf5" and got["datasets"] == "1" and got["groups"] == "1"
    assert got["dataset_list"] == "/raw/trace 100 float64"


def test_csv_uses_the_previews_sniffing(extractors: list, tmp_path: Path) -> None:
    path = samples.write_csv(tmp_path / "spectrum.csv")
    got = fields(extractors, path)
    table = read_table(path.read_text(encoding="utf-8"), path.name, row_limit=1000)
    assert table is not None and table.delimiter == ";"
    assert got["format"] == "csv" and got["delimiter"] == "semicolon"
    assert got["header_row"] == "true" and got["columns"] == "wavelength, absorbance, note"
    assert got["rows"] == "50" and got["column_count"] == "3"
    assert (got["range.wavelength.min"], got["range.wavelength.max"]) == ("400", "449")
    assert "range.note.min" not in got


def test_tsv_row_count_beyond_the_sample(extractors: list, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from app.extract.builtin import delimited

    monkeypatch.setattr(delimited, "SAMPLE_BYTES", 1024)
    path = tmp_path / "big.tsv"
    path.write_text("t\tv\n" + "".join(f"{i}\t{i * 2}\n" for i in range(2000)), encoding="utf-8")
    got = fields(extractors, path)
    assert got["format"] == "tsv" and got["delimiter"] == "tab" and got["rows"] == "2000"
    assert int(got["ranges_from_rows"]) < 2000


def test_jcamp_dx(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_jcamp(tmp_path / "benzoic.jdx"))
    assert got["format"] == "jcamp-dx" and got["format_version"] == "4.24"
    assert got["title"] == "Benzoic acid IR" and got["data_type"] == "INFRARED SPECTRUM"
    assert (got["x_units"], got["y_units"], got["points"]) == ("1/CM", "TRANSMITTANCE", "4")


def test_bruker_acqus(extractors: list, tmp_path: Path) -> None:
    got = fields(extractors, samples.write_acqus(tmp_path / "1"))
    assert got["format"] == "bruker-acqus" and got["format_version"] == "JCAMP-DX 5.0"
    assert (got["pulse_program"], got["nucleus"], got["scans"]) == ("zg30", "1H", "16")
    assert got["sfo1_mhz"] == "400.132471" and got["solvent"] == "CDCl3"
    assert got["temperature_k"] == "298" and got["date"].startswith("2026-03-01")
    assert "P" not in got  # arrays are not search fields


def test_png_and_jpeg_with_exif(extractors: list, tmp_path: Path) -> None:
    png = fields(extractors, samples.write_png(tmp_path / "plate.png"))
    assert (png["format"], png["width"], png["height"]) == ("png", "40", "30")
    jpeg = fields(extractors, samples.write_jpeg_with_exif(tmp_path / "bench.jpg"))
    assert (jpeg["format"], jpeg["width"], jpeg["height"]) == ("jpeg", "64", "48")
    assert jpeg["device"] == "Canon EOS R5" and jpeg["date"] == "2026:03:01 10:00:00"


def test_unknown_files_are_left_alone(extractors: list, tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01 nothing known")
    assert child.answer(extractors, path) == {"none": True}


@pytest.mark.parametrize("kind", samples.CORRUPT_KINDS)
def test_a_damaged_file_is_an_error_not_a_crash(extractors: list, tmp_path: Path,
                                                kind: str) -> None:
    reply = child.answer(extractors, samples.write_corrupt(kind, tmp_path))
    assert "error" in reply, reply
    assert reply["error"][ERROR_KEY]


def test_results_are_bounded_text() -> None:
    result = {"format": "x", "long": "y" * 5000, "list": list(range(100)), "flag": True,
              "ratio": 0.1 + 0.2, "many": {str(i): i for i in range(500)}}
    flat = to_metadata(result, "x")
    assert len(flat) <= MAX_FIELDS + 1
    assert all(isinstance(v, str) and len(v) <= 1000 for v in flat.values())
    assert flat["extracted.flag"] == "true" and flat["extracted.ratio"] == "0.3"
    assert flat["extracted.list"].endswith("(100 in all)")


def test_a_missing_library_says_not_installed(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path = samples.write_tiff(tmp_path / "scan.tif")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile -> ImportError
    reply = child.answer(registry.usable(registry.load_all()), path)
    assert "tifffile is not installed" in reply["error"][ERROR_KEY]


def test_a_zipped_bruker_experiment_gives_its_acqus_fields(extractors: list,
                                                           tmp_path: Path) -> None:
    import zipfile

    folder = tmp_path / "exp"
    samples.write_acqus(folder / "10")
    (folder / "10" / "fid").write_bytes(b"\x00\x01" * 100)
    (folder / "10" / "pulseprogram").write_text("; zg30\n", encoding="utf-8")
    archive = tmp_path / "exp.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:  # as ingest writes
        for member in sorted(folder.rglob("*")):
            bundle.write(member, member.relative_to(folder).as_posix())
    got = fields(extractors, archive)
    assert got["format"] == "bruker-acqus" and got["container"] == "zip"
    assert got["main_member"] == "10/acqus" and got["pulse_program"] == "zg30"
    assert got["members"] == "3" and "10/fid" in got["member_list"]
    assert got["extractor"] == "zip-dataset"


def test_a_zip_of_unknown_files_lists_its_members(extractors: list, tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "misc.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a.bin", b"\x00" * 10)
        bundle.writestr("inner.zip", b"PK\x05\x06" + b"\x00" * 18)
    got = fields(extractors, archive)
    assert got["format"] == "zip" and got["members"] == "2" and "container" not in got
