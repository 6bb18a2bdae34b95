"""Downstream heads that sit on the shared encoder and travel inside checkpoints.

Two kinds, both small:
- ``SceneHead``: one label per image from pooled tokens. Standardisation (a BatchNorm without
  affine terms, as in MAE's linear probe) then a linear layer, so that a logistic-regression probe
  fitted on standardised features *is* the head, and fine-tuning trains the same module.
- ``SegmentationHead``: one label per pixel from the patch tokens of a few encoder blocks,
  UPerNet-style but light: a 1x1 projection per block, summed, then x2 upsampling steps
  (bilinear + 3x3 conv) back to pixel resolution, where a small convolution of the image itself
  joins in (as U-Net's top skip: tokens are one per patch, edges are finer than that).

- ``ChangeHead``: one change logit per pixel of two dates, the same network fed with what
  differs between the dates' token maps and pixels (``change_detection.terms.head_inputs``).

``HeadSet`` is the model's ``heads``: named heads with their records (classes, colours, the
modality each was trained on); it adds, orders and selects them. ``classify`` and ``segment``
apply one to a model's encoder output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from .errors import BadInput, ModelMismatch
from .inputs import prepare, resolve_modality
from .modalities import Modality

if TYPE_CHECKING:
    from .model import OFAConfig, OFANet

HEAD_KINDS = ("scene", "segmentation", "change")
POOLS = ("mean", "cls", "mean+std")  # OFANet.pooled_features
DEFAULT_POOL = "mean+std"  # what scene heads, probes and kNN read unless told: the most
# accurate on EuroSAT (docs/EVALUATION.md, "Pooling")
STANDARDIZE_EPS = 1e-5


def check_pool(pool: str) -> None:
    """A pooling name the heads know, else one line naming them (before any data is read)."""
    if pool not in POOLS:
        raise BadInput(
            f"pool must be one of {', '.join(POOLS)}, got {pool!r}",
            "give one of them to {pool}",
        )


def pooled_width(pool: str, dim: int) -> int:
    """Length of a pooled feature: ``dim``, twice that for "mean+std" (mean and spread)."""
    return 2 * dim if pool == "mean+std" else dim


# used when a head is saved without colours: distinct, readable on a map (Tableau 10, then grey)
DEFAULT_PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]


def default_colors(n: int) -> list[str]:
    return [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i in range(n)]


def default_layers(depth: int, count: int = 4) -> list[int]:
    """Evenly spaced encoder blocks ending with the last one (depth 12 -> 2, 5, 8, 11)."""
    count = min(count, depth)
    return [round((i + 1) * depth / count) - 1 for i in range(count)]


class SceneHead(nn.Sequential):
    """pooled [B, D] -> logits [B, K]."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__(
            nn.BatchNorm1d(dim, affine=False, eps=STANDARDIZE_EPS), nn.Linear(dim, num_classes)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Always in fp32, also under bf16/fp16 autocast: standardising features and a linear
        probe are cheap, and their rounding in bf16 flipped about 1% of close class decisions."""
        with torch.autocast(pooled.device.type, enabled=False):
            return super().forward(pooled.float())

    def set_linear_probe(
        self, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> None:
        """Load a probe fitted on (features - mean) / sqrt(var + eps)."""
        norm, linear = cast(nn.BatchNorm1d, self[0]), cast(nn.Linear, self[1])
        norm.load_state_dict({**norm.state_dict(), "running_mean": mean, "running_var": var})
        linear.weight.data.copy_(weight)
        linear.bias.data.copy_(bias)


class SegmentationHead(nn.Module):
    """Token maps of ``len(layers)`` blocks, each [B, D, h, w], and the normalised image
    [B, C, h*p, w*p] -> logits [B, K, h*p, w*p]."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        patch_size: int,
        num_levels: int,
        in_chans: int,
        width: int = 64,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.lateral = nn.ModuleList([nn.Conv2d(dim, width, 1) for _ in range(num_levels)])
        steps = max(0, math.ceil(math.log2(patch_size)))
        self.up = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
                for _ in range(steps)
            ]
        )
        self.pixels = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        h, w = levels[0].shape[-2:]
        x = sum(lateral(level) for lateral, level in zip(self.lateral, levels))
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        size = (h * self.patch_size, w * self.patch_size)
        if x.shape[-2:] != size:  # patch sizes that are not powers of two
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(x + self.pixels(image)))


# the zero-shot score's terms in a change head's image: pixels, embeddings and (since
# 2026-12-05) the anomalous change; with it, leave-one-city-out pooled AP on OSCD 0.296 / 0.291
# / 0.279 against 0.278 / 0.285 / 0.275 (seeds 0-2; docs/EVALUATION.md)
CHANGE_SCORE_TERMS = 3
# what a change head's image holds, in order (``change_detection.terms.head_inputs``), kept in its
# record: a head trained on another image (by an earlier ofa-explore) is refused, as it would
# read the new channels as the old ones. Since 2026-12-06 AFTER's residuals from BEFORE take
# the place of the dates' plain difference; since 2026-12-07 the pixel term weighs the visible
# bands more (``PIXEL_RANGE_SHARES``).
CHANGE_IMAGE = (
    "before, after, after_residuals, pixel_term (visible 0.8), embedding_term, anomaly_term"
)


