"""The sync engine: reconcile a bench's local store with central MongoDB and S3.

Qt-free. Modules, one concept each: ``settings`` (where the central store is), ``faults``
(what went wrong and what to do about it), ``outbox`` (local changes and their state,
surviving restarts), ``objects`` (S3 uploads, resumable and verified), ``documents``
(rows as MADSci documents), ``push``, ``pull``, ``engine`` (passes, the background loop,
backoff, quarantine), ``component`` (``benchdata run``) and ``cli`` (``benchdata sync``).
See ``docs/sync.md``.
"""
