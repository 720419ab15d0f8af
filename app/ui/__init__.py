"""The desktop window (PySide6). Everything Qt lives under this package.

``run_gui()`` is what ``python -m app`` and ``benchdata gui`` call; the heavy imports
happen inside it, so importing ``app.ui`` stays cheap.
"""

from __future__ import annotations

from typing import Any, Optional


def run_gui(data_dir: Optional[str] = None, argv: Optional[list[str]] = None,
            **options: Any) -> int:
    from app.ui.application import run

    return run(data_dir=data_dir, argv=argv, **options)


__all__ = ["run_gui"]
