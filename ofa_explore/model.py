"""OFA-Net: one shared ViT encoder for every Earth-observation modality, pre-trained as an MAE.

Reads like MAE's ``models_mae.py``: one class, ``random_masking``, ``forward_encoder``,
``forward_decoder``, ``forward_loss``. What OFA-Net adds is small: each modality has its own patch
embedding (and its own pixel head in the decoder); everything in between is shared. A DOFA-style
wavelength-conditioned patch embedding lets a sensor with no trained embedding run from its band
wavelengths alone.

Inputs are in the sensor's own units (as read from the file); the model normalises with the
modality's statistics itself and ``reconstruct`` answers in the same units.

Shapes: B batch, C bands, H x W pixels, p patch size, L = (H/p)(W/p) patches, D encoder width,
Dd decoder width.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from .heads import HEAD_KINDS, POOLS, SceneHead, SegmentationHead, default_colors, default_layers
from .modalities import Modality, get_modality

# ViT-Ti/S/B/L encoders (Dosovitskiy et al.; Touvron et al.); MAE's light decoder for B/L,
# a lighter one for the small sizes so that CPU pre-training stays cheap.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3,
                 decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
    "small": dict(embed_dim=384, depth=12, num_heads=6,
                  decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "base": dict(embed_dim=768, depth=12, num_heads=12,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "large": dict(embed_dim=1024, depth=24, num_heads=16,
                  decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16,  # 16 heads of 80, as DOFA's ViT-H/14
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
}

# OFA-Net's five pre-training modalities get their own patch embedding by default.
DEFAULT_MODALITIES = ("s1", "s2", "naip", "gaofen", "enmap")


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sine-cosine embedding of scalar positions: [N] -> [N, dim] (sines first, then cosines)."""
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.float()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d_with_cls(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding with a zero slot for the class token: [1, 1+L, dim]."""
    pos = build_sincos2d_pos_embed(list(grid), dim=dim)
    return torch.cat([torch.zeros(1, dim), pos], dim=0)[None]


# --------------------------------------------------------------------------
# Wavelength-conditioned patch embedding (DOFA, Xiong et al. 2024)
# Attribute names match DOFA's (torchgeo/models/dofa.py) so its weights map 1:1.
# --------------------------------------------------------------------------
class WeightGenerator(nn.Module):
    """A one-layer Transformer over [weight tokens, band wavelength embeddings, bias token].

    Each band's output token becomes that band's k*k*D kernel slice; the bias token becomes the
    conv bias. That is how the conv projection adapts to any band set.
    """

    def __init__(self, wv_planes: int, kernel_numel: int, embed_dim: int,
                 num_weight_tokens: int = 128, num_heads: int = 4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=wv_planes, nhead=num_heads, activation="gelu",
                                           norm_first=False, batch_first=False, dropout=0.0)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1,
                                                         enable_nested_tensor=False)
        self.fc_weight = nn.Linear(wv_planes, kernel_numel)
        self.fc_bias = nn.Linear(wv_planes, embed_dim)
        self.weight_tokens = nn.Parameter(torch.empty(num_weight_tokens, wv_planes))
        self.bias_token = nn.Parameter(torch.empty(1, wv_planes))
        nn.init.normal_(self.weight_tokens, std=0.02)
        nn.init.normal_(self.bias_token, std=0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves: [C, wv_planes] -> (weights [C, k*k*D], bias [D])."""
        n = self.weight_tokens.shape[0]
        tokens = torch.cat([self.weight_tokens, waves, self.bias_token], dim=0)
        out = self.transformer_encoder(tokens)
        weights = self.fc_weight(out[n:-1] + waves)
        bias = self.fc_bias(out[-1])
        return weights, bias


class ResidualMLP(nn.Module):
    """x + relu(w2(relu(w1(x)))): refines the raw sine-cosine wavelength code."""

    def __init__(self, dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class WavelengthPatchEmbed(nn.Module):
    """Patch embedding whose conv kernel is generated from the bands' centre wavelengths.

    Kernel layout: the generator's [C, k*k*D] output is viewed as [C, k, k, D] and permuted to
    [D, C, k, k] ("ckkd", DOFA's current layout since TorchGeo PR #2256). DOFA's first release
    viewed it as [D, C, k, k] directly ("dckk"); weights trained that way need that layout.
    """

    scaler = 0.01  # DOFA scales generated weights and bias down so early training is stable

    def __init__(self, wv_planes: int, patch_size: int, embed_dim: int, padding: int = 0,
                 kernel_layout: str = "ckkd"):
        super().__init__()
        if kernel_layout not in ("ckkd", "dckk"):
            raise ValueError(f"kernel_layout must be 'ckkd' or 'dckk', got {kernel_layout!r}")
        self.wv_planes = wv_planes
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.padding = padding
        self.kernel_layout = kernel_layout
        self.weight_generator = WeightGenerator(wv_planes, patch_size * patch_size * embed_dim,
                                                embed_dim)
        self.fclayer = ResidualMLP(wv_planes)

    def encode_wavelengths(self, wavelengths_um: torch.Tensor) -> torch.Tensor:
        """Band wavelengths (µm) [C] -> wavelength codes [C, wv_planes], shared with the decoder."""
        return self.fclayer(sincos_1d(self.wv_planes, wavelengths_um * 1000.0))

    def forward(self, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W], waves: [C, wv_planes] -> tokens [B, L, D]."""
        weight, bias = self.weight_generator(waves)
        k, c, d = self.patch_size, waves.shape[0], self.embed_dim
        if self.kernel_layout == "ckkd":
            weight = weight.view(c, k, k, d).permute(3, 0, 1, 2)
        else:
            weight = weight.view(d, c, k, k)
        out = F.conv2d(x, weight * self.scaler, bias * self.scaler, stride=k,
                       padding=self.padding)
        return out.flatten(2).transpose(1, 2)


class WavelengthPixelHead(nn.Module):
    """Decoder output for a band set without its own head: a linear layer whose weights are
    generated from the bands' wavelength codes (DOFA's MAE decoder, no bias).

    ``channel_order`` "pixel" returns ``patchify`` order (pixel rows, columns, bands); "dofa"
    returns the generator's flat (band, row, column) order as DOFA's pre-training code does, for
    weights trained that way.
    """

    scaler = 0.01

    def __init__(self, wv_planes: int, decoder_dim: int, patch_size: int,
                 channel_order: str = "pixel"):
        super().__init__()
        if channel_order not in ("pixel", "dofa"):
            raise ValueError(f"channel_order must be 'pixel' or 'dofa', got {channel_order!r}")
        self.patch_size = patch_size
        self.channel_order = channel_order
        self.weight_generator = WeightGenerator(wv_planes, patch_size * patch_size * decoder_dim,
                                                decoder_dim)

    def forward(self, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """x: [B, L, Dd], waves: [C, wv_planes] -> [B, L, p*p*C]."""
        weight, _ = self.weight_generator(waves)
        c, pp = waves.shape[0], self.patch_size**2
        out = F.linear(x, weight.reshape(c * pp, x.shape[-1]) * self.scaler)  # (band, pixel)
        if self.channel_order == "pixel":
            out = out.unflatten(-1, (c, pp)).transpose(-1, -2).flatten(-2)
        return out


# --------------------------------------------------------------------------
# OFA-Net
# --------------------------------------------------------------------------
class OFANet(nn.Module):
    """One-For-All Network: per-modality patch embeddings, one shared encoder, an MAE decoder.

    ``OFANet("tiny", modalities=["s2_l1c", "rgb"], img_size=64, patch_size=8)``; any keyword of
    ``SIZES`` (``depth``, ``embed_dim``, ...) overrides the size's default.
    """

    def __init__(
        self,
        size: str = "base",
        modalities: Iterable[str | Modality] = DEFAULT_MODALITIES,
        patch_size: int = 16,
        img_size: int = 224,
        wavelength_embed: bool = True,
        norm_pix_loss: bool = False,
        sar_wavelength: float | None = None,
        wv_planes: int = 128,
        wavelength_embed_padding: int = 0,
        wavelength_kernel_layout: str = "ckkd",
        wavelength_head_order: str = "pixel",
        init_values: float | None = None,
        mlp_ratio: float = 4.0,
        final_norm: bool = True,
        pool_norm: bool = False,
        norm_layers: bool = True,
        **arch: int,
    ):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        unknown = set(arch) - set(SIZES[size])
        if unknown:
            raise TypeError(f"unknown architecture option(s) {sorted(unknown)}; "
                            f"known: {sorted(SIZES[size])}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        dims = {**SIZES[size], **arch}
        self.config: dict[str, Any] = dict(
            size=size, patch_size=patch_size, img_size=img_size,
            wavelength_embed=wavelength_embed, norm_pix_loss=norm_pix_loss,
            sar_wavelength=sar_wavelength, wv_planes=wv_planes,
            wavelength_embed_padding=wavelength_embed_padding,
            wavelength_kernel_layout=wavelength_kernel_layout,
            wavelength_head_order=wavelength_head_order, init_values=init_values,
            mlp_ratio=mlp_ratio, final_norm=final_norm, pool_norm=pool_norm,
            norm_layers=norm_layers, **dims)
        self.modalities: dict[str, Modality] = {}
        for m in modalities:
            m = get_modality(m) if isinstance(m, str) else m
            self.modalities[m.name] = m
        self.patch_size = patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.norm_pix_loss = norm_pix_loss
        D, Dd = dims["embed_dim"], dims["decoder_embed_dim"]
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # as MAE, timm ViT and DOFA

        # encoder: per-modality patch embeddings, then everything shared
        self.patch_embeds = nn.ModuleDict({
            name: PatchEmbed(img_size, patch_size, m.num_bands, D, strict_img_size=False)
            for name, m in self.modalities.items()})
        self.wavelength_embed = (WavelengthPatchEmbed(wv_planes, patch_size, D,
                                                      wavelength_embed_padding,
                                                      wavelength_kernel_layout)
                                 if wavelength_embed else None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(sincos_2d_with_cls(D, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList([
            Block(D, dims["num_heads"], mlp_ratio, qkv_bias=True, init_values=init_values,
                  norm_layer=norm_layer)
            for _ in range(dims["depth"])])
        # tokens end in a LayerNorm (MAE); DOFA's global-pool models have none and normalise the
        # pooled vector instead (``fc_norm``, as TorchGeo's DOFA.forward_features)
        self.norm = norm_layer(D) if final_norm else nn.Identity()
        self.fc_norm = norm_layer(D) if pool_norm else None

        # decoder: shared blocks, per-modality pixel heads
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(sincos_2d_with_cls(Dd, self.grid),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(Dd, dims["decoder_num_heads"], mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(dims["decoder_depth"])])
        self.decoder_norm = norm_layer(Dd)
        self.decoder_heads = nn.ModuleDict({
            name: nn.Linear(Dd, patch_size**2 * m.num_bands)
            for name, m in self.modalities.items()})
        self.wavelength_head = (WavelengthPixelHead(wv_planes, Dd, patch_size,
                                                    wavelength_head_order)
                                if wavelength_embed else None)

        # downstream heads (scene classifiers, segmentation decoders), named; see add_head
        self.heads = nn.ModuleDict()
        self.head_info: dict[str, dict[str, Any]] = {}
        self.provenance: dict[str, Any] = {}  # filled by load_checkpoint / weight converters
        self.initialize_weights()

    # ---------------------------------------------------------------- setup
    def initialize_weights(self) -> None:
        for embed in self.patch_embeds.values():  # as MAE: like nn.Linear, not nn.Conv2d
            w = embed.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in [self.blocks, self.norm, self.fc_norm or nn.Identity(), self.decoder_embed,
                       self.decoder_blocks, self.decoder_norm, self.decoder_heads]:
            module.apply(_init_linear_and_norm)

    def add_head(self, name: str, classes: Sequence[str], kind: str = "scene",
                 pool: str = "mean", modality: str | Modality | None = None,
                 colors: Sequence[str] | None = None, layers: Sequence[int] | None = None,
                 **notes: Any) -> nn.Module:
        """Attach a downstream head; it is saved with the model, with its class names, colours,
        the modality it expects and any ``notes`` (metrics, training data: JSON values).

        ``kind="scene"``: one label per image from pooled tokens (``pool`` "mean" or "cls").
        ``kind="segmentation"``: one label per pixel from the token maps of encoder ``layers``
        (default: four evenly spaced blocks).
        """
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("a head needs at least one class name")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes}")
        if len(classes) > 255:
            raise ValueError("a head has at most 255 classes (class maps are uint8, 255 = nodata)")
        if colors is not None and len(colors) != len(classes):
            raise ValueError(f"{len(colors)} colours for {len(classes)} classes")
        D, depth = self.config["embed_dim"], self.config["depth"]
        if kind == "segmentation" and modality is None:
            raise ValueError("a segmentation head needs the modality it will see (its first "
                             "layer reads the image's bands)")
        if kind == "scene":
            head: nn.Module = SceneHead(D, len(classes))
            layers = None
        else:
            layers = list(layers) if layers is not None else default_layers(depth)
            bad = [i for i in layers if not 0 <= i < depth]
            if bad or not layers:
                raise ValueError(f"layers must be encoder block indices in [0, {depth}), "
                                 f"got {layers}")
            # a record (e.g. a cube described by its file's wavelengths) or a known name;
            # the band count is kept with the head so that a checkpoint rebuilds it
            bands = (modality.num_bands if isinstance(modality, Modality) else
                     notes.pop("bands", None) or self.resolve_modality(modality).num_bands)
            head = SegmentationHead(D, len(classes), self.patch_size, len(layers), bands)
            notes["bands"] = bands
        if isinstance(modality, Modality):
            modality = modality.name
        self.heads[name] = head.to(self.cls_token.device)
        self.head_info[name] = dict(
            kind=kind, classes=classes, pool=pool, modality=modality, layers=layers,
            colors=list(colors) if colors is not None else default_colors(len(classes)), **notes)
        return head

    def set_default_head(self, name: str) -> None:
        """Put head ``name`` first: the one used when no head is named (for its modality)."""
        if name not in self.heads:
            raise ValueError(f"no head named {name!r}")
        order = [name] + [n for n in self.heads if n != name]
        modules = {n: self.heads[n] for n in order}
        self.heads = nn.ModuleDict(modules)
        self.head_info = {n: self.head_info[n] for n in order}

    # --------------------------------------------------------- modality I/O
    def resolve_modality(self, modality: str | Modality) -> Modality:
        """A modality by name: the model's own records first (they travel in checkpoints)."""
        if isinstance(modality, Modality):
            return modality
        if modality in self.modalities:
            return self.modalities[modality]
        return get_modality(modality)

    def check_input(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        """Validate a [B, C, H, W] batch against the modality; returns it as float."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must have shape [B, C, H, W], got {tuple(x.shape)}; "
                             "add a batch dimension with x[None] for a single image")
        c, h, w = x.shape[1:]
        if c != modality.num_bands:
            raise ValueError(
                f"modality '{modality.name}' expects {modality.num_bands} bands "
                f"({', '.join(modality.bands)}), got {c}. Pass the bands in this order or "
                "choose the matching modality (`ofa modalities` lists them)")
        p = self.patch_size
        if h < p or w < p or h % p or w % p:
            raise ValueError(
                f"image size {h}x{w} is not a positive multiple of the patch size {p}; "
                f"crop or pad it to a multiple of {p} (the inference engine tiles and pads "
                "rasters of any size)")
        if not x.is_floating_point():
            x = x.float()
        if not torch.isfinite(x.sum()):  # NaN/inf propagate into the sum: one cheap reduction
            raise ValueError(
                "x contains NaN or infinite values (nodata?); fill or mask them before calling "
                "the model (the inference engine keeps nodata out of the model for you)")
        return x

    def normalize(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        mean, std = self._stats(x, modality)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        mean, std = self._stats(x, modality)
        return x * std + mean

    @staticmethod
    def _stats(x: torch.Tensor, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(modality.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(modality.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return mean, std

    def wavelength_codes(self, modality: Modality, device: torch.device) -> torch.Tensor:
        """The modality's wavelength codes [C, wv_planes]; SAR bands take the pseudo-wavelength
        that the loaded weights were trained with (``sar_wavelength``), so users never guess."""
        waves = modality.wavelengths
        sar = self.config.get("sar_wavelength")
        if modality.kind == "sar" and sar is not None:
            waves = [sar] * modality.num_bands
        waves = torch.tensor(waves, dtype=torch.float32, device=device)
        return self.wavelength_embed.encode_wavelengths(waves)

    # ------------------------------------------------------ patches <-> image
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, L, p*p*C] (MAE's order: pixel rows, pixel columns, bands)."""
        p = self.patch_size
        B, C, H, W = imgs.shape
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor, channels: int, grid: tuple[int, int]) -> torch.Tensor:
        """[B, L, p*p*C] -> [B, C, H, W]."""
        p = self.patch_size
        h, w = grid
        x = x.reshape(x.shape[0], h, w, p, p, channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], channels, h * p, w * p)

    def _pos(self, pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Position embedding for a patch grid, interpolated when it is not the trained one."""
        if grid == self.grid:
            return pos_embed
        return resample_abs_pos_embed(pos_embed, list(grid), list(self.grid), num_prefix_tokens=1)

    # --------------------------------------------------------------- encoder
    def embed_patches(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        """Normalised [B, C, H, W] -> tokens [B, L, D], through the modality's own embedding
        when the model has one, else through the wavelength-conditioned one."""
        if modality.name in self.patch_embeds:
            trained = self.modalities[modality.name]
            if trained.num_bands != modality.num_bands:
                raise ValueError(f"modality '{modality.name}' has {modality.num_bands} bands but "
                                 f"this model's '{modality.name}' embedding takes "
                                 f"{trained.num_bands}; rename the custom modality")
            return self.patch_embeds[modality.name](x)
        self.require_embedding(modality)
        return self.wavelength_embed(x, self.wavelength_codes(modality, x.device))

    def set_fused_attention(self, enabled: bool) -> None:
        """Use PyTorch's fused attention kernel in every block, or plain matmul + softmax.

        Fused is the fast choice on GPUs; on CPUs under bf16 autocast its backward pass is slow
        for short token sequences, and plain attention trains ~1.4x faster (bench/RESULTS.md).
        Both compute the same function.
        """
        for block in [*self.blocks, *self.decoder_blocks]:
            block.attn.fused_attn = enabled

    def require_embedding(self, modality: Modality) -> None:
        """Fail early, naming what the model knows, when it cannot embed ``modality``."""
        if modality.name not in self.patch_embeds and self.wavelength_embed is None:
            raise ValueError(
                f"this model cannot embed '{modality.name}' imagery: it has no patch embedding "
                f"for it and no wavelength-conditioned embedding (it knows "
                f"{', '.join(self.modalities)}); use a checkpoint with a wavelength-conditioned "
                f"embedding (the shipped one has it) or one trained on '{modality.name}'")

    def random_masking(self, x: torch.Tensor, mask_ratio: float,
                       generator: torch.Generator | None = None):
        """Per-sample random masking by sorting random noise.

        x: [B, L, D] -> (kept tokens [B, L_keep, D], mask [B, L] with 1 = hidden,
        ids_restore [B, L]). Exactly int(L * (1 - mask_ratio)) patches stay visible.
        """
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        B, L, D = x.shape
        len_keep = max(1, int(L * (1 - mask_ratio)))
        noise = torch.rand(B, L, device=x.device, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D))
        mask = torch.ones(B, L, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_kept, mask, ids_restore

    def forward_encoder(self, x: torch.Tensor, modality: Modality, mask_ratio: float,
                        generator: torch.Generator | None = None):
        """Normalised [B, C, H, W] -> (latent [B, 1+L_keep, D], mask [B, L], ids_restore)."""
        tokens, cls = self._embed(x, modality)
        tokens, mask, ids_restore = self.random_masking(tokens, mask_ratio, generator)
        return self._encode(tokens, cls), mask, ids_restore

    def _embed(self, x: torch.Tensor, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens with position embedding [B, L, D], and the class token [1, 1, D]."""
        pos = self._pos(self.pos_embed, self._grid_of(x))
        return self.embed_patches(x, modality) + pos[:, 1:], self.cls_token + pos[:, :1]

    @staticmethod
    def _with_cls(tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def _encode(self, tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        x = self._with_cls(tokens, cls)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    # --------------------------------------------------------------- decoder
    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor,
                        modality: Modality, grid: tuple[int, int]) -> torch.Tensor:
        """latent [B, 1+L_keep, D] -> pixel predictions [B, L, p*p*C] (normalised units)."""
        x = self.decoder_embed(latent)
        B, L = ids_restore.shape
        mask_tokens = self.mask_token.expand(B, L + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], dim=1) + self._pos(self.decoder_pos_embed, grid)
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)[:, 1:]
        if modality.name in self.decoder_heads:
            return self.decoder_heads[modality.name](x)
        if self.wavelength_head is None:
            raise ValueError(f"this model has no pixel head for modality '{modality.name}'")
        return self.wavelength_head(x, self.wavelength_codes(modality, x.device))

    def patch_targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """What the decoder learns to predict: patches, per-patch normalised with norm_pix_loss."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on hidden patches. imgs: normalised [B, C, H, W]."""
        loss = ((pred - self.patch_targets(imgs)) ** 2).mean(dim=-1)  # [B, L], per patch
        if mask.sum() == 0:  # mask_ratio 0: plain autoencoding
            return loss.mean()
        return (loss * mask).sum() / mask.sum()

    # ---------------------------------------------------------- public API
    def forward(self, x: torch.Tensor, modality: str | Modality, mask_ratio: float = 0.75,
                generator: torch.Generator | None = None, return_latent: bool = False):
        """MAE step. x: [B, C, H, W] in sensor units -> (loss, pred [B, L, p*p*C], mask [B, L]),
        and the encoder's output on the visible patches [B, 1+L_keep, D] with ``return_latent``
        (what a second pre-training objective works on)."""
        m = self.resolve_modality(modality)
        x = self.normalize(self.check_input(x, m), m)
        latent, mask, ids_restore = self.forward_encoder(x, m, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore, m, self._grid_of(x))
        loss = self.forward_loss(x, pred, mask)
        return (loss, pred, mask, latent) if return_latent else (loss, pred, mask)

    def forward_features(self, x: torch.Tensor, modality: str | Modality) -> torch.Tensor:
        """All tokens, nothing masked: [B, C, H, W] -> [B, 1+L, D], class token first."""
        m = self.resolve_modality(modality)
        return self._encode(*self._embed(self.normalize(self.check_input(x, m), m), m))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, modality: str | Modality, mask_ratio: float = 0.75,
                    seed: int | None = None,
                    keep_visible: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Hide patches, predict them back.

        Returns (image [B, C, H, W] in the input's units: visible patches are the input itself,
        hidden ones the model's prediction; mask [B, 1, H, W], 1 = hidden). A seed repeats the mask.
        ``keep_visible=False`` returns the prediction everywhere (with ``mask_ratio=0``: the
        model's plain autoencoding of the whole image).
        """
        m = self.resolve_modality(modality)
        x = self.check_input(x, m)
        xn = self.normalize(x, m)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        grid = self._grid_of(x)
        latent, mask, ids_restore = self.forward_encoder(xn, m, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore, m, grid)
        if self.norm_pix_loss:  # predictions are per-patch standardised: borrow true patch stats
            target = self.patchify(xn)
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
            pred = pred * std + mean
        image = self.denormalize(self.unpatchify(pred, x.shape[1], grid), m)
        p = self.patch_size
        mask_img = mask.reshape(-1, 1, *grid).repeat_interleave(p, 2).repeat_interleave(p, 3)
        if not keep_visible:
            return image, mask_img
        return torch.where(mask_img.bool(), image, x), mask_img

    def encoder_layers(self, x: torch.Tensor, modality: str | Modality,
                       layers: Sequence[int]) -> list[torch.Tensor]:
        """Token maps after the given encoder blocks, each [B, D, h, w]: through the final norm,
        unless the source model's maps have none (``norm_layers=False``, DOFA v2).
        ``x`` is normalised already."""
        m = self.resolve_modality(modality)
        grid = self._grid_of(x)
        h = self._with_cls(*self._embed(x, m))
        wanted, out = set(layers), {}
        for i, block in enumerate(self.blocks[:max(layers) + 1]):
            h = block(h)
            if i in wanted:
                normed = self.norm(h) if self.config["norm_layers"] else h
                out[i] = normed[:, 1:].transpose(1, 2).reshape(h.shape[0], -1, *grid)
        return [out[i] for i in layers]

    def head_for(self, head: str | None, kind: str | None = None,
                 modality: Modality | None = None) -> str:
        """The head to use: the one named, else the first (of this kind) for this modality."""
        if head is not None:
            if head not in self.heads:
                raise ValueError(f"no head named {head!r}; this model has "
                                 f"{', '.join(self.heads) or 'none'}")
            info = self.head_info[head]
            if modality is not None and info["modality"] and info["modality"] != modality.name:
                raise ValueError(f"head {head!r} was trained on '{info['modality']}' imagery, "
                                 f"not '{modality.name}'; pass {info['modality']} imagery or "
                                 "train a head for this modality (ofa train-head)")
            return head
        of_kind = [n for n, i in self.head_info.items() if kind in (None, i["kind"])]
        kind = kind or "classification"
        if not of_kind:
            raise ValueError(f"this model carries no {kind} head; train one with "
                             "`ofa train-head` or pass a checkpoint that has one")
        fitting = [n for n in of_kind if modality is None or self.head_info[n]["modality"]
                   in (None, modality.name)]
        if not fitting:
            raise ValueError(
                f"no {kind} head of this model takes '{modality.name}' imagery (its heads: "
                + ", ".join(f"{n} for {self.head_info[n]['modality']}" for n in of_kind)
                + "); train one with `ofa train-head --modality " + modality.name + "`")
        return fitting[0]

    def pooled_features(self, x: torch.Tensor, modality: str | Modality,
                        pool: str = "mean") -> torch.Tensor:
        """One vector per image [B, D]: mean of the patch tokens (through ``fc_norm`` where the
        model has one, as DOFA), or the class token."""
        tokens = self.forward_features(x, modality)
        if pool == "cls":
            return tokens[:, 0]
        pooled = tokens[:, 1:].mean(1)
        return self.fc_norm(pooled) if self.fc_norm is not None else pooled

    def classify(self, x: torch.Tensor, modality: str | Modality,
                 head: str | None = None) -> torch.Tensor:
        """Scene logits [B, num_classes] from a scene head (see ``add_head``)."""
        m = self.resolve_modality(modality)
        name = self.head_for(head, "scene", m)
        if self.head_info[name]["kind"] != "scene":
            return self.segment(x, m, name).mean((2, 3))  # a scene label from pixel scores
        return self.heads[name](self.pooled_features(x, m, self.head_info[name]["pool"]))

    def segment(self, x: torch.Tensor, modality: str | Modality,
                head: str | None = None) -> torch.Tensor:
        """Per-pixel logits [B, num_classes, H, W] from a segmentation head."""
        m = self.resolve_modality(modality)
        name = self.head_for(head, "segmentation", m)
        info = self.head_info[name]
        if info["kind"] != "segmentation":
            raise ValueError(f"head {name!r} is a scene classifier; it gives one label per "
                             "image, use classify()")
        x = self.normalize(self.check_input(x, m), m)
        return self.heads[name](self.encoder_layers(x, m, info["layers"]), x)

    def _grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        return (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)

    def extra_repr(self) -> str:
        return (f"size={self.config['size']}, patch_size={self.patch_size}, "
                f"img_size={self.config['img_size']}, modalities={list(self.modalities)}")


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["OFANet", "SIZES", "DEFAULT_MODALITIES", "WavelengthPatchEmbed", "count_parameters",
           "sincos_1d"]
