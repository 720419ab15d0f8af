"""``python -m app``: start Bench Data Manager (the desktop window); with arguments, the
``benchdata`` CLI (``python -m app doctor``, ``python -m app run`` …)."""

import sys

from app.cli import main

if __name__ == "__main__":
    main(sys.argv[1:] or ["gui"])
