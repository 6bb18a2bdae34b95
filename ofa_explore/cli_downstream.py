"""The downstream verbs of `ofa`: train-head (fit a head on labelled data, save backbone + head)
and evaluate (score a head, compare a backbone with random init, run GEO-Bench); their parsers
are in cli.py."""

from __future__ import annotations

import argparse
import sys

from . import protocol
from .errors import BadInput, OutputError


def cmd_train_head(args: argparse.Namespace) -> int:
    from .checkpoint import save_checkpoint
    from .downstream import fit_scene_head, fit_segmentation_head
    from .heads import DEFAULT_POOL
    from .pretrained import load_model

    model = load_model(args.checkpoint)
    if args.output.exists() and not args.overwrite:
        raise OutputError(
            f"{args.output} exists", "add {overwrite} to replace it", path=str(args.output)
        )
    name = args.name or {"segmentation": "segmentation", "change": "change"}.get(
        args.task, "classifier"
    )
    progress = None if args.quiet else print_progress
    val_fraction = args.val_fraction if args.val_fraction is not None else 0.2
    if args.members is not None and (args.task != "change" or args.members < 1):
        raise BadInput(
            f"`--members {args.members}`: only a change head has members, one or more",
            "leave out `--members`, or give a whole number from 1 with `--task change`",
        )
    if args.task == "change":
        from .downstream.change import MEMBERS, fit_change_head

        if args.trainable_blocks or args.method != "linear" or args.modality or args.pool:
            raise BadInput(
                "a change head trains on a frozen backbone, with each pair's sensor as read "
                "from its files, on token maps (nothing pooled)",
                "leave out `--trainable-blocks`, `--method`, `--modality` and `--pool` with "
                "`--task change`",
            )

        report = fit_change_head(
            model,
            args.data,
            name,
            epochs=args.epochs or 6,
            val_fraction=args.val_fraction or 0.0,
            seed=args.seed,
            members=args.members or MEMBERS,
            progress=progress,
        )
        print(
            f"head {name!r} ({protocol.count(report['members'], 'member')}): trained on "
            f"{report['pairs']} pairs ({report['labelled']} labelled "
            f"px, {report['changed'] / max(report['labelled'], 1):.1%} change"
            + (
                f"; self-trained on {report['unlabelled']} unlabelled"
                if report["unlabelled"]
                else ""
            )
            + f") in {report['seconds']:.0f} s"
        )
        if report["val"]:
            print(
                f"held out {', '.join(report['val'])}: AUROC {report['auroc']:.3f}, average "
                f"precision {report['ap']:.3f}, best F1 {report['best_f1']:.3f}"
            )
    elif args.task == "segmentation":
        if args.pool:
            raise BadInput(
                "a segmentation head reads token maps, nothing pooled",
                "leave out `--pool` with `--task segmentation`",
            )
        report = fit_segmentation_head(
            model,
            args.data,
            name,
            modality=args.modality,
            trainable_blocks=args.trainable_blocks,
            epochs=args.epochs or 60,
            val_fraction=val_fraction,
            seed=args.seed,
            progress=progress,
        )
        print(
            f"head {name!r}: mIoU {report['miou']:.3f} on {report['val']} held-out tiles "
            f"(train {report['train_miou']:.3f})"
        )
    else:
        report = fit_scene_head(
            model,
            args.data,
            name,
            modality=args.modality,
            method=args.method,
            trainable_blocks=args.trainable_blocks,
            epochs=args.epochs or 30,
            val_fraction=val_fraction,
            pool=args.pool or DEFAULT_POOL,
            seed=args.seed,
            progress=progress,
        )
        print(
            f"head {name!r}: accuracy {report['accuracy']:.3f}, macro-F1 "
            f"{report['macro_f1']:.3f} on {report['val']} held-out chips "
            f"({len(report['classes'])} classes, {report['train']} training chips)"
        )
    source = args.checkpoint or "shipped demo checkpoint"
    out = save_checkpoint(model, args.output, backbone=str(source), head_trained=name)
    verb = "change BEFORE AFTER -o OUT.tif" if args.task == "change" else "classify"
    print(f"wrote {out} (backbone + head; use it with `ofa {verb} --checkpoint {out}`)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .pretrained import load_model

    model = load_model(args.checkpoint)
    progress = None if args.quiet else print_progress
    if args.benchmark:
        from .downstream.geobench import format_table, run_geobench

        rows = run_geobench(model, args.root, tasks=args.tasks, progress=progress)
        print(format_table(rows))
        return 0
    if args.data is None:
        raise BadInput(
            "nothing to evaluate",
            "give labelled chips with {data}, or a benchmark with {benchmark}",
        )
    if args.probe:
        from .downstream import compare_with_random_init

        rows = compare_with_random_init(
            model, args.data, modality=args.modality, folds=args.folds, progress=progress
        )
        print(f"{'features':<15}{'method':<8}{'accuracy':>10}{'± fold sd':>11}{'macro-F1':>10}")
        for r in rows:
            print(
                f"{r['backbone']:<15}{r['method']:<8}{r['accuracy']:>10.3f}"
                f"{r['accuracy_std']:>11.3f}{r['macro_f1']:>10.3f}"
            )
        print(
            f"({rows[0]['chips']} chips, {rows[0]['folds']}-fold cross-validation, "
            f"{rows[0]['repeats']} repeats)"
        )
        return 0
    from .downstream import evaluate_head

    report = evaluate_head(model, args.data, args.head, args.modality, progress=progress)
    if report["kind"] == "segmentation":
        print(
            f"head {report['head']!r}: mIoU {report['miou']:.3f}, pixel accuracy "
            f"{report['pixel_accuracy']:.3f}"
        )
        for name, iou in zip(report["classes"], report["iou"]):
            print(f"  {name:<24}IoU {'-' if iou is None else f'{iou:.3f}'}")
        return 0
    print(
        f"head {report['head']!r}: accuracy {report['accuracy']:.3f}, macro-F1 "
        f"{report['macro_f1']:.3f} on {report['count']} chips"
    )
    width = max(len(c) for c in report["classes"])
    print("confusion (rows: true, columns: predicted)")
    for name, row in zip(report["classes"], report["confusion"]):
        print(f"  {name:<{width}} " + " ".join(f"{v:>3}" for v in row))
    return 0


def print_progress(stage: str, done: int, total: int) -> None:
    end = "\n" if done >= total else ""
    print(f"\r{stage}: {done}/{total}", end=end, file=sys.stderr, flush=True)
