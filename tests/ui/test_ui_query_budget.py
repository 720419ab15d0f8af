"""The window's search says so when a query runs past its time budget (issue #14)."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import wait_idle

from app.core import query as querylang
from app.core.models import ValueDataPoint
from app.service import BenchService

STOPPED = "the query ran longer than its 1e-09-second budget and was stopped"


def test_a_search_over_its_time_budget_shows_why(qtbot: Any, window: Any,
                                                 service: BenchService) -> None:
    service.submit_many([ValueDataPoint(label=f"run-{i}", value=i) for i in range(3000)])
    window.refresh()
    wait_idle(qtbot, window)
    service.store.query_seconds = 1e-9  # spent by the first look at the clock
    try:
        bar = window.filter_bar
        # A quick search (full text) that matches every row, so the statement reads them
        # all and meets the budget; the status bar says why.
        bar.search.setText("run")
        qtbot.waitUntil(lambda: STOPPED in window.statusBar().currentMessage(), timeout=10_000)
        assert window.statusBar().currentMessage().startswith("Search failed: ")
        bar.search.clear()
        bar.advanced_toggle.setChecked(True)  # an advanced query: said under the field
        bar.advanced.setText('{"value": {"$gte": 0}}')
        bar.apply()
        qtbot.waitUntil(lambda: STOPPED in bar.advanced_error.text(), timeout=10_000)
    finally:
        service.store.query_seconds = querylang.DEFAULT_TIME_BUDGET_SECONDS
    wait_idle(qtbot, window)