def change_image_channels(bands: int) -> int:
    """A change head's image channels for a sensor of ``bands`` bands (``head_inputs``)."""
    return 3 * bands + CHANGE_SCORE_TERMS


class ChangeHead(nn.Module):
    """Two dates -> one change logit per pixel [B, 1, h*p, w*p].

    Its levels are, per encoder block, |before - after| and the mean of the two dates' token
    maps (what changed, and on what kind of place); its image is both dates' bands standardised
    per date, AFTER's residuals from BEFORE and the zero-shot score's three terms (3C + 3
    channels, ``CHANGE_IMAGE``).
    Light on purpose: the token maps get a 1x1 projection and one 3x3 convolution at patch
    resolution, are upsampled and meet a per-pixel projection of the image; one 3x3
    convolution at pixel resolution fuses them. Trains on cached inputs in minutes on a CPU
    (a SegmentationHead's full-resolution decoder took ~40x longer)."""

    def __init__(self, dim: int, patch_size: int, num_layers: int, bands: int, width: int = 32):
        super().__init__()
        self.patch_size = patch_size
        self.tokens = nn.Sequential(
            nn.Conv2d(2 * num_layers * dim, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        channels = change_image_channels(bands)
        self.pixels = nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, width, 1))
        self.fuse = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width // 2, 1, 1),
        )

    def forward(self, levels: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        x = self.tokens(torch.cat(list(levels), dim=1))
        x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(x + self.pixels(image))


class ChangeEnsemble(nn.ModuleList):
    """ChangeHeads trained alike from different seeds; its logit is their mean. One head's
    leave-one-city-out AP on the 8 OSCD cities depends on its seed (pooled 0.353 / 0.326 /
    0.349, seeds 0-2); the mean of the three scored as the best of them, 0.353, and its mask
    at 2.5 a higher F1 (0.403 against 0.387-0.399; docs/EVALUATION.md)."""

    def forward(self, levels: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(levels, image) for member in self]).mean(dim=0)


