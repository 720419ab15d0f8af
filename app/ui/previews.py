"""Previews of captured files: images, text, CSV (with a quick plot), JSON.

Loading happens on a background thread (:func:`load_preview` touches only the disk and
``QImage``, which is safe off the GUI thread); the widgets here only draw what was loaded.
Everything is bounded — a preview reads at most a few megabytes whatever the file size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Optional

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QTreeWidget, QTreeWidgetItem, QWidget

from app.core.tabular import read_table
from app.core.units import human_size

IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
TEXT_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".txt", ".log", ".md", ".xml", ".yaml", ".yml", ".ini", ".cfg", ".toml", ".py", ".html",
     ".dat", ".out", ".jcamp", ".dx"})
CSV_SUFFIXES: Final[frozenset[str]] = frozenset({".csv", ".tsv"})
TEXT_BYTES: Final[int] = 256 * 1024
CSV_BYTES: Final[int] = 4 * 1024 * 1024
CSV_ROWS: Final[int] = 5000
JSON_BYTES: Final[int] = 8 * 1024 * 1024
IMAGE_MAX_SIDE: Final[int] = 2048
JSON_TREE_NODES: Final[int] = 5000


@dataclass
class Preview:
    """What a preview shows; ``kind`` picks the widget."""

    kind: str  # image | text | csv | json | none
    note: str = ""
    image: Optional[QImage] = None
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    numeric: dict[str, list[float]] = field(default_factory=dict)
    value: Any = None


def preview_kind(filename: str, content_type: Optional[str]) -> str:
    suffix = Path(filename or "").suffix.lower()
    ctype = (content_type or "").lower()
    if suffix in IMAGE_SUFFIXES or ctype.startswith("image/"):
        return "image"
    if suffix in CSV_SUFFIXES or ctype in ("text/csv", "text/tab-separated-values"):
        return "csv"
    if suffix == ".json" or ctype == "application/json":
        return "json"
    if suffix in TEXT_SUFFIXES or ctype.startswith("text/"):
        return "text"
    return "sniff"


def load_preview(path: Path, filename: str, content_type: Optional[str]) -> Preview:
    """Read a bounded preview of the file at ``path`` (call off the GUI thread)."""
    kind = preview_kind(filename, content_type)
    if kind == "image":
        return _image(path, filename)
    if kind == "csv":
        return _csv(path, filename)
    if kind == "json":
        return _json(path)
    head = _read_head(path, TEXT_BYTES)
    if kind == "text" or _looks_like_text(head):
        return _text(head, path)
    return Preview("none", note="No preview for this kind of file; use Open to view it.")


def _read_head(path: Path, limit: int) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(limit)


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head[:4096]:
        return False
    try:
        head[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > 4090  # a character cut at the end of the sample
    return True


def _text(head: bytes, path: Path) -> Preview:
    size = path.stat().st_size
    note = "" if size <= len(head) else f"Showing the first {human_size(len(head))}."
    return Preview("text", note=note, text=head.decode("utf-8", errors="replace"))


def _image(path: Path, filename: str) -> Preview:
    reader = QImageReader(str(path))
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix:
        reader.setFormat(suffix.encode())
    reader.setDecideFormatFromContent(True)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > IMAGE_MAX_SIDE:
        reader.setScaledSize(size.scaled(IMAGE_MAX_SIDE, IMAGE_MAX_SIDE,
                                         Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return Preview("none", note=f"The image cannot be shown: {reader.errorString()}")
    note = f"{size.width()} × {size.height()} px" if size.isValid() else ""
    return Preview("image", note=note, image=image)


def _csv(path: Path, filename: str) -> Preview:
    raw = _read_head(path, CSV_BYTES)
    text = raw.decode("utf-8-sig", errors="replace")
    truncated = len(raw) == CSV_BYTES
    if truncated:
        text = text[: text.rfind("\n") + 1] or text
    table = read_table(text, filename, row_limit=CSV_ROWS)
    if table is None:
        return Preview("text", note="The CSV file is empty.", text="")
    truncated = truncated or table.truncated
    note = (f"{len(table.rows)} row(s), {table.width} column(s)"
            + (" — first rows only" if truncated else ""))
    return Preview("csv", note=note, header=table.header, rows=table.rows,
                   numeric=table.numeric)


def _json(path: Path) -> Preview:
    raw = _read_head(path, JSON_BYTES + 1)
    if len(raw) > JSON_BYTES:
        return _text(raw[:TEXT_BYTES], path)
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = _text(raw[:TEXT_BYTES], path)
        preview.note = f"Not valid JSON ({exc}); shown as text."
        return preview
    return Preview("json", value=value)


# -- widgets -----------------------------------------------------------------------------


def fill_json_tree(tree: QTreeWidget, value: Any, limit: int = JSON_TREE_NODES) -> None:
    """Show a JSON value as an expandable tree (bounded; the rest is summarised)."""
    tree.clear()
    tree.setColumnCount(2)
    tree.setHeaderLabels(["Key", "Value"])
    budget = [limit]

    def add(parent: QTreeWidgetItem | QTreeWidget, key: str, item: Any) -> None:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        node = QTreeWidgetItem(parent if isinstance(parent, QTreeWidgetItem) else None, [key, ""])
        if isinstance(parent, QTreeWidget):
            parent.addTopLevelItem(node)
        if isinstance(item, dict):
            node.setText(1, f"{{{len(item)} key(s)}}")
            node.setForeground(1, QColor("#78909c"))
            for child_key, child in item.items():
                add(node, str(child_key), child)
        elif isinstance(item, list):
            node.setText(1, f"[{len(item)} item(s)]")
            node.setForeground(1, QColor("#78909c"))
            for index, child in enumerate(item):
                add(node, f"[{index}]", child)
        else:
            node.setText(1, json.dumps(item, ensure_ascii=False))
        if budget[0] <= 0 and isinstance(parent, QTreeWidgetItem):
            parent.addChild(QTreeWidgetItem(["…", "(too large to show in full)"]))

    add(tree, "value", value)
    tree.expandToDepth(1)
    tree.resizeColumnToContents(0)


PLOT_COLOURS: Final[tuple[str, ...]] = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00",
                                        "#6a1b9a", "#00838f")


class QuickPlot(QWidget):
    """A line plot of a CSV's numeric columns, drawn with QPainter (no chart library).

    The first numeric column is the x axis when it only ever increases (time, wavelength
    …); otherwise rows are plotted against their number. At most six series are drawn.
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.x_name = "row"
        self.x: list[float] = []
        self.series: dict[str, list[float]] = {}

    def sizeHint(self) -> QSize:
        return QSize(400, 220)

    def set_columns(self, numeric: dict[str, list[float]]) -> None:
        names = list(numeric)
        self.x_name, self.x, self.series = "row", [], {}
        if names and len(names) > 1 and _increasing(numeric[names[0]]):
            self.x_name, self.x = names[0], numeric[names[0]]
            names = names[1:]
        self.series = {name: numeric[name] for name in names[:len(PLOT_COLOURS)]}
        if not self.x and self.series:
            self.x = [float(i + 1) for i in range(len(next(iter(self.series.values()))))]
        self.update()

    def paintEvent(self, _event: Any) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        if not self.series:
            painter.setPen(QColor("#78909c"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No numeric columns to plot")
            return
        metrics = painter.fontMetrics()
        ys = [v for values in self.series.values() for v in values if not math.isnan(v)]
        y_low, y_high = _padded(min(ys), max(ys))
        x_low, x_high = _padded(min(self.x), max(self.x), pad=0.0)
        left = metrics.horizontalAdvance(_tick(y_high) + "  ") + 4
        plot = QRectF(left, 8, self.width() - left - 12, self.height() - 8 - metrics.height() * 2 - 6)
        if plot.width() < 20 or plot.height() < 20:
            return
        painter.setPen(QPen(QColor("#b0bec5"), 1))
        painter.drawRect(plot)
        painter.setPen(QColor("#455a64"))
        for fraction in (0.0, 0.5, 1.0):
            y_value = y_low + (y_high - y_low) * fraction
            y = plot.bottom() - plot.height() * fraction
            painter.drawText(QRectF(0, y - metrics.height() / 2, left - 4, metrics.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, _tick(y_value))
            x_value = x_low + (x_high - x_low) * fraction
            x = plot.left() + plot.width() * fraction
            painter.drawText(QRectF(x - 50, plot.bottom() + 2, 100, metrics.height()),
                             Qt.AlignmentFlag.AlignHCenter, _tick(x_value))
        painter.drawText(QRectF(plot.left(), plot.bottom() + metrics.height() + 2, plot.width(),
                                metrics.height()), Qt.AlignmentFlag.AlignHCenter, self.x_name)

        def to_point(x_value: float, y_value: float) -> QPointF:
            return QPointF(plot.left() + (x_value - x_low) / (x_high - x_low) * plot.width(),
                           plot.bottom() - (y_value - y_low) / (y_high - y_low) * plot.height())

        step = max(1, len(self.x) // max(1, int(plot.width())))
        legend_x = plot.left() + 8
        for colour, (name, values) in zip(PLOT_COLOURS, self.series.items()):
            path = QPainterPath()
            started = False
            for i in range(0, min(len(values), len(self.x)), step):
                if math.isnan(values[i]):
                    started = False
                    continue
                point = to_point(self.x[i], values[i])
                if started:
                    path.lineTo(point)
                else:
                    path.moveTo(point)
                    started = True
            painter.setPen(QPen(QColor(colour), 1.6))
            painter.drawPath(path)
            painter.drawLine(QPointF(legend_x, plot.top() + 10), QPointF(legend_x + 14, plot.top() + 10))
            painter.setPen(QColor("#263238"))
            painter.drawText(QPointF(legend_x + 18, plot.top() + 14), name)
            legend_x += 30 + metrics.horizontalAdvance(name)
        painter.end()


def _increasing(values: list[float]) -> bool:
    clean = [v for v in values if not math.isnan(v)]
    return len(clean) == len(values) and len(clean) > 1 and all(
        b > a for a, b in zip(clean, clean[1:]))


def _padded(low: float, high: float, pad: float = 0.05) -> tuple[float, float]:
    if high == low:
        return low - 1, high + 1
    span = high - low
    return low - span * pad, high + span * pad


def _tick(value: float) -> str:
    return f"{value:.4g}"
