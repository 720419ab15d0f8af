"""Operating a bench: the single-instance lock, log files, ``doctor``, backup and restore.

Qt-free; uses ``app.core`` (and ``sync``/``app.ingest`` lazily, for ``doctor``).
"""
