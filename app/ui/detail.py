"""The detail pane: everything about the selected datapoint, a preview, and its actions."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.ids import OWNERSHIP_FIELDS
from app.core.models import ValueDataPoint
from app.core.store import StoredDataPoint
from app.core.syncstate import SAFE_STATES, describe
from app.core.timestamps import format_canonical
from app.extract.api import PREFIX as EXTRACTED_PREFIX
from app.extract.api import extracted_of
from app.ui.context import UiContext
from app.ui.formatting import TYPE_NAMES, human_size, local_time
from app.ui.previews import Preview, QuickPlot, fill_json_tree, load_preview
from app.ui.resources import icon
from app.ui.tasks import describe_error

log = logging.getLogger(__name__)

#: Fields that say where a file is kept in the central object store.
_CENTRAL_FIELDS = ("bucket_name", "object_name", "storage_endpoint", "url", "public_endpoint",
                   "etag")


def _section(tree: QTreeWidget, title: str) -> QTreeWidgetItem:
    item = QTreeWidgetItem(tree, [title, ""])
    font = item.font(0)
    font.setBold(True)
    item.setFont(0, font)
    item.setFirstColumnSpanned(True)
    item.setExpanded(True)
    return item


def _row(parent: QTreeWidgetItem, key: str, value: Any, tooltip: str = "") -> QTreeWidgetItem:
    text = "" if value is None else str(value)
    item = QTreeWidgetItem(parent, [key, text])
    item.setToolTip(1, tooltip or text)
    return item


#: How a central copy was verified, in words (``app.core.custody.CentralHow``).
_VERIFIED_HOW = {
    "read-back": "its size and SHA-256, and the record naming it, read back after upload",
    "download-sha256": "downloaded here and its SHA-256 matched",
    "download-etag": "downloaded here and its size and ETag matched",
    "scrub": "a scrub found its size and SHA-256 as recorded",
    "scrub-deep": "a scrub downloaded it and its SHA-256 matched",
}


def _fill_custody(section: QTreeWidgetItem, receipt: dict[str, Any]) -> None:
    """The chain of custody: captured, uploaded, verified, scrubbed, safe to delete."""
    captured = receipt["captured"]
    if captured["here"]:
        _row(section, "Captured", f"{local_time(captured['at'])} on this bench",
             f"from {captured['source_path']}")
    else:
        _row(section, "Captured", "elsewhere (another bench or MADSci)")
    local = receipt["local_copy"]
    _row(section, "Copy on this bench", ("yes" if local["held"] else "no") + (
        f" ({local['how']}, {local_time(local['since'])})" if local["how"] else ""))
    uploaded = receipt["uploaded"]
    if uploaded:
        _row(section, "Uploaded", local_time(uploaded["at"]),
             f"to {uploaded['bucket']}/{uploaded['object_name']}")
    else:
        _row(section, "Uploaded", "not from this bench")
    verified = receipt["central_verified"]
    if verified:
        how = _VERIFIED_HOW.get(verified["how"], verified["how"])
        _row(section, "Central copy verified", f"{local_time(verified['at'])} — {how}", how)
    else:
        _row(section, "Central copy verified", receipt["central_problem"] or "not yet")
    scrub = receipt["last_scrub"] or {}
    _row(section, "Last verified by a scrub", "; ".join(
        f"{where} {local_time(facts['at'])}: {'intact' if facts['ok'] else 'PROBLEM'}"
        for where, facts in scrub.items()) or "never")
    _row(section, "Safe to delete from the instrument",
         "yes — the central copy is verified" if receipt["safe_to_delete"]
         else "no — no verified central copy yet")


class ImageView(QLabel):
    """An image scaled to fit, keeping its aspect ratio."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(120, 120)
        self._pixmap = QPixmap()

    def set_image(self, pixmap: QPixmap) -> None:
        self._pixmap = pixmap
        self._rescale()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap.isNull():
            self.clear()
            return
        self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))


