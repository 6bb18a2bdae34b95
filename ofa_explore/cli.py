"""`ofa ...`: a thin command line over the Python API; it parses arguments and calls functions.

Exit codes (ofa_explore.errors): 0 success; 1 an unexpected error (a bug: its traceback is
printed); 2 bad usage or bad input (an OFAError: one line that says what to change, in the
command line's words); 3 some of several scenes failed (each is reported; the others were
written); 130 cancelled (Ctrl-C, or SIGTERM for embed / classify / reconstruct).

`ofa embed|classify|reconstruct --progress json` is the protocol for programs that run the
command as a worker (e.g. the QGIS plugin): stdout carries only JSON objects, one per line,
flushed at once; the events are described and built in ofa_explore.protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import traceback
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, cast

from . import protocol
from .cli_change import add_change_verb, cmd_change
from .cli_downstream import cmd_evaluate, cmd_train_head
from .cli_raster import (
    CANCEL_SIGNAL,
    CHECKPOINT_HELP,
    add_raster_verbs,
    cmd_predict,
    sigterm_as_ctrl_c,
)
from .errors import (
    CLI_WORDS,
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    OFAError,
)
from .report import report_for
from .startup import loading, run_and_exit
from .threads import ensure_threads, parse_threads, set_threads

THREADS_HELP = (
    "CPU threads for the model (default: the cores free for this process; "
    "environment: OFA_EXPLORE_THREADS)"
)
EPILOG = """examples:
  ofa modalities                      list the built-in sensors and their bands
  ofa modalities s2_l1c               one modality in full (wavelengths, GSD, statistics)
  ofa info model.safetensors          what a checkpoint holds
  ofa convert dofa_base.pth -o dofa_base.safetensors --from dofa-base-v1
  ofa demo                            shipped model on shipped scenes: reconstructions, embeddings
  ofa pretrain --config ofa_explore/pretraining/configs/demo.yaml
  ofa embed scene.tif -o emb.tif                    (the shipped model; or --checkpoint C)
  ofa reconstruct scene.tif -o rec.tif --checkpoint model.safetensors --mask-ratio 0.5
  ofa classify scene.tif -o classes.tif --checkpoint model.safetensors --modality s2_l1c
  ofa embed B01.tif B02.tif B03.tif ... -o emb.tif --checkpoint model.safetensors
  ofa classify 'scenes/*.tif' -o maps/ --checkpoint model.safetensors     many scenes
  ofa embed scenes.txt -o embeddings/ --dask          many scenes on a local Dask cluster
  ofa train-head --data eurosat/ -o landcover.safetensors          (folder per class, or CSV)
  ofa train-head --data trees/ --task segmentation -o trees.safetensors  (images/ + masks/)
  ofa train-head --data pairs.csv --task change -o change.safetensors   (before,after,mask)
  ofa evaluate --data eurosat/index.csv --checkpoint landcover.safetensors
  ofa evaluate --data eurosat/index.csv --probe        linear probe + kNN vs random init
  ofa evaluate --benchmark geobench --root ~/geobench   the OFA-Net paper's GEO-Bench tasks
