"""QGIS click to layer, cold and warm, in the real QGIS desktop.

    python bench/bench_qgis.py [--clicks 3] [--rounds 2] [--engine PYTHON] [--ok-after S]

QGIS runs under Xvfb as tests/test_qgis_desktop.py runs it (a fresh profile, the plugin installed
from its zip, the engine set in its settings) and tests/qgis_desktop/drive.py clicks Classify
layer ``--clicks`` times on a ~400 x 400 px Sentinel-2 L1C layer (OSCD bercy, 360 x 395 px, 13
bands), pressing OK in the dialog each time. "cold" is the first click of a fresh QGIS (no engine
worker running), "warm" the later ones. Each round runs QGIS twice: with the warm engine
(`ofa serve`, the default) and with OFA_EXPLORE_WARM=0 (one `ofa classify` process per click, the
plugin's way before the warm engine).

Times: from the toolbar click to the result layer in the Layers panel ("click"; the dialog is
open for ``--ok-after`` seconds of it, 0.3 by default, until the robot presses OK) and from OK
to the layer ("OK"); the longest stall of QGIS's main thread meanwhile; whether a worker
process was left after QGIS closed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
LAYER = SHARED / "change" / "oscd" / "bercy" / "bercy_20161130.tif"


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("average:")[-1]


def run_qgis(
    engine_python: str, clicks: int, warm: bool, folder: Path, ok_after: float = 0.3
) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_qgis_desktop import profile  # the desktop test's fresh profile
    finally:
        sys.path.pop(0)
    results, out, inputs = folder / "results", folder / "out", folder / "inputs"
    for made in (results, out, inputs):
        made.mkdir(parents=True)
    layer = inputs / "bercy.tif"  # a copy: QGIS writes its statistics (.aux.xml) beside it
    shutil.copy(LAYER, layer)
    steps = [
        ["classify", str(layer), "bercy", "bercy classes" + (f" ({i + 1})" if i else "")]
        for i in range(clicks)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "OFA_EXPLORE"))}
    env.update(
        QT_QPA_PLATFORM="xcb",
        OFA_DESKTOP_OUT=str(out),
        OFA_DESKTOP_STEPS=json.dumps(steps),
        HOME=str(folder),
        PATH="/usr/bin:/bin",
        OFA_EXPLORE_WARM="1" if warm else "0",
        OFA_DESKTOP_OK_AFTER_MS=str(int(ok_after * 1000)),
    )
    command = [
        shutil.which("xvfb-run") or "xvfb-run",
        "-a",
        "-s",
        "-screen 0 1600x1000x24",
        shutil.which("qgis") or "qgis",
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(profile(folder, engine_python, results)),
        "--code",
        str(ROOT / "tests" / "qgis_desktop" / "drive.py"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    report = json.loads((out / "report.json").read_text())
    if proc.returncode or report["errors"]:
        raise SystemExit(
            f"QGIS failed ({proc.returncode}): {report['errors']} {proc.stderr[-2000:]}"
        )
    pids = {s.get("worker_after") for s in report["steps"]} - {None}
    report["left"] = [pid for pid in pids if _alive(pid)]
    return report


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engine", default=sys.executable, help="the engine's Python")
    parser.add_argument(
        "--ok-after",
        type=float,
        default=0.3,
        metavar="S",
        help="seconds the dialog stays open before OK is pressed (a user reading it; the warm "
        "engine starts meanwhile); default 0.3",
    )
    parser.add_argument(
        "--one-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run QGIS with one process per click (default: yes)",
    )
    args = parser.parse_args()
    rows = []
    for round_ in range(args.rounds):
        for warm in (True, False) if args.one_process else (True,):
            with tempfile.TemporaryDirectory(prefix="ofa-bench-qgis-") as folder:
                before = load()
                report = run_qgis(args.engine, args.clicks, warm, Path(folder), args.ok_after)
                steps = report["steps"]
                row = {
                    "round": round_ + 1,
                    "engine": "warm worker" if warm else "one process per click",
                    "load": f"{before.strip()} / {load().strip()}",
                    "cold_click": steps[0]["seconds"],
                    "cold_ok": steps[0]["seconds"] - steps[0]["ok_s"],
                    "warm_click": statistics.median(s["seconds"] for s in steps[1:]),
                    "warm_ok": statistics.median(s["seconds"] - s["ok_s"] for s in steps[1:]),
                    "stall": max(s["max_stall_s"] for s in steps),
                    "workers": len({s.get("worker_after") for s in steps} - {None}),
                    "left": report["left"],
                    "starting": any("Starting the engine" in m for m in report["messages"]),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(
        "\n| round | engine | cold: click / OK to layer (s) | warm: click / OK to layer (s) "
        "| longest stall (s) | worker processes | left after QGIS closed | load (1, 5, 15 min) "
        "before / after |\n|---|---|---:|---:|---:|---:|---|---|"
    )
    for r in rows:
        print(
            f"| {r['round']} | {r['engine']} | {r['cold_click']:.2f} / {r['cold_ok']:.2f} "
            f"| {r['warm_click']:.2f} / {r['warm_ok']:.2f} | {r['stall']:.2f} | {r['workers']} "
            f"| {len(r['left'])} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
