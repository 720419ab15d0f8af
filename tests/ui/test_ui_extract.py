"""An OME-TIFF dropped on the window: its header is extracted in the background (the
worker the window's runner hosts), the details show its dimensions once it is, and a query
on custom_metadata.extracted finds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from tests.ui.test_ui_window import drop, tree_text

from tests.support import extract_samples as samples
from app.extract.component import ExtractComponent
from app.extract.worker import ExtractSettings
from app.service import BenchService


def test_a_dropped_ome_tiff_shows_its_dimensions(qtbot: Any, window: Any, tmp_path: Path,
                                                  service: BenchService) -> None:
    worker = ExtractComponent(service, ExtractSettings(poll_seconds=0.05))
    worker.start()
    try:
        path = samples.write_ome_tiff(tmp_path / "cells.ome.tif")
        drop(window, [path])
        qtbot.waitUntil(lambda: window.dialog is not None
                        and window.dialog.capture_button.isEnabled())
        with qtbot.waitSignal(window.captured, timeout=10_000) as captured:
            qtbot.mouseClick(window.dialog.capture_button, Qt.MouseButton.LeftButton)
        ident = captured.args[0][0]
        window.select_id(ident)
        # The window notices the worker's edit by itself (its poll) and shows it.
        qtbot.waitUntil(lambda: "Extracted" in tree_text(window.detail.facts),
                        timeout=60_000)
    finally:
        worker.stop()
    facts = tree_text(window.detail.facts)
    assert "Dimensions: Z 3 × C 2 × Y 24 × X 32" in facts
    assert "format: ome-tiff" in facts and "channel_names: DAPI, GFP" in facts
    assert "extracted.format" not in facts  # not repeated under Metadata
    found = service.query({"custom_metadata.extracted.format": "ome-tiff"}).items
    assert [d.datapoint_id for d in found] == [ident]
