"""Capturing from the window: dropped files, a typed JSON value, edits and deletions.

Dropped and picked files are described here and then captured by the capture queue
(``app/capture_queue.py``, shown by ``app/ui/capture_panel.py``) on its own thread, so a
2 GiB copy never blocks the window. A datapoint counts as captured only when the service
returns (file copied, hashed, fsync-ed, row committed).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.capture_queue import requests_for
from app.core.errors import BenchDataError
from app.core.jsonvalue import check_json_value
from app.core.names import NAME_KEYS
from app.ui.context import UiContext
from app.ui.formatting import human_size
from app.ui.operations import capture_value, run_op, update_datapoint
from app.ui.ownership import FORM_KINDS, MetadataTable, OwnershipForm, remember, remembered
from app.ui.tasks import describe_error

log = logging.getLogger(__name__)

#: Custom metadata key for where a file sat inside a dropped folder (``plate/sub/b.txt``).
RELATIVE_PATH_KEY = "relative_path"


def expand_paths(paths: Sequence[os.PathLike[str] | str]) -> list[tuple[Path, Optional[str]]]:
    """Dropped files and every file below dropped folders (sorted, hidden files skipped),
    each with its path inside the dropped folder, the folder's own name first
    (``plate/sub/b.txt``), or None for a file dropped by itself."""
    files: list[tuple[Path, Optional[str]]] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(n for n in names if not n.startswith(".")):
                    found = Path(root) / name
                    files.append((found, found.relative_to(path.parent).as_posix()))
        elif path.exists():
            files.append((path, None))
    return files


def _initial_names(context: UiContext) -> tuple[dict[str, str], dict[str, str]]:
    """The names a new capture starts with, and where each came from (for its mark)."""
    identity = {k: str(v) for k, v in dict(context.bench_identity()).items()
                if isinstance(v, str) and v}
    last = remembered(context.settings).get("names") or {}
    names = {**identity, **last}
    origins = {kind: ("Carried over from the last capture; clear it if this is a new run"
                      if kind in last else "This bench's identity (Settings)")
               for kind in names}
    return names, origins


class _CaptureForm(QWidget):
    """Label, ownership names and metadata: the part both capture dialogs share."""

    def __init__(self, context: UiContext, label_hint: str, parent: QWidget) -> None:
        super().__init__(parent)
        last = remembered(context.settings)
        pinned = bool(last.get("pin_metadata"))
        self.label = QLineEdit(self)
        self.label.setObjectName("label")
        self.label.setPlaceholderText(label_hint)
        names, origins = _initial_names(context)
        self.ownership = OwnershipForm(context.known_names(), names, self)
        self.ownership.mark_carried(origins)
        self.metadata = MetadataTable((last.get("metadata") or {}) if pinned else {}, self)
        self.pin_metadata = QCheckBox("Keep this metadata for the next captures", self)
        self.pin_metadata.setObjectName("pinMetadata")
        self.pin_metadata.setChecked(pinned)
        self.carried_note = QLabel(self)
        self.carried_note.setObjectName("carriedNote")
        self.carried_note.setWordWrap(True)
        self.clear_carried_button = QPushButton("Clear", self)
        self.clear_carried_button.setObjectName("clearCarried")
        self.clear_carried_button.setToolTip("Start this capture without the carried-over "
                                             "names and pinned metadata")
        self.clear_carried_button.clicked.connect(self.clear_carried)
        carried_row = QHBoxLayout()
        carried_row.addWidget(self.carried_note, 1)
        carried_row.addWidget(self.clear_carried_button)
        form = QFormLayout()
        form.addRow("Label:", self.label)
        owner_box = QGroupBox("Belongs to", self)
        owner_layout = QVBoxLayout(owner_box)
        owner_layout.addLayout(carried_row)
        owner_layout.addWidget(self.ownership)
        meta_box = QGroupBox("Metadata", self)
        meta_layout = QVBoxLayout(meta_box)
        meta_layout.addWidget(self.metadata)
        meta_layout.addWidget(self.pin_metadata)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(owner_box)
        layout.addWidget(meta_box)
        for combo in self.ownership.fields.values():
            combo.editTextChanged.connect(lambda _t: self._show_carried())
        self._show_carried()

    def _show_carried(self) -> None:
        kinds = self.ownership.carried()
        pinned = self.pin_metadata.isChecked() and bool(self.metadata.metadata())
        parts = [f"{kind} {self.ownership.fields[kind].currentText()}" for kind in kinds]
        if pinned:
            parts.append("pinned metadata")
        self.carried_note.setText("Carried over: " + ", ".join(parts) if parts else "")
        self.carried_note.setVisible(bool(parts))
        self.clear_carried_button.setVisible(bool(parts))

    def clear_carried(self) -> None:
        """One click: no carried-over names, no pinned metadata."""
        self.ownership.clear_carried()
        if self.pin_metadata.isChecked():
            self.metadata.clear()
            self.pin_metadata.setChecked(False)
        self._show_carried()

    def remember(self, context: UiContext) -> None:
        remember(context.settings, names=self.ownership.names(),
                 metadata=self.metadata.metadata(), pin_metadata=self.pin_metadata.isChecked())


class CaptureDialog(QDialog):
    """Files dropped on the window: say what they are, then hand them to the capture queue.

    The dialog only asks (label, names, metadata); on *Capture* it emits the requests and
    closes at once. The copying happens in the queue panel, so the window stays usable."""

    #: The capture requests (``app.capture_queue.CaptureRequest``), emitted on *Capture*.
    submitted = Signal(list)

    def __init__(self, context: UiContext, paths: Sequence[os.PathLike[str] | str],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Capture files")
        self.setObjectName("CaptureDialog")
        self._context = context
        self._found: list[tuple[Path, int, Optional[str]]] = []
        self.error: Optional[str] = None

        self.file_list = QListWidget(self)
        self.file_list.setMaximumHeight(120)
        self.summary = QLabel("Looking at the dropped items…", self)
        self.summary.setObjectName("hint")
        self.form = _CaptureForm(context, "each file's name", self)
        self.buttons = QDialogButtonBox(self)
        self.capture_button = QPushButton("Capture", self)
        self.capture_button.setDefault(True)
        self.capture_button.setEnabled(False)
        self.capture_button.setToolTip("Copy them into the store in the capture queue; the "
                                       "window stays usable meanwhile")
        self.buttons.addButton(self.capture_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.capture_button.clicked.connect(self.start_capture)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Files to capture (the originals are not changed):", self))
        layout.addWidget(self.file_list)
        layout.addWidget(self.summary)
        layout.addWidget(self.form)
        layout.addWidget(self.buttons)
        self.resize(520, 600)

        items = list(paths)
        context.tasks.run(lambda: [(p, p.stat().st_size, r) for p, r in expand_paths(items)],
                          self._files_found, self._files_failed)

    # -- the files -------------------------------------------------------------------------

    @property
    def files(self) -> list[Path]:
        return [path for path, _size, _relative in self._found]

    def _files_found(self, found: list[tuple[Path, int, Optional[str]]]) -> None:
        self._found = found
        for path, size, relative in found:
            self.file_list.addItem(f"{relative or path.name}    {human_size(size)}")
        if not found:
            self.summary.setText("Nothing to capture: the dropped folders hold no files.")
            return
        self.summary.setText(f"{len(found)} file(s), "
                             f"{human_size(sum(size for _p, size, _r in found))} in all")
        if len(found) == 1:
            self.form.label.setText(found[0][0].name)
        self.capture_button.setEnabled(True)

    def _files_failed(self, error: BaseException) -> None:
        self.error = describe_error(error)
        self.summary.setText(f"Cannot read the dropped items: {self.error}")

    # -- handing over ----------------------------------------------------------------------

    def start_capture(self) -> None:
        """Hand the files to the capture queue and close."""
        if not self._found:
            return
        self.form.remember(self._context)
        requests = requests_for(self._found, label=self.form.label.text().strip(),
                                names=self.form.ownership.names(),
                                metadata=self.form.metadata.metadata(),
                                relative_key=RELATIVE_PATH_KEY)
        self.capture_button.setEnabled(False)
        self.submitted.emit(requests)
        self.accept()


def parse_json_text(text: str) -> Any:
    """Strict JSON (no NaN/Infinity), checked as the store will check it."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON; use null or a number")

    value = json.loads(text, parse_constant=reject_constant)
    check_json_value(value)
    return value


