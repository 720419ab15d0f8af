"""The tests' one way to wait for a condition (never a blind sleep).

``from tests.support.waiting import wait_until`` (``tests`` is a package; pytest puts the
checkout on ``sys.path``).
GUI tests wait with pytest-qt's ``qtbot.waitUntil`` instead, which keeps Qt's event loop
running while it waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """The condition did not hold in time: a test failure (an AssertionError), and a
    TimeoutError for fixtures that add context (the servers' logs) before re-raising."""


def wait_until(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition",
               interval: float = 0.05, *,
               ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``condition`` until it returns something truthy and return that; raise
    :class:`WaitTimeout` naming ``what`` after ``timeout`` seconds. Exceptions of the
    ``ignoring`` types (say, a server that is not listening yet) count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except ignoring:
            result = None  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
