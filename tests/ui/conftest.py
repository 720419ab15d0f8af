"""Fixtures for the window's tests: a real local store, the real widgets, offscreen."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.service import BenchService  # noqa: E402

#: The README's screenshots are refreshed only on request
#: (``BENCHDATA_SCREENSHOTS=docs python -m pytest tests/ui``); ordinary runs write them to a
#: temporary folder so the tests never dirty the working tree.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
               if os.environ.get("BENCHDATA_SCREENSHOTS") == "docs"
               else Path(tempfile.gettempdir()) / "benchdata-screenshots")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "store") as bench:
        yield bench


@pytest.fixture
def window(qtbot: Any, service: BenchService) -> Iterator[Any]:
    from app.ui.application import build_window, make_application

    app = make_application([])
    assert app is not None
    win = build_window(service)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    wait_idle(qtbot, win)
    yield win
    if win.dialog is not None:
        win.dialog.close()
    win.capture_queue.close(timeout=30)  # a failed test must not hang in "close anyway?"
    win.close()
    win.context.tasks.shutdown()


def wait_idle(qtbot: Any, win: Any, timeout: int = 10_000) -> None:
    """Until no background task is running and the table's query has settled."""
    qtbot.waitUntil(lambda: win.context.tasks.idle() and not win.model.loading, timeout=timeout)


def grab(widget: Any, name: str) -> Path:
    from PySide6.QtWidgets import QApplication

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    QApplication.processEvents()  # let layouts settle before the picture is taken
    path = SCREENSHOTS / name
    assert widget.grab().save(str(path))
    return path


__all__ = ["grab", "wait_idle"]
