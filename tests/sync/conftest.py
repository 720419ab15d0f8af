"""The sync tests' fixtures (the real servers are shared by the whole run: tests/conftest.py)
and MADSci 0.8.1 in its own venv (see ``tests/madsci_env.py``)."""

from madsci_env import madsci_python  # noqa: F401  (fixture)
