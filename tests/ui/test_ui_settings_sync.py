"""Settings (Test connection against the real servers), the sync panel, and screenshots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import grab, wait_idle
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPainter

from app.core.models import ValueDataPoint
from app.service import BenchService
from tests.support.servers import free_port


def fill_settings(dialog: Any, settings: Any, **overrides: str) -> None:
    values = {
        "endpoint": settings.endpoint, "bucket": settings.bucket, "region": "us-east-1",
        "access_key": settings.access_key,
        "secret_key": settings.secret_key.get_secret_value(),
        "mongo_url": settings.mongo_url.get_secret_value(),
        "mongo_database": settings.mongo_database,
    }
    values.update(overrides)
    dialog.preset.setCurrentIndex(dialog.preset.findData("seaweedfs"))
    for name, value in values.items():
        getattr(dialog, name).setText(value)
    dialog.secure.setChecked(False)


def run_test(qtbot: Any, dialog: Any) -> dict[str, Any]:
    with qtbot.waitSignal(dialog.tested, timeout=30_000) as tested:
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    return {r.what: r for r in tested.args[0]}


def test_test_connection_reports_what_worked(qtbot: Any, window: Any, central: Any,
                                             service: BenchService) -> None:
    dialog = window.open_settings()
    fill_settings(dialog, central)
    results = run_test(qtbot, dialog)
    assert results["MongoDB"].ok, results["MongoDB"].detail
    assert results["Object storage"].ok, results["Object storage"].detail
    assert central.bucket in results["Object storage"].detail
    assert "✓ MongoDB" in dialog.test_result.text()

    fill_settings(dialog, central, secret_key="wrong-secret")
    results = run_test(qtbot, dialog)
    assert results["MongoDB"].ok
    assert not results["Object storage"].ok
    assert "secret" in results["Object storage"].detail.lower() or \
        "denied" in results["Object storage"].detail.lower()
    assert "wrong-secret" not in dialog.test_result.text()
    dialog.tabs.setCurrentIndex(1)
    grab(dialog, "settings-dialog.png")  # one check passed, one failed: both say why

    dead = free_port()
    fill_settings(dialog, central, mongo_url=f"mongodb://127.0.0.1:{dead}",
                  endpoint=f"127.0.0.1:{free_port()}")
    results = run_test(qtbot, dialog)
    assert not results["MongoDB"].ok and str(dead) in results["MongoDB"].detail
    assert not results["Object storage"].ok
    assert "✗ MongoDB" in dialog.test_result.text()

    # Saving keeps secrets out of the configuration file.
    fill_settings(dialog, central)
    dialog.identity["user"].setEditText("alice")
    dialog.identity["lab"].setEditText("biolab")
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()
    text = service.paths.config_file.read_text(encoding="utf-8")
    assert central.secret_key.get_secret_value() not in text
    assert '"user": "alice"' in text
    from sync.settings import load_settings

    loaded = load_settings(service.paths, environ={})
    assert loaded.secret_key.get_secret_value() == central.secret_key.get_secret_value()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.sync_snapshot is not None and window.sync_snapshot.configured)


def test_sync_panel_shows_backlog_and_quarantine(qtbot: Any, window: Any,
                                                 service: BenchService) -> None:
    service.submit_many([ValueDataPoint(label=f"v{i}", value=i) for i in range(5)])
    with service.store.transaction() as conn:
        conn.execute("UPDATE datapoints SET sync_state = 'confirmed' WHERE label IN ('v0', 'v1')")
        conn.execute("UPDATE datapoints SET sync_state = 'quarantined' WHERE label = 'v2'")
    window.show_sync_panel()
    qtbot.waitUntil(lambda: window.sync_snapshot is not None and
                    window.sync_snapshot.counts.get("quarantined") == 1, timeout=10_000)
    panel = window.sync_panel
    assert panel.quarantine.rowCount() == 1 and panel.quarantine.item(0, 0).text() == "v2"
    assert "2 datapoint(s)" in panel.backlog.text()  # pending; quarantined is listed apart
    assert "need attention" in window.sync_indicator.text.text()


def test_table_follows_the_real_sync_engine(qtbot: Any, service: BenchService, central: Any,
                                            tmp_path: Path) -> None:
    """The window hosts the engine (as ``benchdata run`` does); rows turn Synced."""
    from sync.settings import save_settings

    from app.ui.application import HostedComponents, build_window

    save_settings(service.paths, central)
    source = tmp_path / "result.csv"
    source.write_text("t,v\n1,2\n", encoding="utf-8")
    service.capture_value({"t": 1}, label="before-start")
    hosted = HostedComponents(service, api=False, watch=False)
    hosted.start()
    win = build_window(service, hosted)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.component("sync") is not None, timeout=20_000)
        captured = service.capture_file(source, label="result.csv")
        win.refresh()
        qtbot.waitUntil(lambda: win.model.rowCount() == 2, timeout=10_000)

        def states() -> list[str]:
            return [win.model.index(r, 5).data() for r in range(win.model.rowCount())]

        qtbot.waitUntil(lambda: states() == ["Synced", "Synced"], timeout=60_000)
        qtbot.waitUntil(lambda: win.sync_snapshot is not None and win.sync_snapshot.engine_running
                        and win.sync_snapshot.backlog_count == 0, timeout=20_000)
        assert win.sync_indicator.text.text() == "All synced"
        qtbot.waitUntil(lambda: win.sync_snapshot.last_success is not None, timeout=20_000)
        win.select_id(captured.datapoint_id)
        qtbot.waitUntil(lambda: win.detail.datapoint_id == captured.datapoint_id)
        win.show_sync_panel()
        qtbot.waitUntil(lambda: win.sync_panel.pause_button.isEnabled())
        win.sync_panel.pause_button.setChecked(True)  # pause …
        qtbot.waitUntil(lambda: win.sync_snapshot.paused and "paused" in
                        win.sync_indicator.text.text(), timeout=20_000)
        service.capture_value({"t": 2}, label="while-paused")
        win.refresh()
        qtbot.waitUntil(lambda: "Waiting" in states(), timeout=10_000)
        win.sync_panel.pause_button.setChecked(False)  # … and resume
        qtbot.waitUntil(lambda: states() == ["Synced"] * 3, timeout=60_000)
    finally:
        win.close()
        win.context.tasks.shutdown()
        hosted.stop()


# -- screenshots ----------------------------------------------------------------------------


def sample_files(tmp: Path) -> list[Path]:
    image = QImage(640, 400, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    for i in range(8):
        for j in range(12):
            painter.setBrush(QColor.fromHsv((i * 30 + j * 5) % 360, 160, 220))
            painter.drawEllipse(20 + j * 50, 20 + i * 45, 40, 40)
    painter.end()
    plate = tmp / "plate-scan.png"
    image.save(str(plate))
    csv_file = tmp / "uv-vis-spectrum.csv"
    import math

    csv_file.write_text("wavelength_nm,absorbance,reference\n" + "".join(
        f"{300 + i},{math.exp(-((i - 120) / 40) ** 2) + 0.05:.4f},{0.05 + i / 4000:.4f}\n"
        for i in range(300)), encoding="utf-8")
    log = tmp / "run.log"
    log.write_text("run started\nstep 1 ok\n", encoding="utf-8")
    return [plate, csv_file, log]


def test_screenshots(qtbot: Any, window: Any, service: BenchService, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    owner = service.ownership(experiment="EXP-2026-042", user="alice")
    other = service.ownership(experiment="EXP-2026-041", user="bob")
    service.submit_many([ValueDataPoint(
        label=["chamber temperature", "pH", "stirrer rpm", "pressure"][i % 4],
        value={"value": round(20 + i * 0.37, 2), "unit": ["°C", "", "rpm", "mbar"][i % 4]},
        ownership_info=owner if i % 3 else other,
        data_timestamp=now - timedelta(minutes=7 * i)) for i in range(40)])
    files = sample_files(tmp_path)
    ids = [service.capture_file(p, label=p.name, ownership=owner).datapoint_id for p in files]
    with service.store.transaction() as conn:
        conn.execute("UPDATE datapoints SET sync_state = 'confirmed' WHERE rowid % 3 = 0")
        conn.execute("UPDATE datapoints SET sync_state = 'quarantined' WHERE rowid = 7")
    window.refresh()
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.detail.preview_shown, timeout=10_000):
        window.select_id(ids[1])
    qtbot.waitUntil(lambda: window.model.summary(0) is not None)
    grab(window, "main-window.png")
    grab(window.detail, "detail-csv-preview.png")
    with qtbot.waitSignal(window.detail.preview_shown, timeout=10_000):
        window.select_id(ids[0])
    grab(window.detail, "detail-image-preview.png")
    window.show_sync_panel()
    qtbot.waitUntil(lambda: window.sync_snapshot is not None and bool(window.sync_snapshot.quarantined))
    window.sync_panel.resize(900, 420)
    grab(window.sync_panel, "sync-panel.png")
    dialog = window.capture_files(files)
    qtbot.waitUntil(dialog.capture_button.isEnabled)
    dialog.form.ownership.fields["experiment"].setEditText("EXP-2026-042")
    grab(dialog, "capture-dialog.png")
    dialog.reject()
    value = window.new_value()
    value.editor.setPlainText('{"temperature": 21.5, "unit": "°C",\n "ok": tru}')
    value.validate()
    grab(value, "value-dialog.png")
    value.reject()
    instrument = tmp_path / "hplc-out"
    instrument.mkdir()
    with qtbot.waitSignal(window.watch_panel.changed, timeout=10_000):
        window.watch_panel.save_new(str(instrument), {
            "name": "HPLC out", "include": ["*.csv", "*.txt"],
            "path_template": "{experiment}/{sample}/*", "label_template": "{sample}-{stem}"})
    window.watch_panel.table.selectRow(0)
    window.watch_dock.show()
    window.watch_dock.raise_()
    window.resizeDocks([window.watch_dock], [300], Qt.Orientation.Vertical)
    grab(window.watch_dock, "watch-panel.png")
    rule = window.watch_panel.edit_selected()
    assert rule is not None
    rule.sample.setText("EXP-2026-042/S-7/run1.csv")
    grab(rule, "watch-rule-dialog.png")
    rule.reject()


def test_settings_moves_the_data_directory_from_the_next_start(
        qtbot: Any, window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from app.core import paths

    monkeypatch.delenv("BENCHDATA_HOME")
    monkeypatch.setattr(paths, "_platform_config_dir", lambda: tmp_path / "config")
    new_home = tmp_path / "second disk"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(new_home))
    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text: told.append(text))
    dialog = window.open_settings()
    assert dialog.change_data_dir.isEnabled()
    qtbot.mouseClick(dialog.change_data_dir, Qt.MouseButton.LeftButton)
    assert told and str(new_home) in told[0] and "next start" in told[0]
    assert paths.bench_paths().data_dir == new_home
    assert str(new_home) in dialog.data_dir_hint.text()
    dialog.close()


def test_data_directory_cannot_be_changed_under_benchdata_home(window: Any) -> None:
    dialog = window.open_settings()
    assert not dialog.change_data_dir.isEnabled()
    assert "BENCHDATA_HOME" in dialog.data_dir_hint.text()
    dialog.close()


def test_settings_keep_the_lab_ca_bundle(qtbot: Any, window: Any, central: Any,
                                         service: BenchService, tmp_path: Path) -> None:
    """The CA bundle (for a lab's own certificate authority) is saved and shown again."""
    from sync.settings import load_settings

    bundle = tmp_path / "lab-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    dialog = window.open_settings()
    fill_settings(dialog, central, ca_file=str(bundle))
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()
    assert load_settings(service.paths, environ={}).ca_file == str(bundle)
    wait_idle(qtbot, window)
    again = window.open_settings()
    assert again.ca_file.text() == str(bundle)
    again.close()
