"""MAE pre-training loop: one GPU, many GPUs or CPU processes under torchrun (PyTorch DDP).

    python -m ofa_explore.pretraining.train --config ofa_explore/pretraining/configs/demo.yaml
    torchrun --nproc_per_node=4 -m ofa_explore.pretraining.train --config CONFIG [--resume]

Rank 0 logs (CSV, TensorBoard when installed, a progress bar) and writes checkpoints every
``checkpoint_every`` steps: a folder holding the model in ofa_explore's checkpoint format and the
training state (optimiser, schedule, grad scaler, RNG, step), renamed into place when complete, the
last ``keep_last`` kept. ``--resume`` continues from the newest one; because the batch of a step is
a function of the step, a run killed at any moment continues where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import CheckpointError, read_tensors, save_checkpoint, write_tensors
from ..errors import CLI_WORDS, BadInput, ModelMismatch, NotFound, OFAError, OutputError
from ..model import OFANet, set_fused_attention
from ..precision import autocast_for, fused_attention_for, resolve_precision
from ..threads import set_threads
from .config import TrainConfig, config_dict, load_config
from .data import ChipSampler, StepBatches, View, build_sources
from .log import TrainingLog
from .objective import PretrainObjective

STATE_FORMAT = "ofa_explore.training_state"


class RunFolderInUse(OutputError, FileExistsError):
    """A new run was asked to write where another run's checkpoints are."""


def build_model(cfg: TrainConfig) -> OFANet:
    """The model a config describes: an own patch embedding for each source with
    ``embedding: own`` (or ``model.modalities``), the wavelength-conditioned one if asked."""
    mc = cfg.model
    modalities = mc.modalities or list(
        dict.fromkeys(s.modality for s in cfg.data if s.embedding == "own")
    )
    return OFANet(
        mc.size,
        modalities=modalities,
        patch_size=mc.patch_size,
        img_size=mc.img_size,
        wavelength_embed=mc.wavelength_embed,
        norm_pix_loss=mc.norm_pix_loss,
        **mc.arch,
    )


def load_initial_weights(model: OFANet, init_from: str, base: Path) -> Path:
    """Copy a checkpoint's encoder and decoder weights into ``model`` (its heads are left out:
    they belong to downstream tasks). ``init_from``: a path, or "shipped" for the packaged
    model; refused when its architecture or modalities differ from the config's."""
    from ..checkpoint import load_checkpoint
    from ..pretrained import shipped_checkpoint_path

    if init_from == "shipped":
        path = shipped_checkpoint_path()
    else:
        path = Path(os.path.expandvars(init_from))
        path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise NotFound(f"init_from: no checkpoint at {path}", "check init_from in {config}")
    source = {
        k: v
        for k, v in load_checkpoint(path).state_dict().items()
        if ".heads." not in k and not k.startswith("heads.")
    }
    target = model.state_dict()
    mismatched = sorted(
        k
        for k in set(source) | set(target)
        if k not in source or k not in target or source[k].shape != target[k].shape
    )
    if mismatched:
        raise ModelMismatch(
            f"init_from: {path.name} does not fit the model of this config "
            f"({len(mismatched)} tensors differ, e.g. {mismatched[0]})",
            "give the model section and the sources the checkpoint was trained with",
        )
    model.load_state_dict(source, strict=False)
    return path


def fused_attention(cfg: TrainConfig, device: torch.device) -> bool:
    """``attention: auto``: the fused kernel, except under bf16 on a CPU where it is slower."""
    if cfg.attention == "auto":
        return fused_attention_for(resolve_precision(cfg.precision, device), device)
    return cfg.attention == "fused"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr``."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
    return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases, tokens and position embeddings (as MAE)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(("token", "pos_embed")) else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:  # one fused kernel instead of a loop over many small tensors (torch >= 2.4)
        return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))


