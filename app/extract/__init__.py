"""Header metadata extracted from captured files, in the background (issue 16).

* ``api`` — the extractor interface plug-ins implement, and how results become metadata;
* ``registry`` — the built-in extractors (``builtin/``) and the ``benchdata.extractors``
  entry point group;
* ``child`` — the process that runs extractors (bounded time and memory per file);
* ``process`` — the worker's handle on that process (timeout, restart after a crash);
* ``worker`` / ``component`` — reads ``app.core.extractqueue`` and writes the results as
  edits of the datapoints (``custom_metadata["extracted.<field>"]``), inside
  ``benchdata run``;
* ``cli`` — ``benchdata extract ID`` and ``benchdata formats``.

Qt-free; uses ``app.core`` and ``app.service``. See docs/extractors.md.
"""
