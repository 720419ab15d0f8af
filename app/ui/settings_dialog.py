"""Settings: bench identity, data directory, and the central store (with Test connection)."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.config import load_section, save_section
from app.core.paths import choose_data_dir, chosen_data_dir, data_dir_is_overridden
from app.ui.connection_check import CheckResult, check_central
from app.ui.context import BENCH_SECTION, UiContext
from app.ui.tasks import describe_error

PRESET_CHOICES = (("SeaweedFS / MinIO (on site)", "seaweedfs"), ("AWS S3", "aws"),
                  ("Google Cloud Storage (HMAC keys)", "gcs"), ("Other S3-compatible", "custom"))
IDENTITY_FIELDS = (("user", "Operator (user)"), ("node", "Instrument (node)"), ("lab", "Lab"))


class SettingsDialog(QDialog):
    """Edits the ``bench`` and ``central`` configuration sections (secrets to the keyring)."""

    #: The connection test finished; argument: the list of CheckResult.
    tested = Signal(list)
    saved = Signal()

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("SettingsDialog")
        self._context = context
        self.results: list[CheckResult] = []
        paths = context.service.paths
        tabs = QTabWidget(self)

        bench = QWidget(self)
        bench_form = QFormLayout(bench)
        identity = context.bench_identity()
        self.identity: dict[str, QComboBox] = {}
        names = context.known_names()
        for kind, title in IDENTITY_FIELDS:
            combo = QComboBox(self)
            combo.setEditable(True)
            combo.addItems(names.get(kind, []))
            combo.setEditText(str(identity.get(kind, "")))
            combo.lineEdit().setPlaceholderText("a name, e.g. alice / hplc-2 / biolab")
            bench_form.addRow(f"{title}:", combo)
            self.identity[kind] = combo
        hint = QLabel("New captures default to these names (the capture dialog can change "
                      "them per capture).", self)
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        bench_form.addRow(hint)
        data_row = QHBoxLayout()
        self.data_dir = QLineEdit(str(paths.data_dir), self)
        self.data_dir.setReadOnly(True)
        open_dir = QPushButton("Open", self)
        open_dir.clicked.connect(lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(paths.data_dir))))
        self.change_data_dir = QPushButton("Change…", self)
        self.change_data_dir.clicked.connect(self._choose_data_dir)
        data_row.addWidget(self.data_dir, 1)
        data_row.addWidget(open_dir)
        data_row.addWidget(self.change_data_dir)
        bench_form.addRow("Data directory:", data_row)
        self.data_dir_hint = QLabel(self._data_dir_hint(), self)
        self.data_dir_hint.setObjectName("hint")
        self.data_dir_hint.setWordWrap(True)
        bench_form.addRow(self.data_dir_hint)
        if data_dir_is_overridden() or context.data_dir_given:
            self.change_data_dir.setEnabled(False)
            self.change_data_dir.setToolTip(
                "This window was started with --data-dir or BENCHDATA_HOME, which decide "
                "the data directory.")
        tabs.addTab(bench, "Bench")

        central = QWidget(self)
        central_layout = QVBoxLayout(central)
        self.central_error = QLabel("", self)
        self.central_error.setObjectName("error")
        self.central_error.setWordWrap(True)
        self.locked_note = QLabel("", self)
        self.locked_note.setObjectName("hint")
        self.locked_note.setWordWrap(True)
        self.locked_note.setVisible(False)
        settings = self._load_central()
        s3_box = QGroupBox("Object storage (files)", self)
        s3 = QFormLayout(s3_box)
        self.preset = QComboBox(self)
        for text, value in PRESET_CHOICES:
            self.preset.addItem(text, value)
        self.endpoint = QLineEdit(self)
        self.endpoint.setPlaceholderText("host:port, e.g. 127.0.0.1:8333")
        self.secure = QCheckBox("Use HTTPS", self)
        self.ca_file = QLineEdit(self)
        self.ca_file.setPlaceholderText("optional: the lab's CA certificates (PEM)")
        self.ca_file.setToolTip(
            "Trusted instead of the public certificate authorities, for HTTPS to the bucket "
            "and for MongoDB URLs with tls=true. Leave empty for public certificates.")
        browse_ca = QPushButton("Browse…", self)
        browse_ca.clicked.connect(self._choose_ca_file)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_file, 1)
        ca_row.addWidget(browse_ca)
        self.bucket = QLineEdit(self)
        self.region = QLineEdit(self)
        self.access_key = QLineEdit(self)
        self.secret_key = QLineEdit(self)
        self.secret_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret_key.setPlaceholderText("kept in the OS keyring")
        s3.addRow("Preset:", self.preset)
        s3.addRow("Endpoint:", self.endpoint)
        s3.addRow("", self.secure)
        s3.addRow("CA bundle:", ca_row)
        s3.addRow("Bucket:", self.bucket)
        s3.addRow("Region:", self.region)
        s3.addRow("Access key:", self.access_key)
        s3.addRow("Secret key:", self.secret_key)
        mongo_box = QGroupBox("MongoDB (records)", self)
        mongo = QFormLayout(mongo_box)
        self.mongo_url = QLineEdit(self)
        self.mongo_url.setPlaceholderText("mongodb://user:password@host:27017")
        self.mongo_url.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.mongo_database = QLineEdit(self)
        self.mongo_collection = QLineEdit(self)
        mongo.addRow("URL:", self.mongo_url)
        mongo.addRow("Database:", self.mongo_database)
        mongo.addRow("Collection:", self.mongo_collection)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test connection", self)
        self.test_button.clicked.connect(self.test_connection)
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        self.test_result = QLabel("", self)
        self.test_result.setWordWrap(True)
        self.test_result.setTextFormat(Qt.TextFormat.RichText)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        from sync.settings import secrets_location

        where = QLabel(f"Secrets are stored in: {secrets_location(paths)}", self)
        where.setObjectName("hint")
        central_layout.addWidget(self.central_error)
        central_layout.addWidget(self.locked_note)
        central_layout.addWidget(mongo_box)
        central_layout.addWidget(s3_box)
        central_layout.addLayout(test_row)
        central_layout.addWidget(self.test_result)
        central_layout.addWidget(where)
        central_layout.addStretch(1)
        tabs.addTab(central, "Central store")
        self.tabs = tabs
        self._fill_central(settings)
        self.locked_fields: list[str] = []
        self._lock_provisioned()
        self.preset.currentIndexChanged.connect(self._preset_changed)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.message = QLabel("", self)
        self.message.setObjectName("error")
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(560, 640)

    # -- central settings -----------------------------------------------------------------

    @staticmethod
    def _data_dir_hint() -> str:
        chosen = chosen_data_dir()
        if data_dir_is_overridden():
            return "Set by BENCHDATA_HOME."
        if chosen is not None:
            return f"From the next start: {chosen}."
        return "Change it to keep data on another disk (takes effect at the next start)."

    def _choose_data_dir(self) -> None:
        """Pick a folder for the data directory; it takes effect at the next start."""
        current = str(self._context.service.paths.data_dir)
        folder = QFileDialog.getExistingDirectory(self, "Choose the data directory", current)
        if not folder:
            return
        try:
            target = choose_data_dir(folder)
        except Exception as exc:  # shown to the person, who can pick another folder
            QMessageBox.warning(self, "Data directory", describe_error(exc))
            return
        self.data_dir_hint.setText(self._data_dir_hint())
        QMessageBox.information(
            self, "Data directory",
            f"From the next start, Bench Data Manager keeps its data in\n{target}.\n\n"
            f"What is already captured stays in\n{current}\n"
            "(move it with 'benchdata backup' and 'benchdata restore').")

    def _choose_ca_file(self) -> None:
        chosen, _filter = QFileDialog.getOpenFileName(
            self, "The lab's CA certificates", self.ca_file.text(),
            "Certificates (*.pem *.crt *.cer);;All files (*)")
        if chosen:
            self.ca_file.setText(chosen)

    def _load_central(self) -> Any:
        """The saved settings (the facility's and this bench's files and secrets), without
        the environment's overrides: those belong to the process, not to the file."""
        from sync.settings import CentralSettings, load_section_settings

        try:
            stored = load_section_settings(self._context.service.paths)
        except Exception as exc:  # noqa: BLE001 - show the problem, start from defaults
            self.central_error.setText(f"The saved settings could not be read: {describe_error(exc)}")
            stored = CentralSettings()
        #: What saving starts from, so settings the dialog does not show are kept.
        self._stored_central = stored
        return stored

    def _lock_provisioned(self) -> None:
        """Grey out what the facility locked (``app.core.site``), saying who set it."""
        from app.core.site import is_locked, load_site, site_config_file

        try:
            site = load_site()
        except Exception as exc:  # noqa: BLE001 - shown; nothing is locked then
            self.central_error.setText(describe_error(exc))
            return
        note = f"Set by the facility ({site_config_file()}); it cannot be changed here."
        fields = {"preset": self.preset, "endpoint": self.endpoint, "secure": self.secure,
                  "ca_file": self.ca_file, "bucket": self.bucket, "region": self.region,
                  "access_key": self.access_key, "mongo_database": self.mongo_database,
                  "mongo_collection": self.mongo_collection}
        self.locked_fields = [key for key in fields if is_locked(site, "central", key)]
        for key in self.locked_fields:
            fields[key].setEnabled(False)
            fields[key].setToolTip(note)
        if self.locked_fields:
            self.locked_note.setText(f"Greyed-out settings are set by the facility "
                                     f"({site_config_file()}).")
            self.locked_note.setVisible(True)

    def _fill_central(self, settings: Any) -> None:
        index = self.preset.findData("seaweedfs" if settings.preset == "minio" else settings.preset)
        self.preset.setCurrentIndex(max(0, index))
        self.endpoint.setText(settings.endpoint or "")
        self.secure.setChecked(settings.secure)
        self.ca_file.setText(settings.ca_file or "")
        self.bucket.setText(settings.bucket or "")
        self.region.setText(settings.region or "")
        self.access_key.setText(settings.access_key or "")
        self.secret_key.setText(settings.secret_key.get_secret_value() if settings.secret_key else "")
        self.mongo_url.setText(settings.mongo_url.get_secret_value() if settings.mongo_url else "")
        self.mongo_database.setText(settings.mongo_database)
        self.mongo_collection.setText(settings.mongo_collection)

    def _preset_changed(self, _index: int) -> None:
        from sync.settings import PRESETS

        preset = PRESETS.get(self.preset.currentData() or "custom", {})
        # A preset fills in what the facility left open; locked fields keep their values.
        if "endpoint" in preset and self.endpoint.isEnabled():
            self.endpoint.setText(preset["endpoint"])
        if "secure" in preset and self.secure.isEnabled():
            self.secure.setChecked(bool(preset["secure"]))
        if "region" in preset and self.region.isEnabled():
            self.region.setText(preset["region"])

    def central_settings(self) -> Any:
        """The settings as typed over the saved ones (raises for bad input)."""
        from sync.settings import CentralSettings

        endpoint = self.endpoint.text().strip()
        secure = self.secure.isChecked()
        if "://" in endpoint:  # stored bare: the scheme says whether to use TLS
            secure = endpoint.lower().startswith("https://")
        shown = dict(
            preset=self.preset.currentData() or "custom",
            endpoint=endpoint or None,
            secure=secure,
            ca_file=self.ca_file.text().strip() or None,
            bucket=self.bucket.text().strip() or None,
            region=self.region.text().strip() or None,
            access_key=self.access_key.text().strip() or None,
            secret_key=self.secret_key.text() or None,
            mongo_url=self.mongo_url.text().strip() or None,
            mongo_database=self.mongo_database.text().strip() or "madsci_data",
            mongo_collection=self.mongo_collection.text().strip() or "datapoints",
        )
        return CentralSettings(**{**self._stored_central.model_dump(), **shown})

    def test_connection(self) -> None:
        try:
            settings = self.central_settings()
        except Exception as exc:  # noqa: BLE001
            self.test_result.setText(f"<span style='color:#c62828'>✗ {describe_error(exc)}</span>")
            return
        self.test_button.setEnabled(False)
        self.test_result.setText("Testing…")
        self._context.tasks.run(lambda: check_central(settings), self._tested,
                                lambda error: self._tested([CheckResult(
                                    "Test", False, describe_error(error))]))

    def _tested(self, results: list[CheckResult]) -> None:
        from html import escape

        self.results = results
        self.test_button.setEnabled(True)
        lines = []
        for result in results:
            colour, mark = ("#1e7d32", "✓") if result.ok else ("#c62828", "✗")
            lines.append(f"<span style='color:{colour}'><b>{mark} {escape(result.what)}</b>: "
                         f"{escape(result.detail)}</span>")
        self.test_result.setText("<br>".join(lines))
        self.tested.emit(results)

    # -- saving -----------------------------------------------------------------------------

    def save(self) -> None:
        paths = self._context.service.paths
        identity = {kind: combo.currentText().strip() for kind, combo in self.identity.items()
                    if combo.currentText().strip()}
        try:
            central = self.central_settings()
        except Exception as exc:  # noqa: BLE001
            self.message.setText(f"Not saved: {describe_error(exc)}")
            return

        def work() -> None:
            from sync.settings import save_settings

            section = load_section(paths, BENCH_SECTION) or {}
            section = dict(section) if isinstance(section, dict) else {}
            for kind, _title in IDENTITY_FIELDS:
                section.pop(kind, None)
            section.update(identity)
            save_section(paths, BENCH_SECTION, section)
            save_settings(paths, central)

        self._context.tasks.run(work, lambda _r: (self.saved.emit(), self.accept()),
                                lambda error: self.message.setText(
                                    f"Not saved: {describe_error(error)}"), write=True)
