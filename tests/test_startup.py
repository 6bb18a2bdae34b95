"""The shells' fast start and end (ofa_explore/startup.py): the collector paused while torch and
the engine are imported, and the process ended without its teardown, output and exit handlers
kept."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from ofa_explore.startup import loading


def test_loading_pauses_the_collector_then_freezes_what_was_loaded():
    import weakref

    class Node:
        pass

    assert gc.isenabled()
    garbage = Node()
    garbage.itself = garbage  # a cycle: only the collector frees it
    gone = weakref.ref(garbage)
    del garbage
    frozen = gc.get_freeze_count()
    try:
        with loading():
            assert gone() is None  # collected before the pause, never frozen
            assert not gc.isenabled()
            kept = [[i] for i in range(1000)]
            with loading():  # nested: the outer block decides
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
        with pytest.raises(KeyError), loading():
            raise KeyError("a failed import")
        assert gc.isenabled()  # resumed whatever happened
    finally:
        gc.unfreeze()


def test_run_and_exit_keeps_exit_code_output_and_exit_handlers():
    def run(main: str) -> subprocess.CompletedProcess:
        code = f"import atexit, sys\nfrom ofa_explore.startup import run_and_exit\n{main}"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    done = run(
        "def main():\n"
        "    atexit.register(print, 'handler ran', file=sys.stderr)\n"
        "    print('no newline, still flushed', end='')\n"
        "    return 3\n"
        "run_and_exit(main)"
    )
    assert (done.returncode, done.stdout) == (3, "no newline, still flushed")
    assert done.stderr == "handler ran\n"
    done = run("run_and_exit(lambda: sys.exit(4))")  # argparse's way out: the usual exit
    assert done.returncode == 4
