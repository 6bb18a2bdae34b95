"""Published weights as a registry of records with their metadata, and loading them offline-safe.

``load_published("dofa-base-v1", path="dofa_base_patch16_224-a0275954.pth")`` converts a file
you have; without ``path`` the file is taken from the cache or downloaded once (by pooch, checked
against the SHA-256 its record holds), and a machine without internet gets a message saying how
to pass a local file instead.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import BadInput, NotFound
from ..fileio import atomic_output
from ..model import SIZES, OFANet
from .convert import ConversionError, ConversionReport, read_state_dict
from .dofa import convert_dofa_v1, convert_dofa_v2
from .ofa import convert_ofa

TIMEOUT_S = 30  # to connect, and between two pieces of the file
CHUNK = 2**20  # bytes written at a time


class WeightsUnavailableError(NotFound):
    """The weights file is neither given, cached nor downloadable; the fix says what to do."""


class WeightsHashMismatch(WeightsUnavailableError):
    """A downloaded file is not the published one (its SHA-256 differs); nothing was kept."""


@dataclass(frozen=True)
class PublishedWeights:
    """One set of published weights: where it lives, how to read it, its terms, and what the
    file must be: its full SHA-256 (``sha256``) and size in bytes where published, else the
    8-hex prefix of its SHA-256 that its name carries (``sha256_prefix``); ``hash_source`` says
    where the hash comes from, or why there is none."""

    name: str
    layout: str  # "dofa_v1" | "dofa_v2" | "ofa"
    filename: str
    url: str | None
    licence: str
    citation: str
    description: str
    embed_dim: int  # the width the file must have (ViT-B 768, ViT-L 1024)
    kernel_layout: str = "ckkd"
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    hash_source: str = ""

    def __post_init__(self) -> None:
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.sha256_prefix is not None and not re.fullmatch(
            r"[0-9a-f]{4,63}", self.sha256_prefix
        ):
            raise ValueError(f"{self.name}: sha256_prefix must be lowercase hex digits")
        if self.sha256 and self.sha256_prefix and not self.sha256.startswith(self.sha256_prefix):
            raise ValueError(f"{self.name}: sha256 does not start with sha256_prefix")

    @property
    def expected_sha256(self) -> str | None:
        """What a download's SHA-256 must be (the full digest) or start with (a prefix)."""
        return self.sha256 or self.sha256_prefix

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


def load_published(
    name: str, path: str | os.PathLike | None = None, download: bool = True
) -> OFANet:
    """An OFANet holding the published weights ``name`` (see ``WEIGHTS``).

    ``path`` is a local copy of the published file; without it the cache is tried, then a
    download (``download=False`` forbids it).
    """
    if name not in WEIGHTS:
        raise BadInput(f"unknown weights {name!r}", f"known: {', '.join(WEIGHTS)}")
    entry = WEIGHTS[name]
    if path is None:
        path = fetch_weights(entry, download=download)
    state = read_state_dict(path)
    check_width(entry, state)
    model = entry.convert(state)
    model.provenance.update(
        weights=name, licence=entry.licence, citation=entry.citation, source_file=Path(path).name
    )
    return model


def check_width(entry: PublishedWeights, state: dict) -> None:
    """Refuses a file whose size is not the one ``entry`` names (a ViT-S under dofa-base-v1)."""
    tokens = [v for k, v in state.items() if k in ("cls_token", "model.cls_token")]
    if tokens and tokens[0].shape[-1] != entry.embed_dim:
        width = tokens[0].shape[-1]
        found = next(
            (
                f"ViT-{n[0].upper()} ({width} wide)"
                for n, d in SIZES.items()
                if d["embed_dim"] == width
            ),
            f"a ViT {width} wide",
        )
        expected = next(
            f"ViT-{n[0].upper()} ({entry.embed_dim} wide)"
            for n, d in SIZES.items()
            if d["embed_dim"] == entry.embed_dim
        )
        matching = [
            w.name for w in WEIGHTS.values() if w.embed_dim == width and w.layout == entry.layout
        ]
        raise ConversionError(
            f"this file holds {found}, not the {expected} of {entry.name}"
            + (f"; did you mean --from {' or '.join(matching)}?" if matching else "")
        )


