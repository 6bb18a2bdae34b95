"""The project's errors: problems a user can fix, each with a structured hint.

A message has two parts: ``problem`` (what is wrong, in neutral words) and ``fix`` (what to do).
Both name settings as ``{placeholders}`` (``{output}``, ``{modality}``, ``{overwrite}``) that
each shell renders in its own words (write a literal brace as ``{{``): the Python API says
``overwrite=True``, the command line ``--overwrite``, QGIS names its dialog's fields ("Output
folder"). A placeholder names a setting where a noun fits in every vocabulary. Only these
errors are "bad input" (exit 2); any other exception is a bug and shows its traceback.

Torch-free and numpy-free: the QGIS plugin ships a copy of this file.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # an unexpected error: a bug, with its traceback
EXIT_BAD_INPUT = 2  # an OFAError: the message says what to change
EXIT_SCENES_FAILED = 3  # some of several scenes failed; the others were written
EXIT_CANCELLED = 130  # Ctrl-C, or SIGTERM for a running job

# How a refusal says that some of a sensor's bands are named after it, where a name can be typed
# (not in QGIS's Sensor list or a widget's drop-down, which offer their own)
SOME_BANDS = (
    "; some of a sensor's bands by their names after its own, such as s2_l2a_b02_b03_b04_b08 "
    "or s1_grd_vv"
)

# How each shell names a setting; a name missing from a vocabulary is shown as it is.
API_WORDS: dict[str, str] = {
    "output": "the output path",
    "overwrite": "overwrite=True",
    "modality": "modality=",
    "bands": "bands=",
    "checkpoint": "checkpoint=",
    "head": "head=",
    "device": "device=",
    "precision": "precision=",
    "threshold": "threshold=",
    "polygons": "polygons=",
    "members": "members=",
    "pool": "pool=",
    "tile": "tile=",
    "overlap": "overlap=",
    "batch_size": "batch_size=",
    "mask_ratio": "mask_ratio=",
    "threads": "set_threads()",
    "train_head": "ofa_explore.downstream.train_head()",
    "modalities": "list_modalities()",
    "data": "data=",
    "config": "the config",
    "nodata": "nodata=",
    "dask": "cluster='local'",
    "scheduler": "cluster=ADDRESS",
    "workers": "workers=",
    "benchmark": "ofa_explore.downstream.geobench.run_geobench()",
    "convert": "ofa_explore.load_model(NAME)",
    "some_bands": SOME_BANDS,
}
CLI_WORDS: dict[str, str] = {
    "output": "-o",
    "overwrite": "--overwrite",
    "modality": "--modality",
    "bands": "--bands",
    "checkpoint": "--checkpoint",
    "head": "--head",
    "device": "--device",
    "precision": "--precision",
    "tile": "--tile",
    "overlap": "--overlap",
    "batch_size": "--batch-size",
    "mask_ratio": "--mask-ratio",
    "threads": "--threads",
    "train_head": "`ofa train-head`",
    "modalities": "`ofa modalities`",
    "data": "--data",
    "config": "the config file",
    "nodata": "--nodata",
    "dask": "--dask",
    "scheduler": "--scheduler",
    "workers": "--workers",
    "benchmark": "--benchmark geobench --root DIR",
    "convert": "`ofa convert`",
    "threshold": "--threshold",
    "polygons": "--polygons",
    "members": "--members",
    "pool": "--pool",
    "some_bands": SOME_BANDS,
}

# The QGIS plugin's: its dialog's field labels, bare, as a user reads them on screen ("choose
# another Output folder", "use a smaller Tile size or Run on cpu"); every fix must read well
# with these too (tests/test_qgis_engine.py renders each one).
QGIS_WORDS: dict[str, str] = {
    "output": "Output folder",
    "overwrite": "the overwrite option",
    "modality": "Sensor",
    "modalities": "the Sensor list",
    "bands": "Bands",
    "checkpoint": "Model",
    "head": "Classes from",
    "device": "Run on",
    "precision": "precision",
    "tile": "Tile size",
    "overlap": "tile overlap",
    "batch_size": "batch size",
    "mask_ratio": "share of hidden patches",
    "threads": "the OFA_EXPLORE_THREADS variable",
    "train_head": "`ofa train-head` in the engine's environment",
    "data": "labelled data",
    "config": "the config file",
    "nodata": "the nodata value",
    "convert": "`ofa convert` in the engine's environment",
    "threshold": "Threshold",
    "polygons": "Changed areas",
    "pool": "the pooling of the head",
    "some_bands": "",  # its Sensor list offers those of a sensor's bands files commonly hold
}


class _Words(dict):
    def __missing__(self, key: str) -> str:
        return key


class OFAError(Exception):
    """A problem the user can fix (bad input, a missing file, an unfit model)."""

    kind = "bad_input"

    def __init__(self, problem: str, fix: str = "", **context: Any):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.context = context

    def render(self, words: Mapping[str, str] = API_WORDS) -> str:
        """One line: the problem, then the fix in the given vocabulary."""
        return _line(self.problem, self.fix, words)

    def __str__(self) -> str:
        return self.render(API_WORDS)

    def to_event(self, words: Mapping[str, str] = CLI_WORDS) -> dict[str, Any]:
        """The JSON ``error`` event a worker sends: the parts, and the line in ``words``."""
        return {
            "event": "error",
            "kind": self.kind,
            "problem": self.problem,
            "fix": self.fix,
            "message": self.render(words),
        }


class BadInput(OFAError, ValueError):
    """An argument, a file's content or a combination of settings that cannot work."""


class NotFound(OFAError, FileNotFoundError):
    """A file, folder, modality, head or published model that does not exist."""

    kind = "not_found"


class OutputError(OFAError, OSError):
    """An output that cannot be written (exists, read-only folder, no space)."""

    kind = "output"


class OutputExists(OutputError, FileExistsError):
    """An output file exists and may not be replaced."""


class OutputNotWritable(OutputError, PermissionError):
    """The output's folder cannot be written to."""


class MissingPart(OFAError, ImportError):
    """An optional dependency is not installed; the fix names the extra to install."""

    kind = "missing_part"


class ModelMismatch(BadInput):
    """The model cannot do this with this imagery (no embedding, no fitting head)."""

    kind = "model_mismatch"


def literal(text: object) -> str:
    """A user's text (a path, a name) to put inside a problem or fix: its braces are kept as
    they are, not taken for placeholders."""
    return str(text).replace("{", "{{").replace("}", "}}")


def render_event(event: Mapping[str, Any], words: Mapping[str, str]) -> str:
    """An ``error`` event's line in another vocabulary (the QGIS plugin's words)."""
    problem = str(event.get("problem") or event.get("message") or "the engine failed")
    return _line(problem, str(event.get("fix") or ""), words)


def _line(problem: str, fix: str, words: Mapping[str, str]) -> str:
    problem, fix = _words(problem, words), _words(fix, words)
    return f"{problem}; {fix}" if fix else problem


def _words(text: str, words: Mapping[str, str]) -> str:
    try:
        return text.format_map(_Words(words))
    except (ValueError, IndexError, AttributeError):  # a stray brace (a path): shown as it is
        return text


_HERE = str(Path(__file__).parent) + os.sep  # this package's files


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the first line outside this package: the user's call (a notebook's
    cell, a script's line), however deep in the package the warning was raised. Fixed
    stacklevels pointed into the package where the same check ran through another path
    (``change()`` opening each date, a DataArray read as a file of it)."""
    depth, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_HERE):
        depth, frame = depth + 1, frame.f_back
    warnings.warn(message, category, stacklevel=depth + 1)
