"""The background job: a QgsTask that runs the engine off the UI thread and hands the result back
on the main thread (``finished``), where layers may be added."""

from __future__ import annotations

from typing import Callable

from qgis.core import QgsTask

from . import runner


class OfaTask(QgsTask):
    """``params`` are ``runner.run``'s keywords; ``on_done(task, ok)`` runs on the main thread
    with ``task.info`` (the result) or ``task.error`` (a message; None when cancelled)."""

    def __init__(self, description: str, params: dict, on_done: Callable[["OfaTask", bool], None]):
        super().__init__(description, QgsTask.CanCancel)
        self.params, self.on_done = params, on_done
        self.info: dict | None = None
        self.error: str | None = None

    def run(self) -> bool:
        try:
            self.info = runner.run(**self.params, progress=self.setProgress,
                                   cancel=self.isCanceled)
            return True
        except Exception as err:  # noqa: BLE001 - shown to the user in the message bar
            cancelled = type(err).__name__ == "Cancelled"  # ofa_explore.inference.Cancelled
            self.error = None if cancelled else _message(err)
            return False

    def finished(self, ok: bool) -> None:
        self.on_done(self, ok)


def _message(err: Exception) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return f"{text}" if text else type(err).__name__
