"""`python -m ofa_explore ...`: the `ofa` command line."""

from .cli import run

run()
