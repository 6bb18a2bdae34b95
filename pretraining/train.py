"""Deprecated: ``python -m pretraining.train`` is now
``python -m ofa_explore.pretraining.train``."""

import os
import sys

from ofa_explore.pretraining.train import main

if __name__ == "__main__":
    if os.environ.get("RANK", "0") == "0":  # once per torchrun job
        print(
            "note: `-m pretraining.train` is deprecated and goes away in the next release; "
            "use `-m ofa_explore.pretraining.train`",
            file=sys.stderr,
            flush=True,
        )
    sys.exit(main())
