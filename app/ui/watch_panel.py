"""Watched folders: add, edit, pause and remove rules; try a path template; recent activity.

Rules live in the ``watch`` configuration section (``app.ingest.rules``); the watcher
component picks up saved changes. Recent activity comes from the capture ledger the
watcher keeps in the store (``ingest_ledger``).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.context import UiContext
from app.ui.formatting import local_time
from app.ui.ownership import MetadataTable
from app.ui.tasks import describe_error

log = logging.getLogger(__name__)


def watch_locked_by() -> Optional[str]:
    """The facility's settings file if it locks the watched folders, else None."""
    from app.core.site import is_locked, load_site, site_config_file

    return str(site_config_file()) if is_locked(load_site(), "watch") else None


def _split_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


def recent_activity(context: UiContext, rule_id: str, limit: int = 50) -> list[tuple[str, str, str]]:
    """(captured at, relative path, datapoint id), newest first; empty if no ledger yet."""
    with context.service.store.reader() as conn:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'ingest_ledger'").fetchone()
        if not exists:
            return []
        return [tuple(row) for row in conn.execute(
            "SELECT captured_at, rel_path, datapoint_id FROM ingest_ledger WHERE rule_id = ? "
            "ORDER BY captured_at DESC LIMIT ?", (rule_id, limit))]


