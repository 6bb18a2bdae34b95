"""Background jobs as QgsTasks: an engine run (the worker process streams its progress) and the
one-time engine setup (venv + pip). Results are handed back on the main thread (``finished``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal, pyqtSlot

from . import engine, install, workers

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


class SetupTask(QgsTask):
    """Creates the engine environment (venv, torch, ofa-explore) with pip's progress; on
    success ``self.engine`` is the probed engine."""

    def __init__(
        self,
        folder: Path,
        package: str,
        torch_build: str,
        on_done: Callable[[SetupTask, bool], None],
    ):
        super().__init__("OFA Explore: setting up the engine", QgsTask.CanCancel)
        self.folder, self.package, self.torch_build = folder, package, torch_build
        self.on_done = on_done
        self.engine: engine.Engine | None = None
        self.error: str | None = None

    def run(self) -> bool:
        try:
            commands = install.setup_commands(self.folder, self.package, self.torch_build)
            for i, command in enumerate(commands):
                self._run(command, i, len(commands))
                if self.isCanceled():
                    return False
            self.engine = engine.probe(str(install.venv_python(self.folder)), "settings")
            return True
        except engine.EngineError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown in the message bar
            self.error = f"{type(err).__name__}: {err}"
        return False

    def _run(self, command: list[str], index: int, count: int) -> None:
        log("$ " + " ".join(command))
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=engine.worker_env(),
            **workers.new_group(),
        )
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            stage = install.pip_stage(line)
            if stage:  # pip repeats its stages per package: progress only moves forward
                log(stage[0])
                self.setProgress(max(self.progress(), 100.0 * (index + stage[1]) / count))
            if self.isCanceled():
                workers.stop(proc)
                return
        if proc.wait() != 0:
            raise engine.EngineError(
                f"setting up the engine failed at `{' '.join(command[:4])}"
                f" …`: " + " | ".join(tail[-4:])
            )
        self.setProgress(100.0 * (index + 1) / count)

    def finished(self, ok: bool) -> None:
        self.on_done(self, ok)
