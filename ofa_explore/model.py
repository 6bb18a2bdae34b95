"""OFA-Net: one shared ViT encoder for every Earth-observation modality, pre-trained as an MAE.

Reads like MAE's ``models_mae.py``. What OFA-Net adds is small: each modality has its own patch
embedding (and pixel head in the decoder); everything in between is shared, and a DOFA-style
wavelength-conditioned embedding (``wavelength.py``) runs any other sensor from its wavelengths.
The public verbs (``forward``, ``forward_features``, ``pooled_features``, ``reconstruct``) take
the sensor's own units and normalise them (``inputs.py``); the MAE internals and
``forward_intermediates`` take normalised tensors. Downstream heads: ``heads.py``.

Shapes: B batch, C bands, H x W pixels, p patch size, L = (H/p)(W/p) patches, D encoder width,
Dd decoder width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, cast

import torch
from torch import Generator, Tensor, nn

from .checks import check_mask_ratio
from .errors import ModelMismatch
from .heads import HeadSet
from .inputs import (
    check_input,
    denormalize,
    normalize,
    prepare,
    require_embedding,
    resolve_modality,
)
from .modalities import Modality, get_modality
from .model_config import DEFAULT_MODALITIES, SIZES, OFAConfig
from .vit import Block, PatchEmbed, resample_abs_pos_embed, sincos_2d
from .wavelength import WavelengthPatchEmbed, WavelengthPixelHead


def sincos_2d_with_cls(dim: int, grid: tuple[int, int]) -> Tensor:
    """Fixed 2-D sine-cosine position embedding, a zero slot for the class token: [1, 1+L, dim]."""
    if torch.get_default_device().type == "meta":  # shapes only: see load_checkpoint
        return torch.zeros(1, 1 + grid[0] * grid[1], dim)
    pos = sincos_2d(grid, dim)
    return torch.cat([torch.zeros(1, dim), pos], dim=0)[None]


class OFANet(nn.Module):
    """One-For-All Network: per-modality patch embeddings, one shared encoder, an MAE decoder.

    ``OFANet("tiny", modalities=["s2_l1c", "rgb"], img_size=64, patch_size=8)``: a size name and
    any ``OFAConfig`` field as a keyword, or ``OFANet(OFAConfig(...), modalities)``.
    """

    def __init__(
        self,
        config: OFAConfig | str = "base",
        modalities: Iterable[str | Modality] = DEFAULT_MODALITIES,
        **overrides: Any,
    ):
        super().__init__()
        if isinstance(config, str):
            config = OFAConfig.of_size(config, **overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = c = config
        self.modalities: dict[str, Modality] = {}
        for m in modalities:
            m = get_modality(m) if isinstance(m, str) else m
            self.modalities[m.name] = m
        D, Dd, p = c.embed_dim, c.decoder_embed_dim, c.patch_size
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # as MAE, timm's ViT and DOFA

        # encoder: per-modality patch embeddings, then everything shared
        self.patch_embeds = nn.ModuleDict(
            {name: PatchEmbed(c.img_size, p, m.num_bands, D) for name, m in self.modalities.items()}
        )
        self.wavelength_embed = (
            WavelengthPatchEmbed(
                c.wv_planes, p, D, c.wavelength_embed_padding, c.wavelength_kernel_layout
            )
            if c.wavelength_embed
            else None
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(sincos_2d_with_cls(D, c.grid), requires_grad=False)
        self.blocks = _blocks(D, c.num_heads, c.depth, c.mlp_ratio, norm_layer, c.init_values)
        # tokens end in a LayerNorm (MAE); DOFA's global-pool models have none and normalise the
        # pooled vector instead (``fc_norm``, as TorchGeo's DOFA.forward_features)
        self.norm = norm_layer(D) if c.final_norm else nn.Identity()
        self.fc_norm = norm_layer(D) if c.pool_norm else None

        # decoder: shared blocks, per-modality pixel heads
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(sincos_2d_with_cls(Dd, c.grid), requires_grad=False)
        self.decoder_blocks = _blocks(
            Dd, c.decoder_num_heads, c.decoder_depth, c.mlp_ratio, norm_layer
        )
        self.decoder_norm = norm_layer(Dd)
        self.decoder_heads = nn.ModuleDict(
            {name: nn.Linear(Dd, p**2 * m.num_bands) for name, m in self.modalities.items()}
        )
        self.wavelength_head = (
            WavelengthPixelHead(c.wv_planes, Dd, p, c.wavelength_head_order)
            if c.wavelength_embed
            else None
        )

        # downstream heads (scene classifiers, segmentation decoders), named: heads.py
        self.heads = HeadSet(c, self.modalities)
        self.provenance: dict[str, Any] = {}  # filled by load_checkpoint / weight converters
        self.initialize_weights()

    def initialize_weights(self) -> None:
        if self.cls_token.is_meta:  # shapes only: the weights come from a checkpoint
            return
        for embed in self.patch_embeds.values():  # as MAE: like nn.Linear, not nn.Conv2d
            w = cast(PatchEmbed, embed).proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        shared = (self.blocks, self.norm, self.fc_norm or nn.Identity(), self.decoder_embed)
        for module in (*shared, self.decoder_blocks, self.decoder_norm, self.decoder_heads):
            module.apply(_init_linear_and_norm)

    # ------------------------------------------------------ patches <-> image
    def patchify(self, imgs: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, L, p*p*C] (MAE's order: pixel rows, pixel columns, bands)."""
        p = self.config.patch_size
        B, C, H, W = imgs.shape
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: Tensor, channels: int, grid: tuple[int, int]) -> Tensor:
        """[B, L, p*p*C] -> [B, C, H, W]."""
        p = self.config.patch_size
        h, w = grid
        x = x.reshape(x.shape[0], h, w, p, p, channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], channels, h * p, w * p)

    def _grid_of(self, x: Tensor) -> tuple[int, int]:
        return (x.shape[2] // self.config.patch_size, x.shape[3] // self.config.patch_size)

    def _pos(self, pos_embed: Tensor, grid: tuple[int, int]) -> Tensor:
        """Position embedding for a patch grid, interpolated when it is not the trained one."""
        if grid == self.config.grid:
            return pos_embed
        return resample_abs_pos_embed(
            pos_embed, list(grid), list(self.config.grid), num_prefix_tokens=1
        )

    # --------------------------------------------------------------- encoder
    def wavelength_codes(self, modality: Modality, device: torch.device) -> Tensor:
        """The modality's wavelength codes [C, wv_planes]; SAR bands take the pseudo-wavelength
        that the loaded weights were trained with (``sar_wavelength``), so users never guess."""
        waves = modality.wavelengths
        sar = self.config.sar_wavelength
        if modality.kind == "sar" and sar is not None:
            waves = (sar,) * modality.num_bands
        assert self.wavelength_embed is not None, "require_embedding checks this first"
        codes = torch.tensor(waves, dtype=torch.float32, device=device)
        return self.wavelength_embed.encode_wavelengths(codes)

    def embed_patches(self, x: Tensor, modality: Modality) -> Tensor:
        """Normalised [B, C, H, W] -> tokens [B, L, D], through the modality's own embedding
        when the model has one, else through the wavelength-conditioned one."""
        require_embedding(self, modality)
        # float32 on the CPU, also under bf16 autocast: on CPUs with AMX (Intel Sapphire Rapids
        # and later) oneDNN's bf16 convolution with stride = kernel gives silently wrong values,
        # NaN at times (12 or 16 bands on 64 px tiles, 1-16 bands on tiles 8 px wide; oneDNN
        # pull 5494); the patch embedding is a few % of the model's work
        with torch.autocast("cpu", enabled=False):
            if modality.name in self.patch_embeds:
                return self.patch_embeds[modality.name](x)
            assert self.wavelength_embed is not None
            return self.wavelength_embed(x, self.wavelength_codes(modality, x.device))

    def _embed(self, x: Tensor, modality: Modality) -> tuple[Tensor, Tensor]:
        """Normalised [B, C, H, W] -> (patch tokens with position [B, L, D], class token
        with position [1, 1, D])."""
        pos = self._pos(self.pos_embed, self._grid_of(x))
        return self.embed_patches(x, modality) + pos[:, 1:], self.cls_token + pos[:, :1]

    @staticmethod
    def _with_cls(tokens: Tensor, cls: Tensor) -> Tensor:
        """[B, L, D], [1, 1, D] -> [B, 1+L, D]."""
        return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def _encode(self, tokens: Tensor, cls: Tensor) -> Tensor:
        """[B, L, D] tokens, [1, 1, D] class token -> [B, 1+L, D] after every block and norm."""
        x = self._with_cls(tokens, cls)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def random_masking(self, x: Tensor, mask_ratio: float, generator: Generator | None = None):
        """Per-sample random masking by sorting random noise.

        x: [B, L, D] -> (kept tokens [B, L_keep, D], mask [B, L] with 1 = hidden,
        ids_restore [B, L]). Exactly int(L * (1 - mask_ratio)) patches stay visible.
        """
        check_mask_ratio(mask_ratio)
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

    def forward_encoder(
        self,
        x: Tensor,
        modality: Modality,
        mask_ratio: float,
        generator: Generator | None = None,
    ):
        """Normalised [B, C, H, W] -> (latent [B, 1+L_keep, D], mask [B, L], ids_restore [B, L])."""
        tokens, cls = self._embed(x, modality)
        tokens, mask, ids_restore = self.random_masking(tokens, mask_ratio, generator)
        return self._encode(tokens, cls), mask, ids_restore

    # --------------------------------------------------------------- decoder
    def forward_decoder(
        self,
        latent: Tensor,
        ids_restore: Tensor,
        modality: Modality,
        grid: tuple[int, int],
    ) -> Tensor:
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
            raise ModelMismatch(
                f"this model has no pixel head for modality '{modality.name}'",
                "use a checkpoint with a wavelength-conditioned embedding",
            )
        return self.wavelength_head(x, self.wavelength_codes(modality, x.device))

    def patch_targets(self, imgs: Tensor) -> Tensor:
        """Normalised [B, C, H, W] -> what the decoder learns to predict [B, L, p*p*C]: patches,
        each standardised on its own with ``norm_pix_loss``."""
        target = self.patchify(imgs)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error on hidden patches: normalised imgs [B, C, H, W], pred
        [B, L, p*p*C], mask [B, L] -> a scalar."""
        loss = ((pred - self.patch_targets(imgs)) ** 2).mean(dim=-1)  # [B, L], per patch
        if mask.sum() == 0:  # mask_ratio 0: plain autoencoding
            return loss.mean()
        return (loss * mask).sum() / mask.sum()

    # ---------------------------------------------------------- public API
    def forward(
        self,
        x: Tensor,
        modality: str | Modality,
        mask_ratio: float = 0.75,
        generator: Generator | None = None,
        return_latent: bool = False,
    ):
        """MAE step. x: [B, C, H, W] in sensor units -> (loss, pred [B, L, p*p*C], mask [B, L]),
        and the encoder's output on the visible patches [B, 1+L_keep, D] with ``return_latent``
        (what a second pre-training objective works on)."""
        x, m = prepare(x, modality, self.modalities, self.config.patch_size)
        latent, mask, ids_restore = self.forward_encoder(x, m, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore, m, self._grid_of(x))
        loss = self.forward_loss(x, pred, mask)
        return (loss, pred, mask, latent) if return_latent else (loss, pred, mask)

    def forward_features(self, x: Tensor, modality: str | Modality) -> Tensor:
        """All tokens, nothing masked: [B, C, H, W] in sensor units -> [B, 1+L, D], class
        token first."""
        x, m = prepare(x, modality, self.modalities, self.config.patch_size)
        return self._encode(*self._embed(x, m))

    def pooled_features(self, x: Tensor, modality: str | Modality, pool: str = "mean") -> Tensor:
        """One vector per image: [B, C, H, W] in sensor units -> [B, D], the mean of the patch
        tokens (through ``fc_norm`` where the model has one, as DOFA), or the class token;
        ``pool="mean+std"``: [B, 2D], the tokens' mean and their spread over the image (how
        varied the scene is, which a mean averages away)."""
        tokens = self.forward_features(x, modality)
        if pool == "cls":
            return tokens[:, 0]
        patches = tokens[:, 1:]
        pooled = patches.mean(1)
        pooled = self.fc_norm(pooled) if self.fc_norm is not None else pooled
        if pool == "mean+std":
            return torch.cat([pooled, patches.std(1, unbiased=False)], 1)
        return pooled

    def forward_intermediates(
        self, x: Tensor, modality: str | Modality, layers: Sequence[int]
    ) -> list[Tensor]:
        """Token maps after the given encoder blocks: normalised [B, C, H, W] -> one
        [B, D, h, w] per layer, through the final norm unless the source model's maps have
        none (``norm_layers=False``, DOFA v2)."""
        m = resolve_modality(modality, self.modalities)
        grid = self._grid_of(x)
        h = self._with_cls(*self._embed(x, m))
        wanted, out = set(layers), {}
        for i, block in enumerate(self.blocks[: max(layers) + 1]):
            h = block(h)
            if i in wanted:
                normed = self.norm(h) if self.config.norm_layers else h
                out[i] = normed[:, 1:].transpose(1, 2).reshape(h.shape[0], -1, *grid)
        return [out[i] for i in layers]

    @torch.no_grad()
    def reconstruct(
        self,
        x: Tensor,
        modality: str | Modality,
        mask_ratio: float = 0.75,
        seed: int | None = None,
        keep_visible: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Hide patches, predict them back: [B, C, H, W] in sensor units ->

        (image [B, C, H, W] in the input's units: visible patches are the input itself, hidden
        ones the model's prediction; mask [B, 1, H, W], 1 = hidden). A seed repeats the mask.
        ``keep_visible=False`` returns the prediction everywhere (with ``mask_ratio=0``: the
        model's plain autoencoding of the whole image).
        """
        m = resolve_modality(modality, self.modalities)
        x = check_input(x, m, self.config.patch_size)
        xn = normalize(x, m)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        grid = self._grid_of(x)
        latent, mask, ids_restore = self.forward_encoder(xn, m, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore, m, grid)
        if self.config.norm_pix_loss:  # predictions are per-patch standardised: use true stats
            target = self.patchify(xn)
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
            pred = pred * std + mean
        image = denormalize(self.unpatchify(pred, x.shape[1], grid), m)
        p = self.config.patch_size
        mask_img = mask.reshape(-1, 1, *grid).repeat_interleave(p, 2).repeat_interleave(p, 3)
        if not keep_visible:
            return image, mask_img
        return torch.where(mask_img.bool(), image, x), mask_img

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"size={c.size}, patch_size={c.patch_size}, img_size={c.img_size}, "
            f"modalities={list(self.modalities)}"
        )


def set_fused_attention(model: OFANet, enabled: bool) -> None:
    """Use PyTorch's fused attention kernel in every block, or plain matmul + softmax.

    Fused is the fast choice on GPUs; on CPUs under bf16 autocast its backward pass is slow
    for short token sequences, and plain attention trains ~1.4x faster (bench/RESULTS.md).
    Both compute the same function.
    """
    for block in [*model.blocks, *model.decoder_blocks]:
        block.attn.fused_attn = enabled


def _blocks(
    dim: int,
    heads: int,
    depth: int,
    mlp_ratio: float,
    norm_layer: Callable[[int], nn.Module],
    init_values: float | None = None,
) -> nn.ModuleList:
    """``depth`` ViT blocks (timm's, see vit.py) of width ``dim``, as MAE builds its encoder
    and decoder."""
    return nn.ModuleList(
        [
            Block(
                dim, heads, mlp_ratio, qkv_bias=True, init_values=init_values, norm_layer=norm_layer
            )
            for _ in range(depth)
        ]
    )


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


__all__ = [
    "OFANet",
    "OFAConfig",
    "SIZES",
    "DEFAULT_MODALITIES",
    "WavelengthPatchEmbed",
    "count_parameters",
    "set_fused_attention",
]
