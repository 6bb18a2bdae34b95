"""What a shell does so that a small job takes little more than its own work: Python's cyclic
garbage collector is paused while torch and the engine are imported, what they made is then
frozen out of its sight (``gc.freeze``), and at the end the process leaves without tearing all
of it down module by module.

Importing torch, xarray and rioxarray leaves about 250,000 objects for the collector to track,
nearly all alive as long as the process. With the collector on, the collections that the
imports' allocations trigger walk them again and again; paused, the same objects would all be
walked by the first collections after it resumes, unless frozen first; and tearing them down at
exit costs as much again. Measured on the 2-core machine (medians; bench/RESULTS.md): `python -c
"import torch, xarray, rioxarray"` 3.39 s as it is, 2.31 s paused and frozen (imports 2.02 s
instead of 2.49 s, exit 0.3 s instead of 0.9 s); `ofa classify` of one chip 2.95 s paused but not
frozen, 2.64 s frozen; the remaining exit, ~0.2 s of torch's teardown, is what ``run_and_exit``
skips once the exit handlers have run and the output is flushed.

Only the shells (the ``ofa`` command, with it the QGIS worker) do this; library functions leave
the collector and the process as they find them.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn


@contextmanager
def loading() -> Iterator[None]:
    """Pause the cyclic collector for the block, then freeze everything alive and resume it.

    What is garbage before the block is collected first (cheap: earlier blocks froze the bulk),
    so that a long-lived process that loads more later never freezes garbage. Inside a block
    that paused it already (or with the collector off), it changes nothing."""
    if not gc.isenabled():
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # unfrozen, the first collections after the pause would walk it all
        gc.enable()


def run_and_exit(main: Callable[[], int]) -> NoReturn:
    """Run a command's ``main`` and end the process with its exit code: as ``sys.exit`` does
    (threads joined, every exit handler run), then at once (``os._exit``), skipping the
    teardown of every imported module. When ``main`` raises (``SystemExit`` from argparse
    too), the process ends the usual way."""
    code: list[int] = []
    atexit.register(_leave, code)  # runs after every handler registered later (all, in `ofa`)
    code.append(main())
    sys.exit(code[0])


def _leave(code: list[int]) -> None:
    if not code:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(code[0])
