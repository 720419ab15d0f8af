"""A second X client for the end-to-end tests: a small window that starts a real XDND drag
of the files named on its command line when the mouse is pressed on it."""

from __future__ import annotations

import sys

from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QApplication, QLabel


class DragSource(QLabel):
    def __init__(self, paths: list[str]) -> None:
        super().__init__("drag me")
        self.paths = paths
        self.setWindowTitle("benchdata-test-drag-source")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.resize(200, 120)

    def mousePressEvent(self, event: object) -> None:  # noqa: N802
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(p) for p in self.paths])
        drag = QDrag(self)
        drag.setMimeData(mime)
        result = drag.exec(Qt.DropAction.CopyAction)
        print(f"drag finished: {result}", flush=True)


if __name__ == "__main__":
    app = QApplication(sys.argv[:1])
    source = DragSource(sys.argv[1:])
    source.move(0, 0)
    source.show()
    sys.exit(app.exec())
