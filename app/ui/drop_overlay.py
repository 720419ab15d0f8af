"""The highlight a drag shows over the window: where the files will go, before they land."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLabel, QWidget


class DropOverlay(QLabel):
    """A translucent panel over its parent, shown while files are dragged over the window."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("dropOverlay")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        # Drag events must keep reaching the window underneath.
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()
        parent.installEventFilter(self)

    def show_for(self, count: int, folders: int) -> None:
        files = count - folders
        parts = [f"{files} file{'s' if files != 1 else ''}"] if files else []
        if folders:
            parts.append(f"{folders} folder{'s' if folders != 1 else ''}")
        self.setText(f"Drop to capture {' and '.join(parts)} into this bench\n"
                     "(the originals are not changed)")
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize and self.isVisible():
            parent: Optional[QWidget] = self.parentWidget()
            if parent is not None:
                self.setGeometry(parent.rect())
        return False
