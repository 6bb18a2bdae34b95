"""`ofa change BEFORE AFTER -o OUT.tif`: the change between two dates (ofa_explore.change)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_raster import (
    CHECKPOINT_HELP,
    add_engine_options,
    add_progress_options,
    add_quicklook_option,
    engine_settings,
)
from .protocol import MISREGISTERED_PX, SCENE_THRESHOLDS, change_threshold
from .startup import loading


def add_change_verb(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "change",
        help="change between two dates of the same place, per pixel",
        description="Write the change between BEFORE and AFTER as a Cloud-Optimised GeoTIFF on "
        "BEFORE's grid: band 1 a zero-shot change score (higher = more change; in standard "
        "deviations of the scene's scores), band 2 a 0/1 mask with --threshold. AFTER on "
        "another grid or CRS is warped onto BEFORE's.",
    )
    p.add_argument(
        "before",
        help="the earlier raster, or its scene's folder or zip of band files (its grid is the "
        "output's)",
    )
    p.add_argument("after", help="the later raster, folder or zip, same sensor and bands")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .tif")
    p.add_argument(
        "--threshold",
        type=_threshold,
        help="add band 2, a 0/1 mask of score >= VALUE; 'auto': "
        f"{change_threshold(head=False):g} for the zero-shot score, "
        f"{change_threshold(head=True):g} for a trained change head's (measured on OSCD); "
        "'otsu': Otsu's split of the scene's scores (marks far more than changed on urban pairs)",
    )
    p.add_argument(
        "--polygons",
        type=Path,
        metavar="OUT.gpkg",
        help="also write the changed areas as polygons with their area and their pixels' mean "
        "and highest score (needs --threshold)",
    )
    p.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="keep AFTER where its georeferencing puts it (and warn when it is off); by "
        f"default, AFTER whose features lie {MISREGISTERED_PX:g} px or more off BEFORE's (phase "
        "correlation) is warped onto them",
    )
    p.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    p.add_argument(
        "--head",
        help="the checkpoint's change head to score with (default: its first change head, "
        "if any; 'zero-shot': none); band 1 is then the head's change logit, standardised over "
        "the scene like the zero-shot score",
    )
    p.add_argument("--modality", help="override modality detection (see `ofa modalities`)")
    add_engine_options(
        p,
        overlap_help="tile overlap in pixels (default: tile/4; tile/2 with a change head, "
        "whose tiles are blended)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_quicklook_option(p)
    add_progress_options(p)
    p.set_defaults(func=cmd_change)


def _threshold(text: str) -> float | str:
    if text in SCENE_THRESHOLDS:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number, 'auto' or 'otsu'") from None


def cmd_change(args: argparse.Namespace) -> int:
    """`ofa change`; as `ofa <task>` (cli_raster.cmd_predict), a program that runs it in-process
    (`ofa serve`) may set ``args.load_model`` and ``args.cancel``."""
    from .devices import check_device
    from .fileio import check_writable

    check_writable(args.output)
    check_device(args.device)
    with loading():
        from .change_detection import change
        from .engine import Cancelled
        from .pretrained import load_model

    settings = engine_settings(args, quicklook=args.quicklook)
    report = args.report
    load = getattr(args, "load_model", None) or load_model
    report.start("change", 2, f"{Path(args.before).name} -> {Path(args.after).name}")
    try:
        result = change(
            args.before,
            args.after,
            args.output,
            model=lambda: load(args.checkpoint),
            threshold=args.threshold,
            polygons=args.polygons,
            head=args.head,
            modality=args.modality,
            settings=settings,
            overwrite=args.overwrite,
            align=getattr(args, "align", True),
            progress=report.progress,
            cancel=getattr(args, "cancel", None),
        )
    except Cancelled:  # the caller's cancel is a Ctrl-C to the shell
        raise KeyboardInterrupt("cancelled; nothing was written") from None
    finally:
        report.close()
    report.result(result)
    return 0
