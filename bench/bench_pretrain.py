"""Benchmark: pre-training images/s of OFANet versus a plain reference MAE of the same size.

    python bench/bench_pretrain.py [--size tiny] [--img 64] [--patch 8] [--batch 32] [--steps 30]

The reference is MAE written plainly (timm PatchEmbed and Blocks, encoder on visible patches
only, one linear pixel head), trained in float32 with a default AdamW, as most MAE code is.
OFANet runs as the pre-training pipeline can run it: its optimiser (`make_optimizer`: fused
AdamW), bf16 autocast (`precision: bf16`, on CPUs with avx512_bf16/AMX and on GPUs) and the
attention kernel `attention: auto` picks for the device. The reference is also timed under bf16
autocast, to show what precision alone gives. Both train on the same real EuroSAT batches; the
script prints each figure and the ratio to the fp32 reference (goal >= 1.2).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from timm.layers import PatchEmbed
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from ofa_explore import OFANet, get_modality
from ofa_explore.model import SIZES, set_fused_attention
from ofa_explore.precision import autocast_for
from ofa_explore.pretraining.config import load_config
from ofa_explore.pretraining.train import fused_attention, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))


class PlainMAE(nn.Module):
    """The reference: MAE as in models_mae.py, for one band set, nothing else."""

    def __init__(
        self,
        in_chans,
        img,
        patch,
        embed_dim,
        depth,
        num_heads,
        decoder_embed_dim,
        decoder_depth,
        decoder_num_heads,
        **_,
    ):
        super().__init__()
        self.patch = patch
        grid = img // patch
        self.patch_embed = PatchEmbed(img, patch, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = build_sincos2d_pos_embed([grid, grid], dim=embed_dim)
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, embed_dim), pos])[None])
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        dpos = build_sincos2d_pos_embed([grid, grid], dim=decoder_embed_dim)
        self.register_buffer(
            "decoder_pos_embed", torch.cat([torch.zeros(1, decoder_embed_dim), dpos])[None]
        )
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_embed_dim, decoder_num_heads, qkv_bias=True)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch * patch * in_chans)

    def forward(self, imgs, mask_ratio=0.75):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        B, L, D = x.shape
        keep = int(L * (1 - mask_ratio))
        ids_shuffle = torch.argsort(torch.rand(B, L), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, L)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(B, L - keep, -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        p, h = self.patch, imgs.shape[2] // self.patch
        target = imgs.reshape(B, -1, h, p, h, p).permute(0, 2, 4, 3, 5, 1).reshape(B, L, -1)
        loss = ((pred - target) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


def eurosat_batches(batch: int, img: int, n: int) -> list[torch.Tensor]:
    files = sorted(glob.glob(str(SHARED / "eurosat/*/*.tif")))
    chips = np.stack([rasterio.open(f).read()[:, :img, :img] for f in files]).astype(np.float32)
    rng = np.random.default_rng(0)
    return [torch.from_numpy(chips[rng.choice(len(chips), batch)]) for _ in range(n)]


def images_per_second(step, batches) -> float:
    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for x in batches:
        step(x)
    return len(batches) * batches[0].shape[0] / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--img", type=int, default=64)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    m = get_modality("s2_l1c")
    batches = [x.to(device) for x in eurosat_batches(args.batch, args.img, args.steps)]
    mean = torch.tensor(m.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(m.std, device=device).view(1, -1, 1, 1)
    dims = SIZES[args.size]

    torch.manual_seed(0)
    plain = PlainMAE(13, args.img, args.patch, **dims).to(device)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-4)

    def plain_step(x, autocast=autocast_for("fp32", device)):
        with autocast:
            loss = plain((x - mean) / std)
        plain_opt.zero_grad()
        loss.backward()
        plain_opt.step()

    def pipeline_config(precision: str, attention: str = "auto"):
        return load_config(
            {
                "data": [{"modality": "s2_l1c", "paths": []}],
                "precision": precision,
                "attention": attention,
                "optim": {"lr": 1e-4, "warmup_steps": 1},
            }
        )

    def our_step_fn(precision: str, fused: bool, attention: str = "auto"):
        torch.manual_seed(0)
        ours = OFANet(
            args.size,
            modalities=["s2_l1c"],
            img_size=args.img,
            patch_size=args.patch,
            wavelength_embed=False,
        ).to(device)
        cfg = pipeline_config(precision, attention)
        set_fused_attention(ours, fused_attention(cfg, device))
        opt = make_optimizer(ours, cfg) if fused else torch.optim.AdamW(ours.parameters(), lr=1e-4)
        autocast = autocast_for(precision, device)

        def step(x):
            with autocast:
                loss, _, _ = ours(x, "s2_l1c")
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    plain_ips = images_per_second(plain_step, batches)
    plain_bf16_ips = images_per_second(
        lambda x: plain_step(x, autocast_for("bf16", device)), batches
    )
    fp32_ips = images_per_second(our_step_fn("fp32", False), batches)
    fused_ips = images_per_second(our_step_fn("fp32", True), batches)
    bf16_fused_attn_ips = images_per_second(our_step_fn("bf16", True, "fused"), batches)
    ours_ips = images_per_second(our_step_fn("bf16", True), batches)
    auto = "fused" if fused_attention(pipeline_config("bf16"), device) else "math"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, device {device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, torch "
        f"{torch.__version__}; ViT-{args.size} ({dims['embed_dim']}x{dims['depth']}), image "
        f"{args.img}, patch {args.patch}, batch {args.batch}, {args.steps} steps, EuroSAT 13 bands"
    )
    print(f"plain reference MAE, fp32:       {plain_ips:8.1f} images/s")
    print(
        f"plain reference MAE, bf16:       {plain_bf16_ips:8.1f} images/s  "
        f"({plain_bf16_ips / plain_ips:.2f}x)"
    )
    print(
        f"OFANet, fp32, same AdamW:        {fp32_ips:8.1f} images/s  ({fp32_ips / plain_ips:.2f}x)"
    )
    print(
        f"OFANet, fp32, fused AdamW:       {fused_ips:8.1f} images/s  "
        f"({fused_ips / plain_ips:.2f}x)"
    )
    print(f"OFANet, bf16, fused AdamW, fused attention: {bf16_fused_attn_ips:8.1f} images/s")
    print(f"OFANet, bf16, fused AdamW, attention auto ({auto}): {ours_ips:8.1f} images/s")
    print(f"ratio OFANet / plain MAE: {ours_ips / plain_ips:.2f} (goal >= 1.2)")


if __name__ == "__main__":
    main()
