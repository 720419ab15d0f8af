"""PyInstaller entry point of the ``benchdata`` console executable."""

from app.cli import main

if __name__ == "__main__":
    main()