def fetch_weights(entry: PublishedWeights, download: bool = True, progress: bool = True) -> Path:
    """The cached file of ``entry``, downloading it once when allowed.

    pooch's HTTP downloader writes the file to a hidden temporary name beside the target (a
    progress bar on stderr unless ``progress=False``); it is checked against the size the server
    announced (and the record's, where known) and the record's SHA-256 (the full digest, or the
    known prefix where only that is published), and renamed into place only then. A failed or
    damaged download leaves nothing in the cache folder.
    """
    target = cache_dir() / entry.filename
    if target.is_file():
        return target
    how = (
        f"download {entry.filename} on a machine with internet access"
        + (f" from {entry.url}" if entry.url else "")
        + f", then pass it: load_published({entry.name!r}, path='/path/to/{entry.filename}')"
        + f" or `ofa convert /path/to/{entry.filename} --from {entry.name} -o model.safetensors`"
    )
    if entry.url is None:
        raise WeightsUnavailableError(f"{entry.name} is no longer published for download", how)
    if not download:
        raise WeightsUnavailableError(
            f"{entry.name} is not in the cache ({target}) and download is off", how
        )
    with atomic_output(target, suffix=".download") as tmp:
        cause = _download(entry, tmp, progress)
        if cause is not None:
            raise WeightsUnavailableError(
                f"could not download {entry.name} from {entry.url}: {cause}; nothing was kept",
                f"instead, {how}",
            )
        mismatch = _hash_mismatch(entry, tmp)
        if mismatch is not None:
            raise WeightsHashMismatch(
                f"could not download {entry.name} from {entry.url}: {mismatch}; nothing was kept",
                f"instead, {how}",
            )
    return target


def _download(entry: PublishedWeights, path: Path, progress: bool) -> str | None:
    """Fetch ``entry.url`` into ``path`` with pooch; None when complete, else what went wrong."""
    import pooch
    import requests

    meter = _Meter(progress)
    try:
        pooch.HTTPDownloader(progressbar=meter, chunk_size=CHUNK, timeout=TIMEOUT_S)(
            entry.url, str(path), None
        )
    except requests.HTTPError as err:
        return f"the server answered HTTP {err.response.status_code} {err.response.reason}"
    except requests.Timeout:
        return f"the server did not answer within {TIMEOUT_S} s"
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
        if meter.total or isinstance(err, requests.exceptions.ChunkedEncodingError):
            announced = f" ({meter.total} bytes announced)" if meter.total else ""
            return f"the download was cut off before the end of the file{announced}"
        return f"the server could not be reached ({_reason(err)})"
    except (requests.RequestException, OSError) as err:
        return f"the download failed ({type(err).__name__}: {err})"
    finally:
        meter.close()
    got, expected = path.stat().st_size, entry.size or meter.total
    if expected and got < expected:
        return f"the download was cut off after {got} of {expected} bytes"
    if expected and got > expected:
        return f"the file has {got} bytes, not the {expected} published"
    return None


def _hash_mismatch(entry: PublishedWeights, path: Path) -> str | None:
    """None when the file's SHA-256 is the recorded one (or starts with the recorded prefix)."""
    import pooch

    expected = entry.expected_sha256
    if expected is None:
        return None
    digest = pooch.file_hash(str(path), alg="sha256")
    if digest.startswith(expected):
        return None
    if entry.sha256:
        return (
            f"the downloaded file's SHA-256 is {digest}, not the published {expected}: the "
            "download is damaged or the file changed"
        )
    return (
        f"the downloaded file's SHA-256 does not start with {expected} (it starts with "
        f"{digest[: len(expected)]}): the download is damaged or the file changed"
    )


def _reason(err: Exception) -> str:
    """The cause of a failed connection in a few words (urllib3 wraps it twice)."""
    inner = err.args[0] if err.args else err
    inner = getattr(inner, "reason", inner)
    return str(inner).split(">: ", 1)[-1]


class _Meter:
    """The progress object pooch's downloader reports to: it learns the size the server
    announced (``total``) and, when asked, draws a progress bar on stderr."""

    def __init__(self, show: bool):
        self.total = 0
        self.show = show
        self.bar = None

    def update(self, n: int) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total or None,
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                desc="download",
                dynamic_ncols=True,
            )
        self.bar.update(n)

    def reset(self) -> None:
        if self.bar is not None:
            self.bar.reset(total=self.total or None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = [
    "WEIGHTS",
    "PublishedWeights",
    "load_published",
    "fetch_weights",
    "cache_dir",
    "convert_dofa_v1",
    "convert_dofa_v2",
    "convert_ofa",
    "read_state_dict",
    "ConversionError",
    "ConversionReport",
    "WeightsUnavailableError",
    "WeightsHashMismatch",
]
