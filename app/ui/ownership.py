"""Ownership and metadata fields: names picked or typed, never ULIDs.

The operator chooses ``EXP42`` and ``alice`` from what this bench has seen (or types a new
name); the service maps names to ids when the datapoint is captured. The last values are
remembered (QSettings) so a run of captures needs no retyping, and marked as carried over
(with one click to clear them) so a new run is never silently labelled with the old one's
names; the bench identity (``bench`` section: user, node, lab) fills what was never typed.
Free metadata carries over only when the operator pins it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Optional

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCompleter,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: The ownership kinds the dialogs offer, in the order an operator thinks of them.
FORM_KINDS: Final[tuple[str, ...]] = ("experiment", "user", "campaign", "project", "node", "lab")
_SETTINGS_PREFIX: Final[str] = "capture/last"


class OwnershipForm(QWidget):
    """One editable, completing combo box per ownership kind."""

    def __init__(self, known_names: Mapping[str, list[str]],
                 defaults: Optional[Mapping[str, str]] = None,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.fields: dict[str, QComboBox] = {}
        for kind in FORM_KINDS:
            combo = QComboBox(self)
            combo.setEditable(True)
            combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            combo.addItems(sorted(known_names.get(kind, []), key=str.casefold))
            combo.setCurrentIndex(-1)
            combo.setEditText((defaults or {}).get(kind, ""))
            combo.lineEdit().setPlaceholderText(f"{kind} name (optional)")
            completer = combo.completer()
            if completer is not None:
                completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
                completer.setFilterMode(Qt.MatchFlag.MatchContains)
                completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
            combo.setObjectName(f"ownership_{kind}")
            layout.addRow(kind.capitalize() + ":", combo)
            self.fields[kind] = combo

    def names(self) -> dict[str, str]:
        """The names typed or picked, by kind (empty ones left out)."""
        return {kind: combo.currentText().strip() for kind, combo in self.fields.items()
                if combo.currentText().strip()}

    def set_names(self, names: Mapping[str, str]) -> None:
        for kind, combo in self.fields.items():
            combo.setEditText(names.get(kind, ""))

    def mark_carried(self, kinds: Mapping[str, str]) -> None:
        """Mark prefilled fields (kind -> where the value came from) so the operator sees
        what was not typed for this capture; typing in a field removes its mark."""
        for kind, origin in kinds.items():
            combo = self.fields.get(kind)
            if combo is None:
                continue
            _set_carried(combo, origin)
            combo.editTextChanged.connect(lambda _t, c=combo: _set_carried(c, None))

    def carried(self) -> list[str]:
        """The kinds still showing a carried-over value."""
        return [kind for kind, combo in self.fields.items() if combo.property("carried")]

    def clear_carried(self) -> None:
        for kind in self.carried():
            self.fields[kind].setEditText("")


def _set_carried(combo: QComboBox, origin: Optional[str]) -> None:
    combo.setProperty("carried", bool(origin))
    combo.setToolTip(origin or "")
    combo.style().unpolish(combo)  # the stylesheet marks carried fields; apply it now
    combo.style().polish(combo)


class MetadataTable(QWidget):
    """Custom metadata as editable key/value rows."""

    def __init__(self, metadata: Optional[Mapping[str, str]] = None,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Key", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(90)
        add = QPushButton("Add", self)
        add.clicked.connect(lambda: self.add_row("", ""))
        remove = QPushButton("Remove", self)
        remove.clicked.connect(self._remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        for key, value in (metadata or {}).items():
            self.add_row(key, value)

    def add_row(self, key: str, value: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(key))
        self.table.setItem(row, 1, QTableWidgetItem(value))
        if not key:
            self.table.editItem(self.table.item(row, 0))

    def clear(self) -> None:
        self.table.setRowCount(0)

    def _remove_selected(self) -> None:
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)

    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for row in range(self.table.rowCount()):
            key_item, value_item = self.table.item(row, 0), self.table.item(row, 1)
            key = key_item.text().strip() if key_item else ""
            if key:
                out[key] = value_item.text() if value_item else ""
        return out


def remembered(settings: QSettings) -> dict[str, Any]:
    """The last capture's label, names and pinned metadata (``pin_metadata``: whether the
    operator asked for its metadata to carry over; free metadata does not otherwise)."""
    raw = settings.value(_SETTINGS_PREFIX, "")
    try:
        data = json.loads(str(raw)) if raw else {}
    except json.JSONDecodeError:
        data = {}
    return data if isinstance(data, dict) else {}


def remember(settings: QSettings, *, names: Mapping[str, str], metadata: Mapping[str, str],
             label: str = "", pin_metadata: bool = False) -> None:
    settings.setValue(_SETTINGS_PREFIX, json.dumps(
        {"names": dict(names), "metadata": dict(metadata) if pin_metadata else {},
         "pin_metadata": pin_metadata, "label": label}))