"""


def _cmd_modalities(args: argparse.Namespace) -> int:
    from .modalities import get_modality, list_modalities

    if args.name:
        m = get_modality(args.name)
        print(json.dumps(m.to_dict(), indent=2) if args.json else m.describe())
        return 0
    mods = [get_modality(n) for n in list_modalities()]
    if args.json:
        print(json.dumps([m.to_dict() for m in mods], indent=2))
        return 0
    rows = [("name", "kind", "bands", "GSD (m)", "description")] + [
        (m.name, m.kind, str(m.num_bands), f"{m.gsd:g}" if m.gsd else "varies", m.description)
        for m in mods
    ]
    name, kind = (max(len(row[i]) for row in rows) for i in (0, 1))  # columns as wide as needed
    for row in rows:
        print(f"{row[0]:<{name}}  {row[1]:<{kind}}  {row[2]:>5}  {row[3]:>8}  {row[4]}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import read_metadata

    meta = read_metadata(args.checkpoint)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    cfg = meta["config"]
    rows = [
        ("checkpoint", args.checkpoint),
        (
            "model",
            f"OFANet-{cfg['size']} (D={cfg['embed_dim']}, depth={cfg['depth']}, "
            f"heads={cfg['num_heads']}), patch {cfg['patch_size']}, image "
            f"{cfg['img_size']}",
        ),
        (
            "decoder",
            f"D={cfg['decoder_embed_dim']}, depth={cfg['decoder_depth']}; "
            "wavelength-conditioned embedding: " + ("yes" if cfg["wavelength_embed"] else "no"),
        ),
        (
            "modalities",
            ", ".join(
                f"{k} ({protocol.count(len(v['bands']), 'band')})"
                for k, v in meta["modalities"].items()
            )
            or "none",
        ),
    ]
    rows += [
        (
            "head",
            f"{name}: {len(h['classes'])} classes ({', '.join(h['classes'][:6])}"
            f"{', ...' if len(h['classes']) > 6 else ''})",
        )
        for name, h in meta.get("heads", {}).items()
    ]
    rows += list(meta.get("provenance", {}).items())
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        lines = value if isinstance(value, list) else [value]
        for i, line in enumerate(lines):  # lists (the conversion report): one item per line
            print(f"{key if i == 0 else '':<{width}}{line}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import save_checkpoint
    from .weights import load_published

    model = load_published(args.weights, path=args.checkpoint)
    # licence, citation, the source file's name and the conversion report go into the metadata
    out = save_checkpoint(model, args.output, **model.provenance)
    print(cast(Any, model).conversion_report.summary())  # attached by load_published
    print(f"licence: {model.provenance['licence']}\ncite: {model.provenance['citation']}")
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, checkpoint=args.checkpoint)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretraining.config import load_config
    from .pretraining.train import train

    cfg = load_config(args.config, output_dir=args.output_dir, steps=args.steps)
    final = train(cfg, Path.cwd(), resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"model written to {final}", flush=True)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    return serve()  # `run` then skips the teardown (~1.5 s with torch), which QGIS would wait for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa",
        description="OFA-Net for Earth observation: one backbone for every modality.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=_threads, help=THREADS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("modalities", help="list built-in modalities (sensor facts)")
    p.add_argument("name", nargs="?", help="show one modality in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_modalities)

    p = sub.add_parser("info", help="describe a checkpoint without loading its weights")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--json", action="store_true", help="print the whole metadata as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "convert",
        help="convert published DOFA / OFA-Net weights (.pth) into an ofa_explore checkpoint",
    )
    p.add_argument("checkpoint", type=Path, help="local .pth file of the published weights")
    p.add_argument(
        "--from",
        dest="weights",
        required=True,
        choices=published_weights(),
        help="which published weights the file holds",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors path")
    p.set_defaults(func=_cmd_convert)

    add_raster_verbs(sub)
    add_change_verb(sub)

    p = sub.add_parser(
        "train-head",
        help="fit a classification or segmentation head on labelled data; writes backbone + head",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with one sub-folder per class, or a CSV with path,label "
        "(optional group column); segmentation: images/ + masks/ or image,mask CSV; "
        "change: a CSV with before,after,mask (mask 1 change, 0 none, 255 not labelled)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors")
    p.add_argument("--checkpoint", help="backbone: " + CHECKPOINT_HELP)
    p.add_argument("--modality", help="override modality detection (see `ofa modalities`)")
    p.add_argument("--task", choices=["scene", "segmentation", "change"], default="scene")
    p.add_argument("--name", help="head name (default: classifier / segmentation / change)")
    p.add_argument(
        "--method",
        choices=["linear", "finetune"],
        default="linear",
        help="scene heads: linear probe on frozen features (default) or fine-tuning",
    )
    p.add_argument(
        "--trainable-blocks",
        type=int,
        default=0,
        help="fine-tune the last K encoder blocks too (-1: all; default 0)",
    )
    p.add_argument(
        "--pool",
        help="scene heads: how the tokens are pooled into one feature (mean, cls or mean+std; "
        "default mean+std)",
    )
    p.add_argument(
        "--epochs", type=int, help="training epochs (default 30; segmentation 60; change 6)"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        help="held out for scores (default 0.2; change: 0, a share of the pairs)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--members",
        type=int,
        help="change: heads trained alike from seeds SEED, SEED+1, ..., their logits averaged "
        "(default 3; each costs one head's training)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_train_head)

    p = sub.add_parser(
        "evaluate",
        help="score a head on labelled data, compare a backbone with random init, or run GEO-Bench",
    )
    p.add_argument("--data", type=Path, help="labelled chips (as for train-head)")
    p.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("--head", help="which head (default: the first for the data's modality)")
    p.add_argument("--modality", help="override modality detection")
    p.add_argument(
        "--probe",
        action="store_true",
        help="linear probe + kNN of the frozen backbone vs random initialisation",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for --probe")
    p.add_argument("--benchmark", choices=["geobench"], help="run a benchmark's task list")
    p.add_argument(
        "--root",
        type=Path,
        help="benchmark folder (GEO-Bench: the folder holding "
        "classification_v1.0/ and segmentation_v1.0/)",
    )
    p.add_argument("--tasks", nargs="+", help="benchmark tasks to run (default: all found)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="the shipped pre-trained model on the shipped scenes: "
        "masked reconstructions and an embedding map",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("ofa-demo"),
        help="output folder (default: ./ofa-demo)",
    )
    p.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "pretrain",
        help="MAE pre-training from a YAML config (one process; for "
        "several GPUs: torchrun -m ofa_explore.pretraining.train)",
    )
    p.add_argument(
        "--config", type=Path, required=True, help="e.g. ofa_explore/pretraining/configs/demo.yaml"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the newest checkpoint (or the folder given)",
    )
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--steps", type=int, help="override steps")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser(
        "serve",
        help="for programs: a worker that keeps the engine and its models loaded; one JSON "
        "job a line on stdin (a task's arguments), JSON events on stdout (see "
        "ofa_explore.serve; the QGIS plugin's warm engine)",
    )
    p.set_defaults(func=_cmd_serve)
    for command in sub.choices.values():  # also accepted after the command
        command.add_argument(
            "--threads", type=_threads, default=argparse.SUPPRESS, help=THREADS_HELP
        )
    return parser


def published_weights() -> list[str]:
    """The names of the published weights, read from their records (``weights.WEIGHTS`` reads
    the same file, and loads torch with the converters)."""
    text = resources.files(__package__).joinpath(f"data/{protocol.WEIGHTS_FILE}").read_text()
    return sorted(record["name"] for record in json.loads(text)["weights"])


def quiet_gdal() -> None:
    """GDAL prints its own errors on stderr (``ERROR 1: TIFFFetchDirectory...``) wherever no
    handler catches them (threads, reads outside rasterio's environment); the command line says
    what went wrong in one line of its own, so those go nowhere unless the user asks for them
    (``CPL_LOG=/dev/stderr``, GDAL's own setting, wins)."""
    os.environ.setdefault("CPL_LOG", os.devnull)


def _threads(value: str) -> int:
    try:
        return parse_threads(value, "--threads")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    quiet_gdal()
    # rioxarray multiplies affine transforms with `*`, which affine >= 3 flags as pending
    # deprecation; it is rioxarray's own code, nothing a user of ofa can act on
    warnings.filterwarnings(
        "ignore", category=PendingDeprecationWarning, module=r"rioxarray\.rioxarray"
    )
    with loading():  # imports torch: the collector paused meanwhile (startup.py)
        if args.threads:
            set_threads(args.threads)
        elif args.func not in (_cmd_modalities, _cmd_info, _cmd_convert):  # these run no model
            ensure_threads()  # the shell's default: the cores free for this process
    args.report = report_for(args.command, getattr(args, "progress", "none"))
    previous = sigterm_as_ctrl_c() if args.func in (cmd_predict, cmd_change) else None
    try:
        return run_command(args)
    finally:
        if previous is not None and CANCEL_SIGNAL is not None:
            signal.signal(CANCEL_SIGNAL, previous)


def run_command(args: argparse.Namespace) -> int:
    """Runs a parsed command, telling ``args.report`` what happens (warnings included), and
    turns what it raises into an exit code; `ofa serve` runs each job through here too."""
    shown = warnings.showwarning
    warnings.showwarning = lambda message, *_, **__: args.report.warning(str(message))
    try:
        return args.func(args)
    except KeyboardInterrupt as interrupt:  # several scenes: says how many were written
        args.report.cancelled(str(interrupt) or "cancelled; nothing was written")
        return EXIT_CANCELLED
    except OFAError as err:  # the user can fix it: one line in the command line's words
        args.report.error(err.to_event(CLI_WORDS))
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - reported, then the exit code says what it was
        traceback.print_exc()  # a bug: its traceback on stderr, never on the JSON stdout
        problem = f"unexpected {type(err).__name__}: {err}"
        args.report.error(
            protocol.error_event(
                protocol.FAILED,
                problem,
                "this is a bug; please report it with the traceback",
                f"{problem} (a bug; please report it with the traceback above)",
            )
        )
        return EXIT_FAILED
    finally:
        warnings.showwarning = shown


def run() -> None:
    """The ``ofa`` command (its console script, ``python -m ofa_explore``): ``main`` with this
    process's arguments, then the process ends without its slow teardown (startup.py)."""
    run_and_exit(main)


if __name__ == "__main__":
    run()
