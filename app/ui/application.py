"""Start the window: the QApplication, the service, the hosted components, the main window."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Optional

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core import capture_notes
from app.service import BenchService
from app.ui.attach import describe_components, describe_service, try_lock
from app.ui.context import UiContext, gui_settings
from app.ui.main_window import MainWindow
from app.ui.resources import icon, stylesheet
from app.ui.service_process import capture_in_own_process
from app.ui.single_instance import WindowServer, raise_running_window
from app.ui.tasks import TaskManager, lower_thread_priority

log = logging.getLogger(__name__)


def make_application(argv: Optional[list[str]] = None) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):  # pytest-qt's, or an embedding application's
        if not existing.styleSheet():
            existing.setStyleSheet(stylesheet())
        return existing
    QCoreApplication.setOrganizationName("BenchData")
    QCoreApplication.setApplicationName("Bench Data Manager")
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(argv if argv is not None else sys.argv[:1])
    # Wayland matches windows to their menu entry by this name (packaging/benchdata.desktop).
    QGuiApplication.setDesktopFileName("benchdata")
    app.setWindowIcon(icon("app"))
    app.setStyleSheet(stylesheet())
    return app


class _Guarded:
    """A component whose failure to start is reported, not fatal to the others."""

    def __init__(self, component: Any, report: Callable[[str], None]) -> None:
        self._component = component
        self._report = report
        self.name = component.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._component, name)

    def start(self) -> None:
        try:
            self._component.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the API port is taken
            log.exception("starting %s failed", self.name)
            self._report(f"The {self.name} component could not start: {exc}")

    def stop(self) -> None:
        self._component.stop()


class HostedComponents:
    """The same components ``benchdata run`` starts (watcher, API, sync), off the GUI thread.

    Unlike the headless service, one component failing (say, the REST API's port is taken
    by a running ``benchdata run``) does not keep the others from starting; the window
    shows the reason in its status bar.
    """

    def __init__(self, service: BenchService, lock: Any = None, **options: Any) -> None:
        from app.runner import HeadlessRunner, RunOptions, component_factories

        self.errors: list[str] = []
        self.report: Callable[[str], None] = self.errors.append
        self.options = options
        factories = [self._tolerant(factory) for factory in component_factories()]
        self.runner = HeadlessRunner(service, RunOptions(**options), factories=factories)
        self.runner.lock = lock  # taken by the caller already, or None: the runner takes it
        self._thread = threading.Thread(target=self._start, name="ui-components", daemon=True)

    def _tolerant(self, factory: Callable[[BenchService, Any], Any]
                  ) -> Callable[[BenchService, Any], Any]:
        from app.runner import factory_name

        def make(service: BenchService, options: Any) -> Any:
            try:
                component = factory(service, options)
            except Exception as exc:  # noqa: BLE001 - settings broken, package missing …
                log.exception("setting up %s failed", factory_name(factory))
                self._report(f"{factory_name(factory)} could not be set up: {exc}")
                return None
            return _Guarded(component, self._report) if component is not None else None

        return make

    def _report(self, message: str) -> None:
        self.errors.append(message)
        self.report(message)

    @property
    def components(self) -> list[Any]:
        return self.runner.components

    def reload(self, name: str) -> Any:
        """Apply saved settings to one component (``HeadlessRunner.reload``; blocks, so
        call it off the GUI thread)."""
        return self.runner.reload(name)

    def start(self) -> None:
        self._thread.start()

    def _start(self) -> None:
        lower_thread_priority()  # inherited by every thread the components start
        try:
            self.runner.start()
        except Exception as exc:  # noqa: BLE001 - the window works without them
            self._report(f"Background services could not start: {exc}")

    def stop(self) -> None:
        self._thread.join(timeout=30)
        self.runner.stop()


#: ``BENCHDATA_GUI_SMOKE=1``: open the window, print one line once it shows its rows, quit
#: (a start-up check for packaging and end-to-end tests).
SMOKE_ENV = "BENCHDATA_GUI_SMOKE"


def _quit_when_ready(app: QApplication, window: MainWindow) -> None:
    def ready(total: int) -> None:
        hosted = window.runner.components if window.runner is not None else []
        holder = window.attachment.holder if window.attachment is not None else None
        attached = (f"; {describe_service(holder)} ({describe_components(holder)})"
                    if holder is not None else "")
        print(f"window ready: {total} datapoint(s); components: "
              f"{', '.join(c.name for c in hosted) or 'none'}{attached}", flush=True)
        app.quit()

    window.model.count_known.connect(ready)


def build_window(service: BenchService, runner: Any = None, *,
                 data_dir_given: bool = False) -> MainWindow:
    tasks = TaskManager()
    context = UiContext(service=service, tasks=tasks, settings=gui_settings(service),
                        data_dir_given=data_dir_given)
    window = MainWindow(context, runner)
    tasks.setParent(window)
    return window


def run(data_dir: Optional[str] = None, argv: Optional[list[str]] = None,
        components: bool = True, **options: Any) -> int:
    from app.admin.logs import WINDOW_LOG_NAME, setup_logging
    from app.core.paths import bench_paths

    app = make_application(argv)
    capture_notes.set_front_end(capture_notes.WINDOW)
    paths = bench_paths(data_dir)
    if raise_running_window(paths.data_dir):
        print("Bench Data Manager is already open on this store; brought it to the front.",
              flush=True)
        return 0
    try:
        setup_logging(paths, name=WINDOW_LOG_NAME)  # console + rotating file, redacted
    except OSError as exc:  # an unwritable log folder must not keep the window closed
        logging.basicConfig(level=logging.INFO)
        log.warning("cannot write the log file in %s: %s", paths.log_dir, exc)
    try:
        service = BenchService(data_dir)
    except Exception as exc:  # noqa: BLE001 - say why, instead of a traceback
        log.exception("the local store cannot be opened")
        QMessageBox.critical(None, "Bench Data Manager", f"The local store cannot be opened:\n{exc}")
        return 1
    window = build_window(service, data_dir_given=data_dir is not None)
    instances = WindowServer(paths.data_dir, window.bring_to_front, window)
    window.component_options = dict(options)
    if components and capture_in_own_process():
        # Capture outlives the window: its own process, started if none runs, attached to.
        window.start_capture()
    elif components:
        start_or_attach(window, options)
    window.show()
    if os.environ.get(SMOKE_ENV):
        _quit_when_ready(app, window)
    else:
        window.ask_first_run_questions()
    try:
        return app.exec()
    finally:
        instances.close()
        window.context.tasks.shutdown()
        if window.attachment is not None:
            window.attachment.stop()
        if window.runner is not None:
            window.runner.stop()
        service.close()


def start_or_attach(window: MainWindow, options: dict[str, Any]) -> None:
    """Host the watcher, API and sync in this window, or attach to the service that runs
    them already (one service per store); take over if that service stops later."""
    service = window.context.service
    try:
        lock, holder = try_lock(service)
    except OSError as exc:  # e.g. a read-only data folder: browsing still works
        window.show_message(f"Background services could not start: {exc}")
        return
    if lock is not None:
        window.host_components(HostedComponents(service, lock=lock, **options))
        return
    assert holder is not None
    window.attach_to_service(holder, lambda taken: HostedComponents(
        service, lock=taken, **options))
