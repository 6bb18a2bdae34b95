"""Which device a run asks for: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked
against this machine before anything loads, so a device that is not here is one line that says
so (an OFAError), not torch's traceback halfway through a run."""

from __future__ import annotations

import re

import torch

from .errors import BadInput, literal

DEVICE_FORM = re.compile(r"(?P<type>cpu|cuda|mps)(?::(?P<index>\d+))?")
CHOICES = "auto, cpu, cuda, cuda:1 or mps"


def check_device(device: str = "auto") -> torch.device:
    """The torch device for ``device``: 'auto' -> CUDA, then Apple MPS, then CPU; a named one
    must be a device of this machine (a BadInput that names it otherwise)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    form = DEVICE_FORM.fullmatch(str(device).strip().lower())
    if form is None:
        raise BadInput(
            f"{{device}} {literal(device)} is not a device",
            f"use {{device}} {CHOICES}",
            device=str(device),
        )
    kind, index = form["type"], form["index"]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BadInput(
                f"{{device}} {literal(device)}: no CUDA GPU is available here",
                "use {device} auto or cpu",
                device=str(device),
            )
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise BadInput(
                f"{{device}} {literal(device)}: this machine has {count} CUDA GPU"
                f"{'s' * (count != 1)} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})",
                "use {device} cuda:0, auto or cpu",
                device=str(device),
            )
    if kind == "mps" and not _mps_available():
        raise BadInput(
            f"{{device}} {literal(device)}: no Apple MPS GPU is available here",
            "use {device} auto or cpu",
            device=str(device),
        )
    return torch.device(form.group(0))


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())
