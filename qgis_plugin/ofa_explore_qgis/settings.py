"""The plugin's settings (QgsSettings): the engine's Python and the output folder."""

from __future__ import annotations

import os

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


def output_folder():
    """The folder results are written to (see engine.output_folder)."""
    return engine.output_folder(
        value("output_folder") or None, QgsProject.instance().homePath() or None
    )
