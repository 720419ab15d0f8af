"""PyInstaller entry point of the ``benchdata-gui`` windowed executable (the desktop window)."""

import sys

from app.cli import main

if __name__ == "__main__":
    # `benchdata-gui --data-dir X` still works; anything else opens the window.
    main([*sys.argv[1:], "gui"])
