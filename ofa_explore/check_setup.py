"""Check a laptop before the workshop: ``python -m ofa_explore.check_setup``.

One line per check (``ok``, ``FAIL`` or ``warn``, and what to do); the exit code is 0 when every
check passed and 1 when one failed, so that a teacher can script it for a room of machines.
Nothing is downloaded: it loads the shipped model and runs one small reconstruction.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable

MIN_PYTHON = (3, 10)
MIN_FREE_GB = 2.0  # one notebook's kernel peaks at about 1 GB; the browser needs the rest
WORKSHOP_IMPORTS = (
    "torch",
    "numpy",
    "rasterio",
    "rioxarray",
    "matplotlib",
    "ipywidgets",
    "ipyleaflet",
    "leafmap",
    "jupyterlab",
    "pyogrio",  # notebook 06 writes and reads polygons
    "shapely",
)


def check_python() -> str:
    """The Python version the package supports."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        raise RuntimeError(f"Python {version}; the notebooks need 3.10 or newer")
    return f"Python {version}"


def check_imports() -> str:
    """The libraries the notebooks import (the ``notebooks`` extra)."""
    missing = []
    for name in WORKSHOP_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise RuntimeError(
            f'not installed: {", ".join(missing)}; install with pip install -e ".[notebooks]"'
        )
    import torch

    return f"{len(WORKSHOP_IMPORTS)} libraries import (torch {torch.__version__})"


def check_model_and_inference() -> str:
    """The shipped model loads and reconstructs one sample scene, better than a trivial guess."""
    from .demo import sample_chip
    from .metrics import reconstruction_scores
    from .pretrained import load_pretrained
    from .threads import set_threads

    set_threads()
    t0 = time.perf_counter()
    model = load_pretrained()
    # at the size the model was trained on: on a quarter of it (16 patches) one unlucky mask
    # can hide most of the river and fail a sound model
    chip = sample_chip("eurosat_river.tif", model.config.img_size)
    scores = reconstruction_scores(model, chip, "s2_l1c", seed=0)
    seconds = time.perf_counter() - t0
    if not scores["model_mse"] < scores["baseline_mse"]:
        raise RuntimeError(f"the shipped model gave a wrong reconstruction: {scores}")
    return f"shipped model loaded and ran one reconstruction in {seconds:.1f} s"


def check_memory() -> str:
    """Free memory for a kernel and the browser."""
    free = free_memory_gb()
    if free is None:
        return "warn: free memory unknown here; close other programs before the day"
    if free < MIN_FREE_GB:
        raise RuntimeError(
            f"{free:.1f} GB free, {MIN_FREE_GB:g} GB needed; close other programs and check again"
        )
    return f"{free:.1f} GB free (at least {MIN_FREE_GB:g} GB needed)"


def free_memory_gb() -> float | None:
    """Available memory in GB, from psutil when installed, else /proc/meminfo (Linux)."""
    try:
        import psutil

        return psutil.virtual_memory().available / 1e9
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("Python", check_python),
    ("libraries", check_imports),
    ("model", check_model_and_inference),
    ("memory", check_memory),
]


def main() -> int:
    """Run every check, print one line each, return the exit code."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    failed = 0
    for name, check in CHECKS:
        try:
            line = check()
            status = "warn" if line.startswith("warn:") else "ok"
            line = line.removeprefix("warn: ")
        except Exception as err:  # any failure is a line, not a traceback
            status, line = "FAIL", str(err) or type(err).__name__
            failed += 1
        print(f"{status:<4}  {name:<9}  {line}", flush=True)
        if failed and name == "libraries":
            break  # the model check needs the libraries
    print("ready for the workshop" if not failed else f"{failed} check(s) failed: see above")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
