"""Settings that several callers take (the engine, the model, pre-training configs, the CLI),
checked in one place so that they agree. Torch-free."""

from __future__ import annotations

from .errors import BadInput

PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # auto: bf16 where the device computes it natively


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BadInput(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
            "set {precision} to one of them",
        )
    return precision


def check_mask_ratio(mask_ratio: float) -> float:
    """The share of patches hidden: from 0 up to, not including, 1."""
    if not 0.0 <= mask_ratio < 1.0:
        raise BadInput(
            f"mask_ratio must be in [0, 1), got {mask_ratio}",
            "give {mask_ratio} a share from 0 up to, not including, 1 (0.75 hides three "
            "patches in four)",
        )
    return mask_ratio
