"""An engine run as a QgsTask: the worker process streams its progress; the result is handed back
on the main thread (``finished``). The engine's setup is setup_dialog.SetupTask."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal, pyqtSlot

from . import engine

LOG_TAG = "OFA Explore"


def log(text: str, level=Qgis.Info) -> None:
    QgsMessageLog.logMessage(text, LOG_TAG, level=level)


class EngineTask(QgsTask):
    """Runs ``job`` in the engine; ``on_done(task, ok)`` gets ``task.info`` (the result event)
    or ``task.error`` (a message for the user; None when cancelled). ``status`` carries what the
    job waits for ("starting the engine", then ""), shown in the task's description."""

    status = pyqtSignal(str)

    def __init__(
        self,
        description: str,
        runner: engine.Engine,
        job: engine.Job,
        on_done: Callable[[EngineTask, bool], None],
    ):
        super().__init__(description, QgsTask.CanCancel)
        self.runner, self.job, self.on_done = runner, job, on_done
        self.info: dict | None = None
        self.error: str | None = None
        self.title = description
        self.status.connect(self._show_status)  # emitted in the task's thread, shown in QGIS's

    def run(self) -> bool:
        try:
            self.info = engine.run(
                self.runner,
                self.job,
                progress=self.setProgress,
                cancelled=self.isCanceled,
                log=log,
                status=self.status.emit,
            )
            return True
        except engine.Cancelled:
            return False
        except engine.EngineError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown in the message bar, never a crash
            self.error = f"{type(err).__name__}: {err}"
        return False

    @pyqtSlot(str)
    def _show_status(self, text: str) -> None:
        self.setDescription(f"{self.title} ({text}…)" if text else self.title)

    def finished(self, ok: bool) -> None:
        if not ok and self.error is None:  # QGIS's own "Task failed: ..." then says so too
            self.setDescription(f"{self.title}: cancelled, nothing was written")
        self.on_done(self, ok)
