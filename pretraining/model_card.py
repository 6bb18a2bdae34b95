"""Deprecated: ``python -m pretraining.model_card`` is now
``python -m ofa_explore.pretraining.model_card``."""

import sys

from ofa_explore.pretraining.model_card import main

if __name__ == "__main__":
    print(
        "note: `-m pretraining.model_card` is deprecated and goes away in the next release; "
        "use `-m ofa_explore.pretraining.model_card`",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(main())