class PreviewArea(QWidget):
    """Shows a :class:`Preview` with the widget that suits it."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.stack = QStackedWidget(self)
        self.message = QLabel("", self)
        self.message.setObjectName("placeholder")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.image = ImageView(self)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.table = QTableWidget(self)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.plot = QuickPlot(self)
        csv_split = QSplitter(Qt.Orientation.Vertical, self)
        csv_split.addWidget(self.plot)
        csv_split.addWidget(self.table)
        self.csv = csv_split
        self.json = QTreeWidget(self)
        for widget in (self.message, self.image, self.text, self.csv, self.json):
            self.stack.addWidget(widget)
        self.note = QLabel("", self)
        self.note.setObjectName("hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.note)
        self.kind = "none"

    def show_message(self, text: str) -> None:
        self.kind = "none"
        self.message.setText(text)
        self.note.setText("")
        self.stack.setCurrentWidget(self.message)

    def show_preview(self, preview: Preview) -> None:
        self.kind = preview.kind
        self.note.setText(preview.note)
        if preview.kind == "image" and preview.image is not None:
            self.image.set_image(QPixmap.fromImage(preview.image))
            self.stack.setCurrentWidget(self.image)
        elif preview.kind == "text":
            self.text.setPlainText(preview.text)
            self.stack.setCurrentWidget(self.text)
        elif preview.kind == "csv":
            self._fill_table(preview)
            self.plot.set_columns(preview.numeric)
            self.plot.setVisible(bool(preview.numeric))
            self.stack.setCurrentWidget(self.csv)
        elif preview.kind == "json":
            fill_json_tree(self.json, preview.value)
            self.stack.setCurrentWidget(self.json)
        else:
            self.kind = "none"
            self.message.setText(preview.note or "No preview")
            self.note.setText("")
            self.stack.setCurrentWidget(self.message)

    def _fill_table(self, preview: Preview) -> None:
        rows = preview.rows[:1000]
        self.table.clear()
        self.table.setColumnCount(len(preview.header))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(preview.header)
        for r, row in enumerate(rows):
            for c, cell in enumerate(row[:len(preview.header)]):
                self.table.setItem(r, c, QTableWidgetItem(cell))
        self.table.resizeColumnsToContents()


class DetailPane(QWidget):
    """Metadata, ownership (with names), file facts, the value and a preview of one datapoint."""

    edit_requested = Signal(str)
    delete_requested = Signal(list)
    #: The id whose details are now shown ("" when cleared).
    shown = Signal(str)
    #: The preview finished loading; argument: its kind.
    preview_shown = Signal(str)
    #: A one-line message for the status bar.
    message = Signal(str)

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("DetailPane")
        self._context = context
        self._stored: Optional[StoredDataPoint] = None
        self.receipt: Optional[dict[str, Any]] = None
        self._request = 0
        #: Without a central store, waiting reads "Local only", as in the table.
        self.central_configured = True
        #: Downloads a file that is only in the central store (set when sync runs).
        self.title = QLabel("Nothing selected", self)
        self.title.setObjectName("title")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle = QLabel("Select a datapoint to see its details, or drop files here "
                               "to capture them.", self)
        self.subtitle.setObjectName("subtitle")
        self.subtitle.setWordWrap(True)

        self.open_button = self._button("open", "Open", "Open with the system's application")
        self.save_button = self._button("save", "Save copy…", "Save a copy of the file or value")
        self.reveal_button = self._button("reveal", "Show in folder",
                                          "Show the original file in its folder")
        self.edit_button = self._button("edit", "Edit…", "Change label or metadata (F2)")
        self.delete_button = self._button("delete", "Delete", "Delete this datapoint (Del)")
        self.open_button.clicked.connect(self.open_external)
        self.save_button.clicked.connect(self.save_copy)
        self.reveal_button.clicked.connect(self.reveal)
        self.edit_button.clicked.connect(lambda: self._stored and self.edit_requested.emit(
            self._stored.datapoint_id))
        self.delete_button.clicked.connect(lambda: self._stored and self.delete_requested.emit(
            [self._stored.datapoint_id]))
        actions = QHBoxLayout()
        for button in (self.open_button, self.save_button, self.reveal_button, self.edit_button,
                       self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)

        self.tabs = QTabWidget(self)
        self.preview = PreviewArea(self)
        self.facts = QTreeWidget(self)
        self.facts.setColumnCount(2)
        self.facts.setHeaderLabels(["Field", "Value"])
        self.facts.setAlternatingRowColors(True)
        self.facts.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.facts.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tabs.addTab(self.preview, "Preview")
        self.tabs.addTab(self.facts, "Details")

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addLayout(actions)
        layout.addWidget(self.tabs, 1)
        self._enable_actions()

    def _button(self, icon_name: str, text: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(icon(icon_name))
        button.setText(text)
        button.setToolTip(tip)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        return button

    @property
    def stored(self) -> Optional[StoredDataPoint]:
        return self._stored

    @property
    def datapoint_id(self) -> Optional[str]:
        return self._stored.datapoint_id if self._stored else None

    # -- showing ---------------------------------------------------------------------------

    def show_datapoint(self, datapoint_id: Optional[str]) -> None:
        self._request += 1
        request = self._request
        if not datapoint_id:
            self._clear()
            return
        service = self._context.service

        def load() -> tuple[StoredDataPoint, Optional[dict[str, Any]]]:
            stored = service.get_stored(datapoint_id)
            return stored, service.custody(stored.datapoint_id)

        self._context.tasks.run(load, lambda found: self._loaded(request, *found),
                                lambda error: self._load_failed(request, error))

    def reload(self) -> None:
        if self._stored is not None:
            self.show_datapoint(self._stored.datapoint_id)

    def _clear(self) -> None:
        self._stored = None
        self.receipt = None
        self.title.setText("Nothing selected")
        self.subtitle.setText("Select a datapoint to see its details, or drop files here "
                              "to capture them.")
        self.facts.clear()
        self.preview.show_message("")
        self._enable_actions()
        self.shown.emit("")

    def show_many(self, count: int) -> None:
        self._request += 1
        self._stored = None
        self.title.setText(f"{count} datapoints selected")
        self.subtitle.setText("Delete removes all of them; select one to see its details.")
        self.facts.clear()
        self.preview.show_message("")
        self._enable_actions(many=True)

    def _load_failed(self, request: int, error: BaseException) -> None:
        if request != self._request:
            return
        self._clear()
        self.subtitle.setText(f"Cannot show this datapoint: {describe_error(error)}")

    def _loaded(self, request: int, stored: StoredDataPoint,
                receipt: Optional[dict[str, Any]] = None) -> None:
        if request != self._request:
            return
        if stored == self._stored and receipt == self.receipt:
            # A commit elsewhere (a sync pass saves each uploaded part) reloads the shown
            # row; rebuilding identical facts and re-reading the preview would only cost the
            # GUI thread time.
            self.shown.emit(stored.datapoint_id)
            return
        self._stored = stored
        #: The file's custody receipt (``app.core.custody.receipt``), None for a value.
        self.receipt = receipt
        dp = stored.datapoint
        doc = dp.to_document()
        self.title.setText(dp.label or doc.get("filename") or "(no label)")
        parts = [TYPE_NAMES.get(dp.data_type.value, dp.data_type.value),
                 human_size(doc.get("size_bytes")) if doc.get("size_bytes") is not None else "",
                 local_time(dp.data_instant), self._sync_words(stored)[0]]
        self.subtitle.setText("  ·  ".join(p for p in parts if p))
        self.subtitle.setToolTip(self._sync_words(stored)[1])
        self._fill_facts(stored, doc)
        self._enable_actions()
        self._load_preview(request, stored)
        self.shown.emit(dp.datapoint_id)

    def _sync_words(self, stored: StoredDataPoint) -> tuple[str, str]:
        return describe(stored.sync_state, self.central_configured)

    def set_central_configured(self, configured: bool) -> None:
        if configured != self.central_configured:
            self.central_configured = configured
            if self._stored is not None:  # the words change, the row does not
                self._stored, stored = None, self._stored
                self._loaded(self._request, stored, self.receipt)

    def _fill_facts(self, stored: StoredDataPoint, doc: dict[str, Any]) -> None:
        dp = stored.datapoint
        metadata = dict(dp.custom_metadata)
        self.facts.clear()
        general = _section(self.facts, "Datapoint")
        _row(general, "Id", dp.datapoint_id)
        _row(general, "Label", dp.label)
        _row(general, "Type", f"{TYPE_NAMES.get(dp.data_type.value)} ({dp.data_type.value})")
        _row(general, "Time", local_time(dp.data_instant),
             f"As sent: {doc['data_timestamp']} · UTC: {format_canonical(dp.data_instant)}")
        _row(general, "Sync", *self._sync_words(stored))
        _row(general, "Revision", stored.revision)
        _row(general, "Origin", "captured on this bench" if stored.origin == "local"
             else stored.origin)
        _row(general, "Added", local_time(stored.created_at))
        _row(general, "Changed", local_time(stored.updated_at))

        ownership = _section(self.facts, "Belongs to")
        ids = dp.ownership_info.ids() if dp.ownership_info else {}
        if not ids:
            _row(ownership, "—", "no ownership recorded")
        for field in OWNERSHIP_FIELDS:
            ident = ids.get(field)
            if not ident:
                continue
            kind = field[:-3]
            name = metadata.get(f"{kind}_name") or self._context.service.names.name_for(kind, ident)
            _row(ownership, kind.capitalize(), f"{name}  ({ident})" if name else ident, ident)

        names = {f"{f[:-3]}_name" for f in ids}
        shown_meta = {k: v for k, v in metadata.items()
                      if k not in names and not k.startswith(EXTRACTED_PREFIX)}
        meta = _section(self.facts, "Metadata")
        if not shown_meta:
            _row(meta, "—", "no custom metadata")
        for key, value in sorted(shown_meta.items()):
            _row(meta, key, value)
        self._fill_extracted(metadata)

        if dp.data_type.value != "json":
            files = _section(self.facts, "File")
            _row(files, "File name", doc.get("filename"))
            size = doc.get("size_bytes")
            _row(files, "Size", f"{human_size(size)} ({size:,} bytes)" if size is not None else None)
            _row(files, "Content type", doc.get("content_type"))
            _row(files, "SHA-256", doc.get("sha256"))
            _row(files, "Captured from", doc.get("path"))
            local = self._local_blob()
            _row(files, "Kept on this bench", str(local) if local else "no (central copy only)")
            central = {k: doc[k] for k in _CENTRAL_FIELDS if doc.get(k)}
            if central:
                where = _section(self.facts, "Stored centrally")
                for key, value in central.items():
                    _row(where, key.replace("_", " ").capitalize(), value)
            else:
                where = _section(self.facts, "Stored centrally")
                copy = self.receipt and (self.receipt["central_verified"]
                                         or self.receipt["uploaded"])
                if copy:  # a file captured here: where this bench put it
                    _row(where, "Bucket name", copy["bucket"])
                    _row(where, "Object name", copy["object_name"])
                else:
                    _row(where, "—", "not yet — waiting for sync" if stored.sync_state not in (
                        SAFE_STATES) else "yes (details not recorded)")
        if self.receipt is not None:
            _fill_custody(_section(self.facts, "Custody"), self.receipt)
        extra = {k: v for k, v in doc.items() if k not in {
            "_id", "label", "data_type", "data_timestamp", "ownership_info", "custom_metadata",
            "value", "path", "filename", "size_bytes", "content_type", "sha256",
            *_CENTRAL_FIELDS}}
        if extra:
            more = _section(self.facts, "More")
            for key, value in sorted(extra.items()):
                _row(more, key, json.dumps(value, ensure_ascii=False)
                     if not isinstance(value, str) else value)
        self.facts.expandAll()

    def _fill_extracted(self, metadata: dict[str, str]) -> None:
        """What the extractors read from the file's header (app/extract), if anything."""
        extracted = extracted_of(metadata)
        if not extracted:
            return
        section = _section(self.facts, "Extracted")
        if "error" in extracted:
            _row(section, "Error", extracted.pop("error"))
        sizes = {key.split(".", 1)[1]: value for key, value in extracted.items()
                 if key.startswith("dimensions.")}
        if sizes:
            # Metadata keys come back sorted; the axes field keeps the file's order.
            order = [axis for axis in extracted.get("axes", "") if axis in sizes]
            order += sorted(axis for axis in sizes if axis not in order)
            _row(section, "Dimensions", " × ".join(f"{axis} {sizes[axis]}" for axis in order))
        elif "width" in extracted and "height" in extracted:
            _row(section, "Dimensions", f"{extracted['width']} × {extracted['height']} px")
        for key, value in sorted(extracted.items()):
            _row(section, key, value)

    def _local_blob(self) -> Optional[Path]:
        if self._stored is None:
            return None
        service = self._context.service
        sha256 = service.held_blob(self._stored.datapoint)
        return service.files.path_for(sha256) if sha256 else None

    def _load_preview(self, request: int, stored: StoredDataPoint) -> None:
        dp = stored.datapoint
        if isinstance(dp, ValueDataPoint):
            self.preview.show_preview(Preview("json", value=dp.value))
            self.preview_shown.emit("json")
            return
        filename = getattr(dp, "filename", None) or Path(getattr(dp, "path", "") or "").name
        content_type = getattr(dp, "content_type", None)
        service = self._context.service
        files = service.files
        self.preview.show_message("Loading preview…")

        def load() -> Preview:
            sha256 = service.held_blob(dp)
            if not sha256:
                return Preview("none", note="The file is not on this bench (it is in the "
                                             "central store); no preview.")
            return load_preview(files.path_for(sha256), filename, content_type)

        def shown(preview: Preview) -> None:
            if request != self._request:
                return
            self.preview.show_preview(preview)
            self.preview_shown.emit(preview.kind)

        self._context.tasks.run(load, shown, lambda error: request == self._request and
                                self.preview.show_message(f"No preview: {describe_error(error)}"))

    def _enable_actions(self, many: bool = False) -> None:
        has = self._stored is not None
        is_file = has and self._stored.datapoint.data_type.value != "json"  # type: ignore[union-attr]
        self.open_button.setEnabled(has)
        self.save_button.setEnabled(has)
        self.reveal_button.setEnabled(bool(is_file))
        self.edit_button.setEnabled(has)
        self.delete_button.setEnabled(has or many)

    # -- actions ---------------------------------------------------------------------------

    def _suggested_name(self) -> str:
        dp = self._stored.datapoint  # type: ignore[union-attr]
        name = getattr(dp, "filename", None)
        if name:
            return Path(name).name
        base = (dp.label or dp.datapoint_id).replace(os.sep, "_")
        return f"{base}.json"

    def save_copy(self, target: Optional[str] = None) -> None:
        if self._stored is None:
            return
        if not target:
            start = str(Path.home() / self._suggested_name())
            target, _filter = QFileDialog.getSaveFileName(self, "Save a copy", start)
        if not target:
            return
        datapoint_id = self._stored.datapoint_id
        self._context.tasks.run(lambda: self._save_value(datapoint_id, target),
                                lambda path: self.message.emit(f"Saved a copy to {path}"),
                                lambda error: self.message.emit(
                                    f"Not saved: {describe_error(error)}"))

    def _save_value(self, datapoint_id: str, target: Any) -> Path:
        """Write the value or file (the service fetches a central-only file first)."""
        return self._context.service.save_value(datapoint_id, target)

    def open_external(self) -> None:
        if self._stored is None:
            return
        datapoint_id = self._stored.datapoint_id
        name = self._suggested_name()

        def copy() -> Path:
            # A fresh, read-only copy each time: a program that edited (or locked) an earlier
            # copy must never make the next Open show its bytes as if they were the capture.
            base = Path(tempfile.gettempdir()) / "benchdata-open" / datapoint_id
            base.mkdir(parents=True, exist_ok=True)
            target = Path(tempfile.mkdtemp(dir=base)) / name
            written = self._save_value(datapoint_id, target)
            written.chmod(0o444)
            return written

        self._context.tasks.run(
            copy, self._launch,
            lambda error: self.message.emit(f"Cannot open: {describe_error(error)}"))

    def _launch(self, path: Path) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            kind = f"{path.suffix} files" if path.suffix else "this kind of file"
            self.message.emit(f"No program is set up to open {kind}; use “Save copy…” "
                              f"instead (a read-only copy is at {path}).")

    def reveal(self) -> None:
        if self._stored is None:
            return
        original = Path(getattr(self._stored.datapoint, "path", "") or "")
        target = original if original.is_file() else self._local_blob()
        if target is None:
            self.message.emit("The file is neither at its original place nor on this bench.")
            return
        if original != target:
            self.message.emit("The original file is gone; showing the bench's own copy.")
        reveal_in_folder(target)


def reveal_in_folder(path: Path) -> None:
    """Show a file selected in the platform's file manager (its folder, at least)."""
    try:
        if sys.platform == "win32":
            subprocess.Popen(["explorer", "/select,", str(path)])  # noqa: S603,S607
            return
        if sys.platform == "darwin":
            subprocess.Popen(["open", "-R", str(path)])  # noqa: S603,S607
            return
    except OSError:
        pass
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))

