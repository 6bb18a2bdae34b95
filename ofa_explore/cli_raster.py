"""The raster verbs of `ofa`: embed, reconstruct and classify over one scene (``-o FILE.tif``)
or many (``-o FOLDER``, serially or on Dask); the tasks and their help come from the engine's
``TASKS`` and ``protocol.TASKS``. SIGTERM cancels like Ctrl-C, so a worker stops cleanly."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from . import protocol
from .checks import PRECISIONS
from .errors import CLI_WORDS, EXIT_SCENES_FAILED, BadInput
from .startup import loading

CHECKPOINT_HELP = (
    "a checkpoint file, or published weights by name (dofa-base-v1, ...: see "
    "`ofa convert -h`; downloaded and converted once); default: the shipped model"
)
# The command-line form of the EngineSettings fields a task lists in its ``options``
TASK_OPTIONS: dict[str, tuple[str, dict]] = {
    "mask_ratio": (
        "--mask-ratio",
        {
            "type": float,
            "default": 0.75,
            "help": "share of patches hidden (default 0.75; 0 = none)",
        },
    ),
    "seed": ("--seed", {"type": int, "default": 0, "help": "mask seed (default 0)"}),
    "head": ("--head", {"help": "which head of the checkpoint (default: its first)"}),
}


def add_raster_verbs(sub: argparse._SubParsersAction) -> None:
    """One subcommand per task of ``protocol.TASKS`` that reads one raster (the engine's,
    without importing it: torch loads when a command runs, not for ``--help``); change, of two
    dates, has its own (cli_change)."""
    for task, text in ((t.name, t.help) for t in protocol.TASKS.values() if len(t.inputs) == 1):
        p = sub.add_parser(
            task,
            help=f"{text}, over a raster of any size",
            description=f"Write {text} as a Cloud-Optimised GeoTIFF with the "
            "input's CRS and extent.",
        )
        p.add_argument(
            "raster",
            nargs="+",
            help="with -o FILE.tif: a raster GDAL reads, or one single-band file per "
            "band (stacked in the modality's band order; as files, a quoted pattern or "
            "their folder or zip, such as a Sentinel-2 .SAFE; files of other bands are left "
            "out); "
            "with -o FOLDER: "
            "scenes, as paths, quoted glob patterns ('scenes/*.tif') or text "
            "files (.txt) listing one path per line",
        )
        p.add_argument(
            "-o",
            "--output",
            type=Path,
            required=True,
            help="output .tif (one scene), or a folder: each scene is written to "
            f"FOLDER/<name>_{task}.tif",
        )
        p.add_argument("--checkpoint", help=CHECKPOINT_HELP)
        p.add_argument("--modality", help="override modality detection (see `ofa modalities`)")
        p.add_argument(
            "--bands",
            type=_band_numbers,
            metavar="N,N,...",
            help="use these bands of the file, in this order, counted from 1 as in "
            "GIS software (e.g. 4,3,2 or 1-12); detection sees only them (of a file of one "
            "sensor's band count, unnamed: those bands of it)",
        )
        add_engine_options(p)
        p.add_argument("--nodata", help="override the file's nodata value ('none' to unset)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
        add_quicklook_option(p)
        add_progress_options(p)
        p.add_argument(
            "--dask",
            action="store_true",
            help="with -o FOLDER: spread the scenes over a local Dask cluster, one "
            "model per worker (needs ofa-explore[cluster])",
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="with -o FOLDER: spread the scenes over the running Dask scheduler at "
            "ADDRESS (e.g. tcp://10.0.0.5:8786); paths must be the same on "
            "every worker",
        )
        p.add_argument(
            "--workers",
            type=int,
            help="--dask: worker processes (default: one per core, at most one per scene)",
        )
        for option in protocol.TASKS[task].options:  # the settings only this task reads
            flag, spec = TASK_OPTIONS[option]
            p.add_argument(flag, **spec)
        p.set_defaults(func=cmd_predict)


def add_engine_options(
    p: argparse.ArgumentParser, overlap_help: str = "tile overlap in pixels (default: tile/4)"
) -> None:
    """How the engine runs (tiles, batches, device, precision): the same for every verb that
    runs it over a raster."""
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's image size)")
    p.add_argument("--overlap", type=int, help=overlap_help)
    p.add_argument(
        "--batch-size",
        type=int,
        help="tiles per batch (default: about 2048 patches' worth, 32 tiles of "
        "64 x 64 px with 8-px patches)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (default): bf16 where the device computes it natively (a recent GPU, "
        "a CPU with AVX512-BF16 or AMX; faster, embeddings within 1%% of fp32, class maps "
        "99.7%% the same), else exact fp32; fp32 for exact results everywhere; bf16; "
        "fp16 (CUDA)",
    )


def add_quicklook_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-quicklook",
        dest="quicklook",
        action="store_false",
        help="write no small PNG preview beside each output (written by default)",
    )


def add_progress_options(p: argparse.ArgumentParser) -> None:
    """--progress and -q, for every verb that runs the engine."""
    p.add_argument(
        "--progress",
        choices=["bar", "json", "none"],
        default="bar",
        help="bar (default); json: only JSON lines on stdout (start, progress, "
        "result, error, cancelled) for programs that run ofa; none",
    )
    p.add_argument(
        "-q",
        "--quiet",
        dest="progress",
        action="store_const",
        const="none",
        help="no progress bar (same as --progress none)",
    )


def engine_settings(args: argparse.Namespace, **fields):
    """The EngineSettings of a raster verb's common options (tile, overlap, batch size, device,
    precision), plus ``fields``."""
    from .engine import EngineSettings

    return EngineSettings(
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        **fields,
    )


def cmd_predict(args: argparse.Namespace) -> int:
    """`ofa <task>`. A program that runs it in-process (`ofa serve`) may set ``args.load_model``
    (models kept between jobs) and ``args.cancel`` (a threading.Event: a cancel, reported like
    Ctrl-C)."""
    several = args.output.suffix.lower() not in protocol.TIF_SUFFIXES
    _check_first(args, several)  # before the model loads and before anything is written
    with loading():  # the engine's imports (xarray, rasterio...), the collector paused
        from .engine import Cancelled, predict_raster
        from .io import KEEP, open_raster, raster_modality
        from .pretrained import load_model

    settings = engine_settings(
        args,
        quicklook=args.quicklook,
        **{option: getattr(args, option) for option in TASK_OPTIONS if hasattr(args, option)},
    )
    if several:
        return _predict_scenes(args, settings)
    report = args.report
    cancel = getattr(args, "cancel", None)
    model = (getattr(args, "load_model", None) or load_model)(args.checkpoint)
    nodata = KEEP if args.nodata is None else None if args.nodata == "none" else float(args.nodata)
    files = [f for r in args.raster for f in _pattern_files(r)]
    raster = open_raster(
        files if len(files) > 1 else files[0],
        modality=args.modality,
        nodata=nodata,
        bands=args.bands,
    )
    modality = raster_modality(raster).name
    report.start(modality, raster.sizes["band"], ", ".join(Path(r).name for r in args.raster))
    try:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled before the first batch")
        result = predict_raster(
            model,
            raster,
            args.command,
            args.output,
            settings=settings,
            overwrite=args.overwrite,
            progress=report.progress,
            cancel=cancel,
        )
    except Cancelled:  # the caller's cancel is a Ctrl-C to the shell
        raise KeyboardInterrupt("cancelled; nothing was written") from None
    finally:
        report.close()
    report.result(result)
    return 0


def _pattern_files(item: str) -> list[str]:
    """A raster argument, or the files of a quoted pattern ('B*.tif': as with -o FOLDER)."""
    import glob

    from .scenes import matching

    if glob.has_magic(item) and not Path(item).exists():
        return [str(p) for p in matching(item)]
    return [item]


def _check_first(args: argparse.Namespace, several: bool) -> None:
    """What can be refused from the arguments alone: the output's form, the combination of
    options, the device, the modality's name, the cluster extra. Cheap, and nothing is loaded
    or made before it passes."""
    from .devices import check_device
    from .fileio import check_writable
    from .modalities import get_modality

    if several:
        from .scenes import check_folder, need_distributed

        check_folder(args.output)
        if args.bands or args.nodata is not None:
            raise BadInput(
                "{bands} and {nodata} apply to one scene",
                "run several scenes without them, or one scene with a .tif in {output}",
            )
        if args.workers is not None and (args.workers < 1 or not args.dask):
            raise BadInput(
                "{workers} (1 or more) sets the size of the local cluster that {dask} starts",
                "add {dask}, or leave {workers} out",
            )
        if args.dask or args.scheduler:
            need_distributed(args.scheduler or "local")
    elif args.dask or args.scheduler or args.workers:
        raise BadInput(
            "{dask}, {scheduler} and {workers} spread several scenes over a cluster",
            "give an output folder with {output} instead of one .tif",
        )
    else:
        check_writable(args.output)  # its folder exists and takes files (the engine checks more)
    if not (several and args.scheduler):  # a scheduler's workers have their own devices
        check_device(args.device)
    if args.modality is not None:
        get_modality(args.modality)


def _predict_scenes(args: argparse.Namespace, settings) -> int:
    """-o FOLDER: every input is a scene (paths, globs, lists of paths), each written to
    FOLDER/<name>_<task>.tif, one after another or on a Dask cluster."""
    from .scenes import expand_inputs, predict_scenes

    scenes = expand_inputs(args.raster)
    cluster = args.scheduler or ("local" if args.dask else None)
    report = args.report
    try:
        outcomes = predict_scenes(
            scenes,
            args.command,
            args.output,
            checkpoint=args.checkpoint,
            settings=settings,
            modality=args.modality,
            overwrite=args.overwrite,
            cluster=cluster,
            workers=args.workers,
            on_scene=report.scene,
            on_start=lambda: report.scenes_start(len(scenes), cluster, args.output),
            words=CLI_WORDS,
        )
    finally:
        report.close()
    failed = [o for o in outcomes if o.error]
    report.scenes_end(len(outcomes), failed)
    return EXIT_SCENES_FAILED if failed else 0


def _band_numbers(text: str) -> list[int]:
    """'4,3,2' or, as GIS users write runs of bands, '1-12' and '1-8,10'."""
    numbers: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            run = range(int(first), int(last) + 1) if last else [int(first)]
            if not run:
                raise ValueError(part)  # 5-3
            numbers.extend(run)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give band numbers counted from 1, separated by commas (a run as "
            "first-last), e.g. 4,3,2 or 1-12"
        ) from None
    return numbers


# What a scheduler or a GUI sends to cancel: SIGTERM (POSIX), Ctrl-Break (Windows' process groups)
CANCEL_SIGNAL = signal.SIGTERM if os.name == "posix" else getattr(signal, "SIGBREAK", None)


def sigterm_as_ctrl_c():
    """Make the cancel signal raise KeyboardInterrupt in the main thread, so the engine removes
    its temporary files as on Ctrl-C. Returns the handler to restore, or None where nothing was
    installed."""
    if CANCEL_SIGNAL is None:
        return None
    try:
        previous = signal.signal(CANCEL_SIGNAL, _raise_interrupt)
    except ValueError:  # main() called outside the main thread: signals cannot be handled
        return None
    return signal.SIG_DFL if previous is None else previous


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
