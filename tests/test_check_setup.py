"""The check-your-setup script students run before the workshop, as they run it: one line per
check and an exit code, on this environment and on a Python without the libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check_setup(python: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [python, "-m", "ofa_explore.check_setup"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=180,
    )


def test_a_ready_machine_passes_every_check(tmp_path):
    done = check_setup(sys.executable, tmp_path)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[:2] for line in lines[:4]] == [
        ["ok", "Python"],
        ["ok", "libraries"],
        ["ok", "model"],
        ["ok", "memory"],
    ], lines
    assert lines[-1] == "ready for the workshop" and not done.stderr


@pytest.mark.skipif(shutil.which("python3", path="/usr/bin") is None, reason="no system Python")
def test_a_python_without_the_libraries_fails_with_one_line(tmp_path):
    done = check_setup("/usr/bin/python3", tmp_path)
    if done.stdout.startswith("ok    libraries") or "ok    libraries" in done.stdout:
        pytest.skip("the system Python has the workshop's libraries")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  libraries  not installed: " in done.stdout and "torch" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "1 check(s) failed: see above"
