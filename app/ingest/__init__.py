"""Folder watching: instrument output captured automatically, once, when complete.

Qt-free. ``rules`` (what to watch, persisted in the ``watch`` config section),
``templates`` (path and label conventions -> metadata), ``ledger`` (what was captured),
``completeness`` (quiet periods, lock tests, marker files), ``profiles`` (how an
instrument says an acquisition is finished; plugins), ``openfiles`` (who holds a file open
for writing), ``scanner`` (streaming walks),
``watcher`` (one worker per rule: events as hints, scans as truth), ``component`` (the
``benchdata run`` component) and ``cli`` (``benchdata watch ...``). See docs/watching.md.
"""
