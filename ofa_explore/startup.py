"""What a shell does so that a small job starts in about a second: Python's cyclic garbage
collector is paused while torch and the engine are imported, and what they made is then frozen
out of its sight (``gc.freeze``).

Importing torch, xarray and rioxarray leaves about 250,000 objects for the collector to track,
nearly all of them alive as long as the process; the collections their allocations trigger walk
them again and again, and so does the process's exit. Paused and frozen, `python -c "import
torch, xarray, rioxarray"` took 2.31 s instead of 3.39 s (median of 10 on the 2-core machine at
load 2.2: the imports 2.02 s instead of 2.49 s, the exit 0.3 s instead of 0.9 s). Objects made
afterwards (the run's) are collected as usual. Only the shells (the ``ofa`` command, with it the QGIS worker)
do this; library functions leave the collector as they find it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def loading() -> Iterator[None]:
    """Pause the cyclic collector for the block, then freeze everything alive and resume it.
    Inside a block that paused it already (or with the collector off), it changes nothing."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