# ---------------------------------------------------------------- checkpoints
def save_training_state(
    folder: Path,
    step: int,
    objective: PretrainObjective,
    optimizer,
    scaler,
    cfg: TrainConfig,
    metrics: dict[str, Any],
) -> Path:
    """Write ``folder`` atomically: the model in ofa_explore's format, and the state (optimiser,
    the objective's own modules such as the projector, scaler, RNG, step); a temporary folder
    renamed when complete."""
    model = objective.model
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_checkpoint(
            model, tmp / "model.safetensors", step=step, config=config_dict(cfg), **metrics
        )
        opt = optimizer.state_dict()
        tensors = {
            f"optim.{i}.{k}": v.detach().cpu()
            for i, s in opt["state"].items()
            for k, v in s.items()
        }
        if objective.projector is not None:
            tensors.update(
                {
                    f"projector.{k}": v.detach().cpu()
                    for k, v in objective.projector.state_dict().items()
                }
            )
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
        header = {
            "format": STATE_FORMAT,
            "format_version": 1,
            "step": step,
            "param_groups": opt["param_groups"],
            "scaler": scaler.state_dict(),
        }
        write_tensors(tmp / "state.safetensors", tensors, header)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_training_state(folder: Path, objective: PretrainObjective, optimizer, scaler) -> int:
    """Restore model, projector, optimiser, scaler and RNG from a checkpoint folder; returns
    its step."""
    from ..checkpoint import load_checkpoint

    if not (folder / "model.safetensors").is_file() or not (folder / "state.safetensors").is_file():
        raise CheckpointError(
            f"{folder} is not a complete training checkpoint (model.safetensors "
            "and state.safetensors expected)"
        )
    saved = load_checkpoint(folder / "model.safetensors")
    objective.model.load_state_dict(saved.state_dict())
    tensors, header = read_tensors(folder / "state.safetensors", STATE_FORMAT)
    projector = {
        k[len("projector.") :]: v for k, v in tensors.items() if k.startswith("projector.")
    }
    if (objective.projector is None) != (not projector):
        raise CheckpointError(
            f"{folder} was written by a run {'with' if projector else 'without'} the contrastive "
            "objective; resume with the config it was started with (objective.contrastive)"
        )
    if objective.projector is not None:
        objective.projector.load_state_dict(projector)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})
    scaler.load_state_dict(header["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(header["step"])


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted((output_dir / "checkpoints").glob("step_*"))
    return found[-1] if found else None


# ---------------------------------------------------------------- loop
def train(
    cfg: TrainConfig,
    base: Path | None = None,
    resume: bool | str = False,
    quiet: bool = False,
    stop_after_s: float | None = None,
) -> Path:
    """Run (or continue) pre-training; returns the path of the final model checkpoint.
    Relative data paths are read from ``base`` (default: the working directory). A new run
    refuses an ``output_dir`` that holds another run's checkpoints, which it would mix with its
    own; ``resume=True`` continues from the newest one. ``stop_after_s``: a lease's clock (one
    process): after that many seconds of steps the run checkpoints, validates and writes its
    model where it is, so a machine that is taken back still returns one. Torch's thread count
    is the caller's choice (``set_threads``; the command lines set it)."""
    base = Path.cwd() if base is None else base
    rank, world, device = _setup_distributed()
    if stop_after_s is not None and world > 1:
        raise BadInput(
            "a time limit stops one process; under torchrun the ranks would disagree",
            "give steps instead",
        )
    out = Path(cfg.output_dir)
    existing = latest_checkpoint(out)
    if not resume and existing is not None:
        raise RunFolderInUse(
            f"{out} already holds the checkpoints of a run ({existing.name})",
            "continue it with resume=True (command line: --resume), or choose another output_dir",
        )
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = build_model(cfg).to(device)
    set_fused_attention(model, fused_attention(cfg, device))
    objective = PretrainObjective(model, cfg.objective).to(device)
    optimizer = make_optimizer(objective, cfg)
    precision = resolve_precision(cfg.precision, device)  # auto: bf16 where native, else fp32
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    start = 0
    if cfg.init_from and not resume:  # a resumed run has its own newer weights
        origin = load_initial_weights(model, cfg.init_from, base)
        _log0(rank, f"starting from the weights of {origin}")
    if resume:
        folder = Path(resume) if isinstance(resume, str) else latest_checkpoint(out)
        if folder is None:
            raise NotFound(
                f"no checkpoint to resume from in {out / 'checkpoints'}",
                "start the run without resume",
            )
        start = load_training_state(folder, objective, optimizer, scaler)
        _log0(rank, f"resumed from {folder} at step {start}")
    net = (
        DistributedDataParallel(objective, find_unused_parameters=True) if world > 1 else objective
    )
    sources = build_sources(cfg, base)
    train_batches = ChipSampler(
        sources, cfg.seed, "train", cfg.crop_scale, cfg.objective.views, cfg.augment
    )
    val_batches = ChipSampler(sources, cfg.seed + 1, "val")
    loader = torch.utils.data.DataLoader(
        StepBatches(train_batches, rank, cfg.steps),
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
    )
    log = TrainingLog(out, rank, start > 0, quiet, cfg.steps, start, cfg.log_every)
    autocast = autocast_for(precision, device)
    model.train()
    last = {}
    t_prev = time.perf_counter()
    deadline = None if stop_after_s is None else t_prev + stop_after_s
    done = start
    for step, modality, views in loader:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        views = [View(v.modality, v.x.to(device, non_blocking=True)) for v in views]
        # masks, like batches, are a function of (seed, step, rank): a resumed run repeats them
        masks = [
            torch.Generator(device).manual_seed(
                cfg.seed * 1_000_003 + step * 1009 + rank + 7919 * i
            )
            for i in range(len(views))
        ]
        with autocast:
            losses = net(views, cfg.mask_ratio, masks)
        loss = losses["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        now = time.perf_counter()
        x = views[0].x
        last = dict(
            step=step,
            modality=modality,
            loss=loss.item(),
            mae=losses["mae"].item(),
            contrastive=(losses["contrastive"].item() if "contrastive" in losses else ""),
            hog=(losses["hog"].item() if "hog" in losses else ""),
            lr=lr_at(step, cfg),
            images_per_s=x.shape[0] * world / max(now - t_prev, 1e-9),
            batch_sum=float(x.double().sum()),
            val_loss="",
        )
        t_prev = now
        done = step + 1
        if cfg.val_every and done % cfg.val_every == 0:
            last["val_loss"] = validate(model, val_batches, cfg, autocast)
        log.step(last)
        out_of_time = deadline is not None and now > deadline and done < cfg.steps
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time:
            if rank == 0:
                save_training_state(
                    out / "checkpoints" / f"step_{done:07d}",
                    done,
                    objective,
                    optimizer,
                    scaler,
                    cfg,
                    {"train_loss": last["loss"]},
                )
                _prune(out / "checkpoints", cfg.keep_last)
            _barrier(world)
        if out_of_time:
            break
    val = validate(model, val_batches, cfg, autocast)
    final = out / "model.safetensors"
    if rank == 0:
        save_checkpoint(
            model,
            final,
            steps=done,
            config=config_dict(cfg),
            train_loss=last.get("loss"),
            val_loss=val,
        )
        log.close(
            f"final train loss {last['loss']:.4f}, val loss {val:.4f}"
            + (f" (time limit: stopped at step {done} of {cfg.steps})" if done < cfg.steps else "")
            if last
            else f"nothing left to train: the run was complete ({cfg.steps} steps); val loss "
            f"{val:.4f}"
        )
    if world > 1:  # every rank must hold the same weights: say so in the job's log
        digest = hashlib.sha256(
            b"".join(p.detach().cpu().numpy().tobytes() for p in model.state_dict().values())
        ).hexdigest()
        print(f"rank {rank} weights sha256 {digest}", flush=True)
        _barrier(world)
        dist.destroy_process_group()
    return final


@torch.no_grad()
def validate(model: OFANet, sampler: ChipSampler, cfg: TrainConfig, autocast) -> float:
    """Masked-patch loss on held-out chips, same masks every time (seeded)."""
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for i in range(cfg.val_batches):
        source = sampler.source_for(i)
        x = sampler.chips(source, i)
        with autocast:
            loss, _, _ = model(
                x.to(device),
                source.modality,
                cfg.mask_ratio,
                generator=torch.Generator(device).manual_seed(i),
            )
        losses.append(loss.item())
    model.train()
    return float(sum(losses) / len(losses))


# ---------------------------------------------------------------- helpers
def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _prune(folder: Path, keep: int) -> None:
    for old in sorted(folder.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _log0(rank: int, message: str) -> None:
    if rank == 0:
        print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line of ``python -m`` / ``torchrun -m ofa_explore.pretraining.train``: a
    shell, so it chooses torch's thread count (``OFA_EXPLORE_THREADS``, else the cores free)."""
    parser = argparse.ArgumentParser(
        prog="ofa_explore.pretraining.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML training config")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the newest checkpoint (or the folder given)",
    )
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--steps", type=int, help="override steps")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        set_threads()
        cfg = load_config(args.config, output_dir=args.output_dir, steps=args.steps)
        final = train(cfg, Path.cwd(), resume=args.resume, quiet=args.quiet)
    except OFAError as err:  # the config, the data, the run folder: one line, no traceback
        print(f"{parser.prog}: error: {err.render(CLI_WORDS)}", file=sys.stderr)
        return 2
    _log0(int(os.environ.get("RANK", "0")), f"model written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
