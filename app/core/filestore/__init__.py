"""The local content-addressed file store: every captured file, stored once, by SHA-256.

Import :class:`FileStore`, :class:`BlobInfo` and ``ProgressCallback`` from here. The
package's modules, each one part of the durability story (DESIGN.md, "Never lose data"):

* ``store``: :class:`FileStore`, the blob's way in (copy, fsync, rename, directory fsync)
  and out (open, verify, remove);
* ``streamcopy``: the copy loop, hashing on a helper thread, write-back hints, chunk sizes;
* ``sources``: the captured file, opened read-only and refused if it changed meanwhile;
* ``temp``: ``tmp/<random>.part`` files and the cleanup of what a crash left;
* ``layout``: where blobs live, read-only, and the durable directory creation and rename;
* ``holds``: blobs held by captures in flight against removal, across processes;
* ``locks``: the advisory (flock) locks behind holds, temp files and capture notes;
* ``messages``: what each failure tells the operator.
"""

from __future__ import annotations

from app.core.filestore.store import BlobInfo, FileStore
from app.core.filestore.streamcopy import ProgressCallback

__all__ = ["BlobInfo", "FileStore", "ProgressCallback"]
