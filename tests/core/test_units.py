"""Sizes read the same in the window and the CLI (binary units with IEC names)."""

from __future__ import annotations

import pytest

from app.core.units import human_size


@pytest.mark.parametrize(("size", "shown"), [
    (None, ""), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (1024 ** 2, "1.0 MiB"), (350 * 1024 ** 2, "350.0 MiB"), (3 * 1024 ** 3, "3.0 GiB"),
    (5 * 1024 ** 5, "5120.0 TiB"),
])
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_the_window_and_the_cli_use_the_same_function() -> None:
    from app.commands import output
    from app.ui import formatting

    assert formatting.human_size is human_size
    assert output.human_size is human_size
