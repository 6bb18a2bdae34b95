"""`ofa ...`: a thin command line over the Python API; it parses arguments and calls functions.

Exit codes: 0 success, 1 unexpected failure, 2 bad usage or bad input (the message says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  ofa modalities                      list the built-in sensors and their bands
  ofa modalities s2_l1c               one modality in full (wavelengths, GSD, statistics)
  ofa info model.safetensors          what a checkpoint holds
  ofa convert dofa_base.pth -o dofa_base.safetensors --from dofa-base-v1
  ofa demo                            train a tiny OFA-Net briefly on shipped chips, write a panel
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
    print(f"{'name':<14}{'kind':<15}{'bands':>5}  {'GSD (m)':>8}  description")
    for m in mods:
        gsd = f"{m.gsd:g}" if m.gsd else "varies"
        print(f"{m.name:<14}{m.kind:<15}{m.num_bands:>5}  {gsd:>8}  {m.description}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import read_metadata

    meta = read_metadata(args.checkpoint)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    cfg = meta["config"]
    print(f"checkpoint   {args.checkpoint}")
    print(f"model        OFANet-{cfg['size']} (D={cfg['embed_dim']}, depth={cfg['depth']}, "
          f"heads={cfg['num_heads']}), patch {cfg['patch_size']}, image {cfg['img_size']}")
    print(f"decoder      D={cfg['decoder_embed_dim']}, depth={cfg['decoder_depth']}; "
          f"wavelength-conditioned embedding: {'yes' if cfg['wavelength_embed'] else 'no'}")
    print("modalities   " + (", ".join(f"{k} ({len(v['bands'])} bands)"
                                       for k, v in meta["modalities"].items()) or "none"))
    for name, head in meta.get("heads", {}).items():
        print(f"head         {name}: {len(head['classes'])} classes "
              f"({', '.join(head['classes'][:6])}{', ...' if len(head['classes']) > 6 else ''})")
    for key, value in meta.get("provenance", {}).items():
        print(f"{key:<13}{value}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import save_checkpoint
    from .weights import load_published

    model = load_published(args.weights, path=args.checkpoint)
    out = save_checkpoint(model, args.output, converted_from=str(args.checkpoint),
                          weights=args.weights)
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, steps=args.steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa", description="OFA-Net for Earth observation: one backbone for every modality.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("modalities", help="list built-in modalities (sensor facts)")
    p.add_argument("name", nargs="?", help="show one modality in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_modalities)

    p = sub.add_parser("info", help="describe a checkpoint without loading its weights")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--json", action="store_true", help="print the whole metadata as JSON")
    p.set_defaults(func=_cmd_info)

    from .weights import WEIGHTS
    p = sub.add_parser("convert", help="convert published DOFA / OFA-Net weights (.pth) into "
                                       "an ofa_explore checkpoint")
    p.add_argument("checkpoint", type=Path, help="local .pth file of the published weights")
    p.add_argument("--from", dest="weights", required=True, choices=sorted(WEIGHTS),
                   help="which published weights the file holds")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors path")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("demo", help="train a tiny OFA-Net for a few seconds on the shipped "
                                    "sample chips and write a reconstruction panel")
    p.add_argument("-o", "--output", type=Path, default=Path("ofa-demo"),
                   help="output folder (default: ./ofa-demo)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default: 300, about 15 s)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"ofa {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