class RuleDialog(QDialog):
    """Edit one watched-folder rule, with a live test of its path template."""

    def __init__(self, rule: Any = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watched folder" if rule is None else f"Watched folder — {rule.name}")
        self.setObjectName("RuleDialog")
        self.rule = rule
        self.folder = QLineEdit(rule.path if rule else "", self)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        self.name = QLineEdit(rule.name if rule else "", self)
        self.include = QLineEdit(", ".join(rule.include) if rule else "*", self)
        self.exclude = QLineEdit(", ".join(rule.exclude) if rule else "", self)
        self.quiet = QDoubleSpinBox(self)
        self.quiet.setRange(0, 86400)
        self.quiet.setSuffix(" s")
        self.quiet.setValue(rule.quiet_seconds if rule else 2.0)
        self.recursive = QCheckBox("Include subfolders", self)
        self.recursive.setChecked(rule.recursive if rule else True)
        self.enabled = QCheckBox("Watching (untick to pause)", self)
        self.enabled.setChecked(rule.enabled if rule else True)
        self._build_profile_fields(rule)
        self.template = QLineEdit((rule.path_template or "") if rule else "", self)
        self.template.setPlaceholderText("e.g. {experiment}/{sample}/*.csv")
        self.label_template = QLineEdit(rule.label_template if rule else "{name}", self)
        self.metadata = MetadataTable(dict(rule.metadata) if rule else {}, self)
        self.sample = QLineEdit(self)
        self.sample.setPlaceholderText("a sample path below the folder, e.g. EXP42/s7/run1.csv")
        self.sample_result = QLabel("", self)
        self.sample_result.setWordWrap(True)
        self.sample_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for widget in (self.template, self.label_template, self.sample):
            widget.textChanged.connect(self.test_template)
        self.message = QLabel("", self)
        self.message.setObjectName("error")
        self.message.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Folder:", folder_row)
        form.addRow("Name:", self.name)
        form.addRow("Files (patterns):", self.include)
        form.addRow("Except:", self.exclude)
        form.addRow("Complete after quiet for:", self.quiet)
        form.addRow("Complete when:", self.profile)
        form.addRow("Dataset folders:", self.dataset_depth)
        form.addRow("Profile options:", self.profile_options)
        form.addRow("", self.waits_for)
        form.addRow("", self.recursive)
        form.addRow("", self.enabled)
        form.addRow("Path template:", self.template)
        form.addRow("Label template:", self.label_template)
        test_box = QGroupBox("Try the template", self)
        test_form = QFormLayout(test_box)
        test_form.addRow("Sample path:", self.sample)
        test_form.addRow(self.sample_result)
        meta_box = QGroupBox("Fixed metadata (user, experiment … become ownership)", self)
        QVBoxLayout(meta_box).addWidget(self.metadata)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save |
                                   QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self._check_and_accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(test_box)
        layout.addWidget(meta_box)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.resize(600, 780)
        self.show_completeness()

    def _build_profile_fields(self, rule: Any) -> None:
        """The completeness profile: which one, its options, which folders are datasets,
        and the sentence saying what it will wait for (generated by the profile)."""
        from app.ingest.profiles import DEFAULT_PROFILE, profile_names, summary

        current = rule.profile if rule else DEFAULT_PROFILE
        self.profile = QComboBox(self)
        for name in dict.fromkeys([*profile_names(), current]):
            self.profile.addItem(name, name)
            self.profile.setItemData(self.profile.count() - 1, summary(name),
                                     Qt.ItemDataRole.ToolTipRole)
        self.profile.setCurrentIndex(self.profile.findData(current))
        self.dataset_depth = QSpinBox(self)
        self.dataset_depth.setRange(1, 16)
        self.dataset_depth.setSuffix(" level(s) down")
        self.dataset_depth.setToolTip("With a folder profile (or datasets), each folder this "
                                      "many levels below the watched folder is one dataset")
        self.dataset_depth.setValue(rule.dataset_depth if rule else 1)
        self.profile_options = MetadataTable(dict(rule.profile_options) if rule else {}, self)
        self.profile_options.table.setMinimumHeight(60)
        self.profile_options.table.setMaximumHeight(90)
        self.waits_for = QLabel("", self)
        self.waits_for.setObjectName("profileDescription")
        self.waits_for.setWordWrap(True)
        self.profile.currentIndexChanged.connect(self.show_completeness)
        self.dataset_depth.valueChanged.connect(self.show_completeness)
        self.quiet.valueChanged.connect(self.show_completeness)
        self.profile_options.table.itemChanged.connect(self.show_completeness)
        self.profile_options.table.model().rowsRemoved.connect(self.show_completeness)

    def _preview_rule(self) -> Any:
        """The rule as the dialog shows it now (raises what is wrong with it)."""
        from app.ingest.rules import WatchRule

        fields = self.fields()
        if not fields["name"]:
            fields.pop("name")
        return WatchRule(id=self.rule.id if self.rule else "check",
                         path=self.folder.text().strip() or "/", **fields)

    def show_completeness(self) -> str:
        """Say what the chosen profile will wait for (the profile writes the sentence)."""
        try:
            rule = self._preview_rule()
            rule.check_profile()
        except Exception as exc:  # noqa: BLE001 - bad options, shown where they are typed
            text = f"✗ {describe_error(exc)}"
            self.waits_for.setStyleSheet("color: #c62828")
        else:
            text = rule.describe_completeness()
            self.waits_for.setStyleSheet("")
            self.dataset_depth.setEnabled(rule.folder_units)
        self.waits_for.setText(text)
        return text

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to watch", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def fields(self) -> dict[str, Any]:
        return {
            "name": self.name.text().strip(),
            "include": _split_patterns(self.include.text()) or ["*"],
            "exclude": _split_patterns(self.exclude.text()),
            "quiet_seconds": self.quiet.value(),
            "recursive": self.recursive.isChecked(),
            "enabled": self.enabled.isChecked(),
            "path_template": self.template.text().strip() or None,
            "label_template": self.label_template.text().strip() or "{name}",
            "metadata": self.metadata.metadata(),
            "profile": self.profile.currentData() or "quiet",
            "profile_options": self.profile_options.metadata(),
            "dataset_depth": self.dataset_depth.value(),
        }

    def test_template(self) -> str:
        from app.ingest.templates import PathTemplate, describe

        sample = self.sample.text().strip().replace("\\", "/")
        if not sample:
            self.sample_result.setText("")
            return ""
        try:
            template = PathTemplate(self.template.text().strip()) if self.template.text().strip() else None
            described = describe(sample, path_template=template,
                                 label_template=self.label_template.text().strip() or "{name}",
                                 fixed_metadata=self.metadata.metadata(),
                                 rule_name=self.name.text().strip())
        except Exception as exc:  # noqa: BLE001 - template syntax errors, shown inline
            text = f"✗ {describe_error(exc)}"
            self.sample_result.setStyleSheet("color: #c62828")
        else:
            if described.template_matched is False:
                text = "✗ The path does not match the template; the file would be captured " \
                       "with its name as label and no fields."
                self.sample_result.setStyleSheet("color: #9a6700")
            else:
                owner = ", ".join(f"{k}={v}" for k, v in described.ownership.items()) or "—"
                meta = ", ".join(f"{k}={v}" for k, v in described.custom_metadata.items()) or "—"
                text = f"✓ Label: {described.label}\nBelongs to: {owner}\nMetadata: {meta}"
                self.sample_result.setStyleSheet("color: #1e7d32")
        self.sample_result.setText(text)
        return text

    def _check_and_accept(self) -> None:
        folder = self.folder.text().strip()
        if not folder:
            self.message.setText("Choose the folder to watch.")
            return
        try:
            self._preview_rule().check_profile()
        except Exception as exc:  # noqa: BLE001 - pydantic errors, shown inline
            self.message.setText(describe_error(exc).replace("\n", " "))
            return
        self.accept()


def _state_text(rule: Any, status: Any) -> str:
    """What a folder's watcher is doing now, in a few words (no status: no watcher runs
    for it, so nothing is captured from it yet)."""
    if not rule.enabled:
        return "paused"
    if status is None:
        return "not watched: capture is not running (File → Start capture)"
    if status.state == "not running":
        return "not watched: the capture service stopped reporting"
    text = status.state if status.observer in ("", "none") else \
        f"{status.state} ({status.observer} events)"
    if status.waiting:
        text += f", {status.waiting} in their quiet period"
    waiting_for = getattr(status, "waiting_for", {})
    if waiting_for:
        text += ", " + "; ".join(f"{path}: waiting for {what}"
                                 for path, what in list(waiting_for.items())[:2])
    if getattr(status, "note", ""):
        text += f" ({status.note})"
    if status.captured:
        text += f", {status.captured} captured since start"
    if status.problems:
        text += f", {len(status.problems)} problem(s): " + "; ".join(
            f"{path}: {why}" for path, why in list(status.problems.items())[:2])
    return text


class WatchPanel(QWidget):
    """The rules, their state, and what each folder captured lately."""

    #: The rules were shown (after loading or saving).
    changed = Signal()
    #: The operator saved a change (the window hands the rules to the watcher).
    saved = Signal()

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("WatchPanel")
        self._context = context
        self.rules: list[Any] = []
        #: Per rule: (files safe to delete from the instrument, files captured).
        self._safe: dict[str, tuple[int, int]] = {}
        self._reloading = False
        #: Where the facility's file is, when it locks the watched folders (else None).
        self.locked_by: Optional[str] = None
        #: Returns {rule id: RuleStatus} from the running watcher (set by the window).
        self.status_provider: Optional[Any] = None
        #: Asks the running watcher to scan a rule's folder now (set by the window).
        self.scan_requester: Optional[Any] = None
        self.table = QTableWidget(0, 5, self)
        self.table.setHorizontalHeaderLabels(["Folder", "Path", "Files", "State",
                                              "Safe to delete"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._show_activity)
        self.table.doubleClicked.connect(lambda _i: self.edit_selected())
        self.activity = QTableWidget(0, 3, self)
        self.activity.setHorizontalHeaderLabels(["Captured", "File", "Datapoint"])
        self.activity.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.activity.verticalHeader().setVisible(False)
        self.activity.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.add_button = QPushButton("Add folder…", self)
        self.edit_button = QPushButton("Edit…", self)
        self.pause_button = QPushButton("Pause", self)
        self.remove_button = QPushButton("Remove", self)
        self.scan_button = QPushButton("Scan now", self)
        self.scan_button.setToolTip("Look at the folder now instead of waiting for events")
        self.scan_button.clicked.connect(self.scan_selected)
        self.add_button.clicked.connect(self.add_rule)
        self.edit_button.clicked.connect(self.edit_selected)
        self.pause_button.clicked.connect(self.toggle_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.message = QLabel("", self)
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.edit_button, self.pause_button, self.remove_button,
                       self.scan_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.table)
        splitter.addWidget(self.activity)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message)
        self.reload()

    # -- reading ---------------------------------------------------------------------------

    def refresh_if_shown(self) -> None:
        """Live while shown: the watcher publishes each folder's state into the store, so
        the window calls this on every commit (``app.ui.changes``)."""
        if self.isVisible() and not self._reloading:
            self.reload()

    def scan_selected(self) -> None:
        rule = self.selected_rule()
        if rule is None or self.scan_requester is None:
            return
        requester, rule_id = self.scan_requester, rule.id
        self._context.tasks.run(lambda: requester(rule_id),
                                lambda _r: self.message.setText(f"Scanning {rule.name} now."),
                                lambda error: self.message.setText(
                                    f"Cannot scan now: {describe_error(error)}"), write=True)

    def reload(self) -> None:
        from app.ingest.ledger import Ledger
        from app.ingest.rules import load_rules

        paths, provider = self._context.service.paths, self.status_provider
        store = self._context.service.store

        def work() -> tuple[list[Any], dict[str, Any], Optional[str], dict[str, Any]]:
            statuses: dict[str, Any] = {}
            if provider is not None:
                try:
                    statuses = dict(provider() or {})
                except Exception:  # noqa: BLE001 - the rules still show
                    log.debug("watcher status unavailable", exc_info=True)
            try:
                safe = Ledger(store).safe_to_delete()
            except Exception:  # noqa: BLE001 - the rules still show
                log.debug("safe-to-delete counts unavailable", exc_info=True)
                safe = {}
            return load_rules(paths), statuses, watch_locked_by(), safe

        self._reloading = True
        self._context.tasks.run(work, self._loaded, self._load_failed)

    def _load_failed(self, error: BaseException) -> None:
        self._reloading = False
        self.message.setText(f"The watched-folder settings cannot be read: "
                             f"{describe_error(error)}")

    def _loaded(self, found: tuple[list[Any], dict[str, Any], Optional[str],
                                   dict[str, Any]]) -> None:
        self._reloading = False
        rules, statuses, self.locked_by, self._safe = found
        self._show_rules(rules, statuses)

    def _safe_item(self, rule_id: str) -> QTableWidgetItem:
        safe, total = self._safe.get(rule_id, (0, 0))
        item = QTableWidgetItem(f"{safe} of {total} files" if total else "no files yet")
        item.setToolTip(f"{safe} of the {total} file(s) captured from this folder have a "
                        "verified central copy: their originals are safe to delete from the "
                        "instrument. The others are not yet.")
        return item

    def _show_rules(self, rules: list[Any], statuses: Optional[dict[str, Any]] = None) -> None:
        self.rules = list(rules)
        statuses = statuses or {}
        self.table.setRowCount(len(rules))
        for row, rule in enumerate(rules):
            self.table.setItem(row, 0, QTableWidgetItem(rule.name))
            self.table.setItem(row, 1, QTableWidgetItem(rule.path))
            self.table.setItem(row, 2, QTableWidgetItem(", ".join(rule.include)))
            state = QTableWidgetItem(_state_text(rule, statuses.get(rule.id)))
            state.setToolTip(state.text())
            self.table.setItem(row, 3, state)
            self.table.setItem(row, 4, self._safe_item(rule.id))
        if self.locked_by:
            self.message.setText(f"The watched folders are set by the facility "
                                 f"({self.locked_by}) and cannot be changed on this bench.")
        elif not rules:
            self.message.setText("No watched folders. Add one and the instrument's files are "
                                 "captured as soon as they are complete.")
        else:
            self.message.setText("Saved changes go to the folder watcher at once. Select a "
                                 "folder to see what it captured lately.")
        self._update_buttons()
        self.changed.emit()

    def selected_rule(self) -> Any:
        rows = self.table.selectionModel().selectedRows()
        return self.rules[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        rule = self.selected_rule()
        editable = self.locked_by is None
        self.add_button.setEnabled(editable)
        for button in (self.edit_button, self.pause_button, self.remove_button):
            button.setEnabled(rule is not None and editable)
        self.pause_button.setText("Resume" if rule is not None and not rule.enabled else "Pause")
        self.scan_button.setEnabled(rule is not None and rule.enabled)

    def _show_activity(self) -> None:
        self._update_buttons()
        rule = self.selected_rule()
        self.activity.setRowCount(0)
        if rule is None:
            return
        context = self._context
        context.tasks.run(lambda: recent_activity(context, rule.id), self._fill_activity,
                          lambda _e: None)

    def _fill_activity(self, rows: list[tuple[str, str, str]]) -> None:
        self.activity.setRowCount(len(rows))
        for row, (when, rel_path, datapoint_id) in enumerate(rows):
            self.activity.setItem(row, 0, QTableWidgetItem(local_time(when)))
            self.activity.setItem(row, 1, QTableWidgetItem(rel_path))
            self.activity.setItem(row, 2, QTableWidgetItem(datapoint_id))

    # -- changing ----------------------------------------------------------------------------

    def _write(self, work: Any) -> None:
        self._context.tasks.run(work, lambda _r: (self.saved.emit(), self.reload()),
                                lambda error: self.message.setText(
                                    f"Not saved: {describe_error(error)}"), write=True)

    def add_rule(self) -> RuleDialog:
        dialog = RuleDialog(None, self)
        dialog.accepted.connect(lambda: self.save_new(dialog.folder.text().strip(), dialog.fields()))
        dialog.open()
        return dialog

    def save_new(self, folder: str, fields: dict[str, Any]) -> None:
        from app.ingest.rules import add_rule

        paths = self._context.service.paths
        if not fields.get("name"):
            fields.pop("name", None)
        self._write(lambda: add_rule(paths, folder, **fields))

    def edit_selected(self) -> Optional[RuleDialog]:
        rule = self.selected_rule()
        if rule is None or self.locked_by is not None:
            return None
        dialog = RuleDialog(rule, self)
        dialog.accepted.connect(lambda: self.save_changes(
            rule.id, {"path": dialog.folder.text().strip(), **dialog.fields()}))
        dialog.open()
        return dialog

    def save_changes(self, rule_id: str, changes: dict[str, Any]) -> None:
        from app.ingest.rules import update_rule

        paths = self._context.service.paths
        self._write(lambda: update_rule(paths, rule_id, changes))

    def toggle_selected(self) -> None:
        rule = self.selected_rule()
        if rule is not None:
            self.save_changes(rule.id, {"enabled": not rule.enabled})

    def remove_selected(self, confirmed: bool = False) -> None:
        from app.ingest.rules import remove_rule

        rule = self.selected_rule()
        if rule is None:
            return
        if not confirmed and QMessageBox.question(
                self, "Remove watched folder",
                f"Stop watching {rule.path}? Files already captured stay captured.") \
                != QMessageBox.StandardButton.Yes:
            return
        paths = self._context.service.paths
        self._write(lambda: remove_rule(paths, rule.id))
