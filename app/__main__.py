"""``python -m app``: start Bench Data Manager (the desktop window)."""

from app.cli import main

if __name__ == "__main__":
    main(["gui"])
