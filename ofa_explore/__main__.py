"""`python -m ofa_explore ...`: the `ofa` command line."""

import sys

from .cli import main

sys.exit(main())
