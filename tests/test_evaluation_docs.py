"""docs/EVALUATION.md's change section is what scripts/evaluate_change.py makes of the figures
it kept (docs/change_evaluation.json): a prose edit in the script that was not written out with
``--write-only``, or a hand edit of the section, fails here rather than drifting apart."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "evaluate_change", ROOT / "scripts" / "evaluate_change.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_change_section_is_written_from_the_kept_figures():
    script = _script()
    figures = json.loads(script.FIGURES.read_text())
    doc = (ROOT / "docs" / "EVALUATION.md").read_text()
    assert script.section(figures) in doc
    # and the figures are the ones the tables show
    pooled = figures["pooled"]["trained head"]
    row = next(line for line in doc.splitlines() if line.startswith("| **trained change head**"))
    assert row.endswith(f"| {pooled[0]:.3f} | {pooled[1]:.3f} | {pooled[2]:.3f} |")