def json_error_message(text: str) -> Optional[str]:
    """``None`` if the text is a valid JSON value, else where and what is wrong."""
    if not text.strip():
        return "Type a JSON value, e.g. {\"temperature\": 21.5}"
    try:
        parse_json_text(text)
    except json.JSONDecodeError as exc:
        return f"Line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except (ValueError, BenchDataError) as exc:
        return str(exc)
    return None


class ValueDialog(QDialog):
    """A new JSON value datapoint; the editor validates as you type."""

    captured = Signal(list)

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None,
                 initial: str = "{\n  \n}") -> None:
        super().__init__(parent)
        self.setWindowTitle("New value")
        self.setObjectName("ValueDialog")
        self._context = context
        self.form = _CaptureForm(context, "e.g. temperature", self)
        self.editor = QPlainTextEdit(self)
        self.editor.setObjectName("jsonEditor")
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setTabChangesFocus(True)
        self.editor.setPlainText(initial)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self)
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setText("Capture")
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.error: Optional[str] = None
        self.captured_ids: list[str] = []
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Value (JSON):", self))
        layout.addWidget(self.editor, 2)
        layout.addWidget(self.message)
        layout.addWidget(self.form, 1)
        layout.addWidget(self.buttons)
        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(150)
        self._validate_timer.timeout.connect(self.validate)
        self.editor.textChanged.connect(self._validate_timer.start)
        self.resize(520, 600)
        self.validate()

    def validate(self) -> bool:
        problem = json_error_message(self.editor.toPlainText())
        self.error = problem
        self.save_button.setEnabled(problem is None)
        self.editor.setProperty("invalid", problem is not None)
        self.editor.style().polish(self.editor)
        self.message.setObjectName("error" if problem else "ok")
        self.message.setText(problem or "Valid JSON")
        self.message.style().polish(self.message)
        return problem is None

    def save(self) -> None:
        if not self.validate():
            return
        value = parse_json_text(self.editor.toPlainText())
        label = self.form.label.text().strip() or None
        names = self.form.ownership.names()
        metadata = self.form.metadata.metadata()
        self.form.remember(self._context)
        self.save_button.setEnabled(False)
        run_op(self._context, capture_value(value, label=label, names=names, metadata=metadata),
               lambda changes: self._done(list(changes.written)), self._failed)

    def _done(self, ids: list[str]) -> None:
        self.captured_ids = ids
        self.captured.emit(ids)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.error = describe_error(error)
        self.message.setObjectName("error")
        self.message.setText(f"Not captured: {self.error}")
        self.message.style().polish(self.message)
        self.save_button.setEnabled(True)


