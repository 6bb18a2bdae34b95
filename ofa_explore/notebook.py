"""Notebook helpers: what a workshop participant sees when something they typed is wrong."""

from __future__ import annotations

from typing import Any

from .errors import OFAError


def brief_errors() -> bool:
    """In Jupyter/IPython, show a problem the user can fix (an ``OFAError``: a missing folder, a
    file of the wrong sensor) as its one-line message, without a traceback through the
    package's files and the machine's paths; any other exception (a bug) keeps its traceback.
    The cell still fails, so *Run All* stops there. Returns False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def one_line(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset=None) -> list:
        shown = [f"\x1b[31m{value}\x1b[0m"]  # red, like the first line of a traceback
        shell._showtraceback(etype, value, shown)  # the error output (IPython's own way)
        return shown

    shell.set_custom_exc((OFAError,), one_line)
    return True
