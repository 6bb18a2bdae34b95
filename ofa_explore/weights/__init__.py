"""Published weights as a registry of records with their metadata, and loading them offline-safe.

``load_published("dofa-base-v1", path="dofa_base_patch16_224-a0275954.pth")`` converts a file
you have; without ``path`` the file is taken from the cache or downloaded once, and a machine
without internet gets a message saying how to pass a local file instead.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch.hub

from ..model import SIZES, OFANet
from .convert import ConversionError, ConversionReport, read_state_dict
from .dofa import convert_dofa_v1, convert_dofa_v2
from .ofa import convert_ofa


class WeightsUnavailableError(OSError):
    """The weights file is neither given, cached nor downloadable; the message says what to do."""


@dataclass(frozen=True)
class PublishedWeights:
    """One set of published weights: where it lives, how to read it, and its terms."""

    name: str
    layout: str  # "dofa_v1" | "dofa_v2" | "ofa"
    filename: str
    url: str | None
    licence: str
    citation: str
    description: str
    embed_dim: int  # the width the file must have (ViT-B 768, ViT-L 1024)
    kernel_layout: str = "ckkd"

    @property
    def sha256_prefix(self) -> str | None:
        """The SHA-256 prefix a TorchGeo-style name carries (``...-a0275954.pth``), else None."""
        match = re.search(r"-([0-9a-f]{8})\.[A-Za-z0-9]+$", self.filename)
        return match.group(1) if match else None

    def convert(self, state) -> OFANet:
        if self.layout == "dofa_v1":
            return convert_dofa_v1(state, kernel_layout=self.kernel_layout)
        if self.layout == "dofa_v2":
            return convert_dofa_v2(state, kernel_layout=self.kernel_layout)
        return convert_ofa(state)


def _registry() -> dict[str, PublishedWeights]:
    """The records of data/weights.json (data, so that the QGIS plugin reads them without torch)."""
    text = resources.files("ofa_explore").joinpath("data", "weights.json").read_text()
    return {r["name"]: PublishedWeights(**r) for r in json.loads(text)["weights"]}


WEIGHTS: dict[str, PublishedWeights] = _registry()


def cache_dir() -> Path:
    """Where downloaded weights are kept: $OFA_EXPLORE_CACHE, else ~/.cache/ofa_explore."""
    return Path(os.environ.get("OFA_EXPLORE_CACHE", Path.home() / ".cache" / "ofa_explore"))


def load_published(name: str, path: str | os.PathLike | None = None,
                   download: bool = True) -> OFANet:
    """An OFANet holding the published weights ``name`` (see ``WEIGHTS``).

    ``path`` is a local copy of the published file; without it the cache is tried, then a
    download (``download=False`` forbids it).
    """
    if name not in WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    entry = WEIGHTS[name]
    if path is None:
        path = fetch_weights(entry, download=download)
    state = read_state_dict(path)
    check_width(entry, state)
    model = entry.convert(state)
    model.provenance.update(weights=name, licence=entry.licence, citation=entry.citation,
                            source_file=Path(path).name)
    return model


def check_width(entry: PublishedWeights, state: dict) -> None:
    """Refuses a file whose size is not the one ``entry`` names (a ViT-S under dofa-base-v1)."""
    tokens = [v for k, v in state.items() if k in ("cls_token", "model.cls_token")]
    if tokens and tokens[0].shape[-1] != entry.embed_dim:
        width = tokens[0].shape[-1]
        found = next((f"ViT-{n[0].upper()} ({width} wide)" for n, d in SIZES.items()
                      if d["embed_dim"] == width), f"a ViT {width} wide")
        expected = next(f"ViT-{n[0].upper()} ({entry.embed_dim} wide)" for n, d in SIZES.items()
                        if d["embed_dim"] == entry.embed_dim)
        matching = [w.name for w in WEIGHTS.values()
                    if w.embed_dim == width and w.layout == entry.layout]
        raise ConversionError(f"this file holds {found}, not the {expected} of {entry.name}"
                              + (f"; did you mean --from {' or '.join(matching)}?" if matching
                                 else ""))


def fetch_weights(entry: PublishedWeights, download: bool = True,
                  progress: bool = True) -> Path:
    """The cached file of ``entry``, downloading it once when allowed.

    The download (``torch.hub.download_url_to_file``, with a progress bar on stderr unless
    ``progress=False``) is checked against the SHA-256 prefix of the file name when it has one
    and against the announced size; a failed one leaves nothing in the cache folder.
    """
    target = cache_dir() / entry.filename
    if target.is_file():
        return target
    how = (f"download {entry.filename} on a machine with internet access"
           + (f" from {entry.url}" if entry.url else "")
           + f", then pass it: load_published({entry.name!r}, path='/path/to/{entry.filename}')"
           + f" or `ofa convert /path/to/{entry.filename} --from {entry.name} -o model.safetensors`")
    if entry.url is None:
        raise WeightsUnavailableError(f"{entry.name} is no longer published for download; {how}")
    if not download:
        raise WeightsUnavailableError(f"{entry.name} is not in the cache ({target}) and download "
                                      f"is off; {how}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # torch.hub writes <dst>.<uuid>.partial and removes it on any error; <dst> itself is our own
    # hidden staging name, renamed to the target only once its size is checked.
    staging = target.parent / f".{entry.filename}.{uuid.uuid4().hex}.download"
    try:
        # torch.hub reads a body cut short without complaint: the size is asked for first
        with urllib.request.urlopen(urllib.request.Request(entry.url, method="HEAD"),
                                    timeout=30) as head:
            size = head.headers.get("Content-Length")
        torch.hub.download_url_to_file(entry.url, str(staging), hash_prefix=entry.sha256_prefix,
                                       progress=progress)
        got = staging.stat().st_size
        if size is not None and got != int(size):
            cause = f"the download was cut off after {got} of {size} bytes"
        else:
            os.replace(staging, target)
            return target
    except urllib.error.HTTPError as err:
        cause = f"the server answered HTTP {err.code} {err.reason}"
    except urllib.error.URLError as err:
        cause = f"the server could not be reached ({err.reason})"
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        digest = re.search(r'got "([0-9a-f]+)"', str(err))
        cause = (f"the downloaded file's SHA-256 does not start with {entry.sha256_prefix} "
                 f"(it starts with {digest.group(1)[:8] if digest else '?'}): the download is "
                 "damaged or the file changed")
    except (OSError, ValueError, http.client.HTTPException) as err:
        cause = f"the download failed ({type(err).__name__}: {err})"
    finally:
        staging.unlink(missing_ok=True)
    raise WeightsUnavailableError(f"could not download {entry.name} from {entry.url}: {cause}; "
                                  f"nothing was kept. Instead, {how}")


__all__ = ["WEIGHTS", "PublishedWeights", "load_published", "fetch_weights", "cache_dir",
           "convert_dofa_v1", "convert_dofa_v2", "convert_ofa", "read_state_dict",
           "ConversionError", "ConversionReport", "WeightsUnavailableError"]