class EditDialog(QDialog):
    """Change a datapoint's label, what it belongs to, and its custom metadata.

    The names (experiment, user …) are ownership, not metadata: changing the experiment
    here moves the datapoint (a new revision with the new id and name, which sync carries).
    The ``<kind>_name`` keys the bench keeps beside the ids are therefore not listed as
    metadata.
    """

    saved = Signal(str)

    def __init__(self, context: UiContext, datapoint_id: str, label: Optional[str],
                 metadata: Mapping[str, str], parent: Optional[QWidget] = None, *,
                 ownership: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit datapoint")
        self.setObjectName("EditDialog")
        self._context = context
        self._id = datapoint_id
        self._before = {k: v for k, v in metadata.items() if k not in NAME_KEYS}
        self._names_before = self._current_names(ownership or {}, metadata)
        self.label = QLineEdit(label or "", self)
        self.label.setObjectName("label")
        self.ownership = OwnershipForm(context.known_names(), self._names_before, self)
        self.metadata = MetadataTable(self._before, self)
        self.message = QLabel(self)
        self.message.setObjectName("error")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Label:", self.label)
        owner_box = QGroupBox("Belongs to", self)
        owner_layout = QVBoxLayout(owner_box)
        owner_layout.addWidget(self.ownership)
        moved = QLabel("Changing a name moves the datapoint there; sync carries the move.", self)
        moved.setObjectName("hint")
        moved.setWordWrap(True)
        owner_layout.addWidget(moved)
        meta_box = QGroupBox("Metadata", self)
        QVBoxLayout(meta_box).addWidget(self.metadata)
        layout = QVBoxLayout(self)
        hint = QLabel(f"Datapoint {datapoint_id}", self)
        hint.setObjectName("hint")
        hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addWidget(owner_box)
        layout.addWidget(meta_box)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(500, 600)

    def _current_names(self, ownership: Mapping[str, str],
                       metadata: Mapping[str, str]) -> dict[str, str]:
        """The name shown for each id: kept beside it, else the registry's, else the id."""
        names: dict[str, str] = {}
        registry = self._context.service.names
        for field, ident in ownership.items():
            if not ident:
                continue
            kind = field[:-3]
            names[kind] = metadata.get(f"{kind}_name") or registry.name_for(kind, ident) or ident
        return names

    def ownership_changes(self) -> dict[str, str]:
        """Kinds whose name was changed ("" = cleared), for ``service.update(ownership=)``."""
        after = self.ownership.names()
        return {kind: after.get(kind, "") for kind in FORM_KINDS
                if after.get(kind, "") != self._names_before.get(kind, "")}

    def save(self) -> None:
        after = self.metadata.metadata()
        reserved = sorted(k for k in after if k in NAME_KEYS)
        if reserved:
            self.message.setText(
                f"Not saved: {', '.join(reserved)} is kept beside the ownership id; "
                f"change the name under “Belongs to” instead.")
            return
        changed = {k: v for k, v in after.items() if self._before.get(k) != v}
        removed = [k for k in self._before if k not in after]
        ownership = self.ownership_changes()
        label = self.label.text()
        datapoint_id = self._id
        run_op(self._context,
               update_datapoint(datapoint_id, label=label, set_metadata=changed,
                                remove_metadata=removed, ownership=ownership),
               lambda _changes: (self.saved.emit(datapoint_id), self.accept()),
               lambda error: self.message.setText(f"Not saved: {describe_error(error)}"))


def confirm_delete(parent: QWidget, count: int, what: str) -> bool:
    box = QMessageBox(QMessageBox.Icon.Warning, "Delete datapoints",
                      f"Delete {what}?" if count == 1 else f"Delete {count} datapoints?",
                      QMessageBox.StandardButton.Cancel, parent)
    box.setInformativeText(
        "They disappear from this bench at once; sync removes them from the central store "
        "too. Captured files are kept locally until the central deletion is confirmed.")
    delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is delete