class HeadSet(nn.ModuleDict):
    """The model's downstream heads by name (state_dict keys ``heads.<name>.*``), and ``info``:
    each head's record (kind, classes, colours, pool, layers, the modality it was trained on,
    and any notes such as metrics), saved in the checkpoint's metadata.

    The first head (of a kind, for a modality) is the default; ``set_default`` moves one there.
    """

    _device: torch.Tensor

    def __init__(self, config: OFAConfig, modalities: Mapping[str, Modality]):
        super().__init__()
        self.config = config
        self.modalities = modalities  # the model's own records, for heads that name one
        self.info: dict[str, dict[str, Any]] = {}
        # follows the model across devices, so new heads are made where the model is
        self.register_buffer("_device", torch.empty(0), persistent=False)

    def add(
        self,
        name: str,
        classes: Sequence[str],
        kind: str = "scene",
        pool: str = DEFAULT_POOL,
        modality: str | Modality | None = None,
        colors: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        **notes: Any,
    ) -> nn.Module:
        """Attach a head; it is saved with the model, with its class names, colours, the
        modality it expects and any ``notes`` (metrics, training data: JSON values).

        ``kind="scene"``: one label per image from pooled tokens (``pool``: one of ``POOLS``).
        ``kind="segmentation"``: one label per pixel from the token maps of encoder ``layers``
        (default: four evenly spaced blocks).
        ``kind="change"``: one change logit per pixel of two dates (``ChangeHead``; one class;
        ``members=N`` in ``notes``: a ``ChangeEnsemble`` of N).
        """
        if kind not in HEAD_KINDS:
            raise BadInput(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
        check_pool(pool)
        classes = [str(c) for c in classes]
        if not classes:
            raise BadInput("a head needs at least one class name")
        if len(set(classes)) != len(classes):
            raise BadInput(f"class names must be unique, got {classes}")
        if len(classes) > 255:
            raise BadInput("a head has at most 255 classes (class maps are uint8, 255 = nodata)")
        if colors is not None and len(colors) != len(classes):
            raise BadInput(f"{len(colors)} colours for {len(classes)} classes")
        D, depth = self.config.embed_dim, self.config.depth
        rebuilt = "bands" in notes  # a head's record read back from a checkpoint
        if kind == "scene":
            head: nn.Module = SceneHead(pooled_width(pool, D), len(classes))
            layers = None
        else:
            if modality is None:
                raise BadInput(
                    f"a {kind} head needs the modality it will see (its first "
                    "layer reads the image's bands)",
                    "name its {modality}",
                )
            layers = list(layers) if layers is not None else default_layers(depth)
            bad = [i for i in layers if not 0 <= i < depth]
            if bad or not layers:
                raise BadInput(
                    f"layers must be encoder block indices in [0, {depth}), got {layers}"
                )
            # a record (e.g. a cube described by its file's wavelengths) or a known name;
            # the band count is kept with the head so that a checkpoint rebuilds it
            bands = (
                modality.num_bands
                if isinstance(modality, Modality)
                else notes.pop("bands", None)
                or resolve_modality(modality, self.modalities).num_bands
            )
            p = self.config.patch_size
            members = int(notes.get("members", 1))
            if kind == "segmentation":
                head = SegmentationHead(D, len(classes), p, len(layers), bands)
            elif members > 1:
                head = ChangeEnsemble(ChangeHead(D, p, len(layers), bands) for _ in range(members))
            else:
                head = ChangeHead(D, p, len(layers), bands)
            notes["bands"] = bands
            if kind == "change":
                if rebuilt and notes.get("image") != CHANGE_IMAGE:
                    raise ModelMismatch(
                        f"change head {name!r} was trained by an earlier ofa-explore, on "
                        f"other image channels than this one gives ({CHANGE_IMAGE})",
                        "train it again: `ofa train-head --task change --data PAIRS.csv`",
                    )
                notes["image"] = CHANGE_IMAGE
                notes["image_channels"] = change_image_channels(bands)
        if isinstance(modality, Modality):
            modality = modality.name
        self[name] = head.to(self._device.device)
        self.info[name] = dict(
            kind=kind,
            classes=classes,
            pool=pool,
            modality=modality,
            layers=layers,
            colors=list(colors) if colors is not None else default_colors(len(classes)),
            **notes,
        )
        return head

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self.info.pop(name, None)

    def set_default(self, name: str) -> None:
        """Put head ``name`` first: the one used when no head is named (for its modality)."""
        if name not in self:
            raise ModelMismatch(
                f"no head named {name!r}; this model has {', '.join(self) or 'none'}",
                "name one of them as {head}",
            )
        for other in [n for n in self if n != name]:  # move the others behind it, in order
            self._modules[other] = self._modules.pop(other)
            self.info[other] = self.info.pop(other)

    def select(
        self, head: str | None, kind: str | None = None, modality: Modality | None = None
    ) -> str:
        """The head to use: the one named, else the first (of this kind) for this modality.
        Naming a head trained on another modality fails."""
        if head is not None:
            if head not in self:
                raise ModelMismatch(
                    f"no head named {head!r}; this model has {', '.join(self) or 'none'}",
                    "name one of them as {head}",
                )
            trained_on = self.info[head]["modality"]
            if modality is not None and trained_on and trained_on != modality.name:
                raise ModelMismatch(
                    f"head {head!r} was trained on '{trained_on}' imagery, not '{modality.name}'",
                    f"pass {trained_on} imagery or train a head for this modality ({{train_head}})",
                    modality=modality.name,
                    head=head,
                )
            return head
        of_kind = [n for n, i in self.info.items() if kind in (None, i["kind"])]
        kind = kind or "classification"
        if not of_kind:
            raise ModelMismatch(
                f"this model carries no {kind} head",
                "train one ({train_head}) or use a {checkpoint} that has one",
            )
        fitting = [
            n
            for n in of_kind
            if modality is None or self.info[n]["modality"] in (None, modality.name)
        ]
        if not fitting:
            assert modality is not None
            raise ModelMismatch(
                f"no {kind} head of this model takes '{modality.name}' imagery (its heads: "
                + ", ".join(f"{n} for {self.info[n]['modality']}" for n in of_kind)
                + ")",
                f"train a head on '{modality.name}' imagery ({{train_head}})",
                modality=modality.name,
            )
        return fitting[0]


def classify(
    model: OFANet, x: torch.Tensor, modality: str | Modality, head: str | None = None
) -> torch.Tensor:
    """Scene logits [B, K] for [B, C, H, W] in sensor units, from a scene head (pooled
    features), or from a segmentation head named here (its per-pixel logits averaged)."""
    m = resolve_modality(modality, model.modalities)
    name = model.heads.select(head, "scene", m)
    info = model.heads.info[name]
    if info["kind"] != "scene":
        return segment(model, x, m, name).mean((2, 3))  # a scene label from pixel scores
    return model.heads[name](model.pooled_features(x, m, info["pool"]))


def segment(
    model: OFANet, x: torch.Tensor, modality: str | Modality, head: str | None = None
) -> torch.Tensor:
    """Per-pixel logits [B, K, H, W] for [B, C, H, W] in sensor units, from a segmentation
    head: the token maps of its encoder blocks and the image itself."""
    m = resolve_modality(modality, model.modalities)
    name = model.heads.select(head, "segmentation", m)
    info = model.heads.info[name]
    if info["kind"] != "segmentation":
        raise ModelMismatch(
            f"head {name!r} is a scene classifier: it gives one label per image, not one per pixel",
            "classify with it instead",
            head=name,
        )
    xn, m = prepare(x, m, model.modalities, model.config.patch_size)
    return model.heads[name](model.forward_intermediates(xn, m, info["layers"]), xn)


__all__ = [
    "SceneHead",
    "SegmentationHead",
    "ChangeHead",
    "HeadSet",
    "classify",
    "segment",
    "HEAD_KINDS",
    "DEFAULT_POOL",
    "POOLS",
    "pooled_width",
    "default_colors",
    "default_layers",
]
