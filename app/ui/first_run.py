"""The first start on a bench: who works here and which instrument this is (skippable).

Captures default to these names (the ``bench`` section, as Settings → Bench edits them), so
asking once saves every operator from typing them into every capture. Asked only while
the bench has neither an operator nor an instrument name and the question was never
answered or skipped on this store.
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.core.config import load_section, save_section
from app.ui.context import BENCH_SECTION, UiContext
from app.ui.settings_dialog import IDENTITY_FIELDS
from app.ui.tasks import describe_error

_ASKED_KEY = "firstRun/asked"


def should_ask(context: UiContext) -> bool:
    identity = context.bench_identity()
    if any(identity.get(kind) for kind in ("user", "node")):
        return False
    return not bool(context.settings.value(_ASKED_KEY, False, type=bool))


class FirstRunDialog(QDialog):
    """Operator, instrument and lab names; *Skip* leaves them empty (Settings can set them)."""

    saved = Signal()

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to Bench Data Manager")
        self.setObjectName("FirstRunDialog")
        self._context = context
        intro = QLabel("Who works at this bench, and which instrument is it? New captures "
                       "will belong to these names; each capture can change them, and "
                       "Settings → Bench changes them later.", self)
        intro.setWordWrap(True)
        self.fields: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for kind, title in IDENTITY_FIELDS:
            field = QLineEdit(self)
            field.setObjectName(f"firstRun_{kind}")
            field.setPlaceholderText("a name, e.g. alice / hplc-2 / biolab")
            form.addRow(f"{title}:", field)
            self.fields[kind] = field
        self.message = QLabel(self)
        self.message.setObjectName("error")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save, self)
        self.skip_button = self.buttons.addButton("Skip", QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.skip)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(460, 240)

    def _mark_asked(self) -> None:
        self._context.settings.setValue(_ASKED_KEY, True)
        self._context.settings.sync()

    def skip(self) -> None:
        self._mark_asked()
        self.reject()

    def save(self) -> None:
        names = {kind: field.text().strip() for kind, field in self.fields.items()
                 if field.text().strip()}
        paths = self._context.service.paths

        def work() -> None:
            section: Any = load_section(paths, BENCH_SECTION) or {}
            save_section(paths, BENCH_SECTION, {**dict(section), **names})

        def done(_result: object) -> None:
            self._mark_asked()
            self.saved.emit()
            self.accept()

        self._context.tasks.run(work, done, lambda error: self.message.setText(
            f"Not saved: {describe_error(error)}"), write=True)
