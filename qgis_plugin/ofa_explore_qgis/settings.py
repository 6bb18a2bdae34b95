"""The plugin's settings (QgsSettings): the engine's Python and the output folder."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsProject, QgsSettings

from . import engine

PREFIX = "ofa_explore/"
_found: dict[str, engine.Engine] = {}


def value(name: str) -> str:
    return str(QgsSettings().value(PREFIX + name, "") or "")


def set_value(name: str, text: str) -> None:
    QgsSettings().setValue(PREFIX + name, text)
    if name == "python":
        _found.clear()


def current_engine() -> engine.Engine:
    """The configured engine (probed once per session; a failed probe is retried next time).
    Raises engine.EngineError with the setup hint."""
    key = value("python") + "|" + os.environ.get(engine.ENV_VAR, "")
    if key not in _found:
        _found[key] = engine.find_engine(value("python") or None)
    return _found[key]


def output_folder() -> tuple[Path | None, str | None]:
    """The folder results go to, and a notice when the saved one no longer works (deleted,
    read-only): that setting is forgotten and the default used, so that one bad folder never
    stops the dialogs from opening. None when not even the default can be written."""
    home = QgsProject.instance().homePath() or None
    saved = value("output_folder")
    notice = None
    if saved:
        try:
            return engine.output_folder(saved, home), None
        except engine.EngineError as err:
            set_value("output_folder", "")
            notice = f"{err} The saved Output folder was reset to the default"
    try:
        folder = engine.output_folder(None, home)
    except engine.EngineError as err:
        return None, (notice + "; " if notice else "") + str(err)
    return folder, notice + f" ({folder})." if notice else None
