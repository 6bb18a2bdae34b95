"""The long pre-training on a lent GPU machine, ready for the minutes one is lent.

A lease (one H200 for minutes) has torch, timm and numpy but no GDAL or pydantic, takes the
working tree and at most 64 MiB in all, and sends back at most 8 files of 16 MiB. So:

    python scripts/gpu_pretrain.py prepare              # here: .gpu/ = packed data + wheels
    # the device call it prints: command "python3 scripts/gpu_pretrain.py device", carry [".gpu"]
    python scripts/gpu_pretrain.py fetch FILES_AT       # here: runs/gpu/, checked

``prepare`` packs the config's sources (``configs/gpu.yaml``: all shared data) into what is left
of the 64 MiB after the tracked tree and the wheels, and writes the packed config. ``device``
installs the wheels, times 40 steps, sets the step count (and so the schedule) to fill
``--minutes``, trains from the shipped weights with a time limit as a safety net, and writes
the model in parts with its hash, the log and a summary to ``$OUT``. ``fetch`` joins the parts,
checks the hash and the checkpoint, and writes a run folder the model card and the evaluation
read as any other.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAVEL_LIMIT = 64 * 2**20  # what a device call takes with it
MARGIN = 2**20
PART = 15 * 2**20  # files come back up to 16 MiB each
CALIBRATION_STEPS = 40
RESERVE_S = 45  # of the minutes: the final validation, the model's writing, the copies
# what the lease lacks, for its Python 3.12 on x86-64 (the versions of this environment)
WHEELS = [
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions==4.16.0",  # pydantic needs a recent one
]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def prepare(args: argparse.Namespace) -> int:
    from ofa_explore.pretraining.config import config_dict, load_config
    from ofa_explore.pretraining.packed import pack

    folder = args.dir.resolve()
    if folder.exists() and any(folder.iterdir()) and not (folder / "config.yaml").is_file():
        print(
            f"error: {folder} holds files prepare did not write; give an empty --dir",
            file=sys.stderr,
        )
        return 2
    for old in ("data", "whl"):  # only what an earlier prepare wrote
        shutil.rmtree(folder / old, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    _exclude(folder)
    if args.wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
            + ["--python-version", "3.12", "--implementation", "cp"]
            + [f"--platform={p}" for p in PLATFORMS]
            + ["-d", str(folder / "whl"), *WHEELS],
            check=True,
        )
    wheels = _size(folder)
    tree = _tree_size()
    budget = TRAVEL_LIMIT - tree - wheels - MARGIN
    print(f"travels: tree {_mib(tree)}, wheels {_mib(wheels)}; data budget {_mib(budget)}")
    if budget < 2 * 2**20:
        print("error: under 2 MiB left for data; ignore or carry less", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    packed, report = pack(cfg, ROOT, folder / "data", budget, seed=args.seed)
    for r in report:
        kept, available = r.regions
        print(f"  {r.modality:24s} {kept:4d} of {available:4d} regions  {_mib(r.nbytes)}")
    raw = config_dict(packed)
    (folder / "config.yaml").write_text(_yaml(raw))
    total = tree + _size(folder)
    print(f"packed {len(report)} sources; {_mib(total)} of {_mib(TRAVEL_LIMIT)} will travel")
    print(
        'device call: run(command="python3 scripts/gpu_pretrain.py device --minutes '
        f'{args.minutes}", carry=["{os.path.relpath(folder, ROOT)}"], timeout_s=600)'
    )
    return 0


def device(args: argparse.Namespace) -> int:
    started = time.monotonic()
    folder = args.dir.resolve()
    wheels = sorted((folder / "whl").glob("*.whl"))
    if wheels and importlib.util.find_spec("pydantic") is None:  # the image's own stay as are
        site = Path(tempfile.gettempdir()) / "ofa_gpu_site"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
            + ["--no-compile", "--upgrade", "--target", str(site), *map(str, wheels)],
            check=True,
        )
        sys.path.insert(0, str(site))
    import torch

    if not torch.cuda.is_available() and not args.cpu:
        print("error: no GPU here (give --cpu to run on the CPU anyway)", file=sys.stderr)
        return 2
    out = Path(os.environ.get("OUT") or args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ofa_gpu_") as scratch:  # its checkpoints: ~50 MB
        return _train_and_send(args, folder, out, Path(scratch), started)


def _train_and_send(
    args: argparse.Namespace, folder: Path, out: Path, work: Path, started: float
) -> int:
    """Calibrate the step time, train for the minutes left, write the model in parts to OUT."""
    import torch

    from ofa_explore.pretraining.config import load_config
    from ofa_explore.pretraining.log import step_seconds
    from ofa_explore.pretraining.train import train

    cfg = load_config(folder / "config.yaml")
    workers = max(1, (os.cpu_count() or 2) - 2)  # chips are cut on the CPU: all cores but two
    cfg = cfg.model_copy(update=dict(num_workers=workers))
    calibration = cfg.model_copy(
        update=dict(
            steps=args.calibration_steps,
            output_dir=str(work / "calibration"),
            checkpoint_every=10**6,
            val_batches=1,
        )
    )
    train(calibration, ROOT, quiet=True)
    with open(work / "calibration" / "log.csv") as f:
        rows = list(csv.DictReader(f))[args.calibration_steps // 4 :]  # past the warm-up
    per_step = sum(step_seconds(rows, cfg)) / len(rows)
    left = args.minutes * 60 - (time.monotonic() - started) - RESERVE_S
    steps = max(1, min(cfg.steps, int(left / per_step)))
    if args.steps:
        steps = args.steps
    print(f"{per_step * 1000:.1f} ms a step; {steps} steps in the {left:.0f} s left", flush=True)
    run = cfg.model_copy(update=dict(steps=steps, output_dir=str(work / "run")))
    t0 = time.monotonic()
    final = train(run, ROOT, quiet=True, stop_after_s=max(left, 1.0))
    seconds = time.monotonic() - t0
    data = final.read_bytes()
    for k in range(0, len(data), PART):
        (out / f"model.safetensors.part{k // PART}").write_bytes(data[k : k + PART])
    shutil.copy(work / "run" / "log.csv", out / "log.csv")
    with open(out / "log.csv") as f:
        done = list(csv.DictReader(f))
    summary = dict(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        steps_planned=steps,
        steps=len(done),
        train_seconds=round(seconds, 1),
        ms_per_step_calibrated=round(per_step * 1000, 2),
        final_loss=float(done[-1]["loss"]) if done else None,
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        torch=torch.__version__,
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return 0


def fetch(args: argparse.Namespace) -> int:
    from ofa_explore.checkpoint import load_checkpoint

    if not (args.files / "summary.json").is_file():
        print(
            f"error: {args.files} holds no summary.json: give the files_at folder of the "
            "device run that trained (its output tail says why it sent none)",
            file=sys.stderr,
        )
        return 2
    summary = json.loads((args.files / "summary.json").read_text())
    parts = sorted(
        args.files.glob("model.safetensors.part*"), key=lambda p: int(p.suffix[len(".part") :])
    )
    data = b"".join(p.read_bytes() for p in parts)
    if hashlib.sha256(data).hexdigest() != summary["sha256"]:
        print(f"error: the parts in {args.files} do not join to the model sent", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    tmp = args.output / "model.safetensors.part"
    tmp.write_bytes(data)
    try:
        load_checkpoint(tmp)  # a checkpoint this version reads, or an error naming what is wrong
    except Exception:
        tmp.unlink()
        raise
    os.replace(tmp, args.output / "model.safetensors")
    for name in ("log.csv", "summary.json"):
        shutil.copy(args.files / name, args.output / name)
    print(f"{args.output / 'model.safetensors'}: {summary['steps']} steps on {summary['device']}")
    print(f"next: python scripts/evaluation_table.py --checkpoint {args.output}/model.safetensors")
    return 0


def _exclude(folder: Path) -> None:
    """Keep the packed folder out of git (and so out of commits), where it lies in the repo."""
    exclude = ROOT / ".git" / "info" / "exclude"
    if not folder.is_relative_to(ROOT) or not exclude.parent.is_dir():
        return
    line = f"/{folder.relative_to(ROOT).as_posix()}/"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if line not in lines:
        exclude.write_text("\n".join([*lines, line]) + "\n")


def _tree_size() -> int:
    """Bytes of what a device call sends without being asked: tracked and untracked files
    that git does not ignore."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [ROOT / n.decode() for n in names if n]
    return sum(f.stat().st_size for f in files if f.is_file())


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _yaml(raw: dict) -> str:
    import yaml

    return yaml.safe_dump(raw, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="here: pack the data and the wheels into --dir")
    p.add_argument("--config", type=Path, default=ROOT / "ofa_explore/pretraining/configs/gpu.yaml")
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-wheels", dest="wheels", action="store_false")
    p.set_defaults(func=prepare)
    d = sub.add_parser("device", help="there: train for --minutes, the model to $OUT")
    d.add_argument("--minutes", type=float, default=7.0)
    d.add_argument("--calibration-steps", type=int, default=CALIBRATION_STEPS)
    d.add_argument("--steps", type=int, help="this many steps instead of what the minutes allow")
    d.add_argument("--out", type=Path, default=Path("gpu_out"), help="where $OUT is unset")
    d.add_argument("--cpu", action="store_true", help="run without a GPU (a check)")
    d.set_defaults(func=device)
    f = sub.add_parser("fetch", help="here: join, check and store what came back")
    f.add_argument("files", type=Path, help="the folder the files came back to (files_at)")
    f.add_argument("--output", type=Path, default=ROOT / "runs" / "gpu")
    f.set_defaults(func=fetch)
    for s in (p, d):
        s.add_argument("--dir", type=Path, default=ROOT / ".gpu", help="the packed folder")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
