"""The ``benchdata`` commands, one module per group (mounted by ``app.cli.LAZY_SUBCOMMANDS``).

- ``context``: the per-invocation ``Context`` (the service, opened on first use) and the
  ownership options every capture and edit command takes;
- ``output``: how datapoints, matches and custody receipts are printed;
- ``capture``: ``add value | file``; ``datapoints``: ``get value save list query search
  edit delete export``; ``bench``: ``time-zone names info run gui``.

Nothing here is imported by ``app.cli`` until a command runs: ``benchdata --version`` loads
none of it (bench/bench_startup.py).
"""
