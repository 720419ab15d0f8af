"""The sync tests' fixtures: real SeaweedFS and nx-27017 servers (see ``tests/servers.py``)
and MADSci 0.8.1 in its own venv (see ``tests/madsci_env.py``)."""

from madsci_env import madsci_python  # noqa: F401  (fixture)
from servers import central, mongo, private_central, seaweed  # noqa: F401  (fixtures)
