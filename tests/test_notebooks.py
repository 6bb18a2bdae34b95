"""Every workshop notebook runs top to bottom (headless, nbclient) and is stored without outputs;
what it shows holds no machine paths, no stderr boxes and no debug lines; notebook 05's
"restart the kernel and resume" exercise works when followed literally."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(/tmp/|/work/|/home/|/root/|/Users/|[A-Z]:\\\\)")


def workshop_folder(tmp_path: Path) -> Path:
    """A copy of the notebooks folder as a participant has it (the data beside the notebooks)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "data").symlink_to(FOLDER / "data", target_is_directory=True)
    return folder


def outputs(nb, kind: str | None = None):
    return [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if kind is None or o.output_type == kind
    ]


def shown_text(nb) -> str:
    """What a participant reads: printed text, rich outputs and the widgets' state (labels,
    text boxes), not the text form a widget has where no browser draws it."""
    parts = [json.dumps(nb.metadata.get("widgets", {}))]
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        data = o.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            continue
        for mime, value in data.items():
            if mime.startswith("text/"):
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def test_there_are_the_six_workshop_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


def test_the_notebooks_are_what_the_script_writes():
    """scripts/make_notebooks.py is the source of truth: an edit of a stored .ipynb alone fails."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_notebooks", FOLDER.parent / "scripts" / "make_notebooks.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert sorted(script.NOTEBOOKS) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        stored = [c.source for c in nbformat.read(path, as_version=4).cells]
        assert stored == script.NOTEBOOKS[path.name], (
            f"run python scripts/make_notebooks.py ({path.name})"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "store without outputs"
    folder = workshop_folder(tmp_path)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    assert not outputs(nb, "error")
    stderr = [o["text"] for o in outputs(nb, "stream") if o["name"] == "stderr"]
    assert not stderr, stderr  # warnings and text progress bars show as pink boxes
    text = shown_text(nb)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert "sha256" not in text
    widgets = [
        o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    if "Explorer" in path.read_text() or "Map(" in path.read_text():
        assert widgets, "the notebook's widgets produced no view"
    if path.name.startswith("03"):  # after Run All: PCA colours alone, the click prompt
        assert "Click the map: patches like the clicked one light up" in text
        assert "at or above" not in text and "wrote " not in text
        assert re.search(r"^\d+ of \d+ patches have a cosine similarity", text, re.M), text
    if path.name.startswith("04"):
        assert "1933 x 1947 pixels of 10 m" in text
        rows = re.findall(r"^(\w+)\s+[\d,]+ ha\s+([\d.]+)%$", text, re.M)
        assert len(rows) == 5, rows  # the five largest classes, several of them
        check_class_claims(path, {name: float(share) for name, share in rows})
        assert re.search(r"^4 held-out chips: accuracy \d+%, macro-F1 [\d.]+$", text, re.M)
    if path.name.startswith("06"):  # after Run All: no click yet, the area at 3, the files
        assert "Click the map for the change score at a point." in text
        assert re.search(r"Score 3\.0 or more: [\d.]+ ha \([\d,]+ px\)", text), text
        areas = re.findall(r"^score [234] or more: +[\d.]+ ha, +[\d.]+% of the scene$", text, re.M)
        assert len(areas) == 3, areas
        assert "AFTER: warped onto BEFORE's grid" in text
        assert re.search(r"^the dates line up within 0\.\d px \(phase correlation\)$", text, re.M)
        assert re.search(r"^changed: [\d.]+ ha \(\d+ px\), [\d.]+% of the pixels", text, re.M)
        assert "to ofa-export/changes_2009_2020.gpkg" in text
        assert re.search(r"^\d+ changed areas, [\d.]+ ha in all; the largest:$", text, re.M)
        assert len(re.findall(r"^ *[\d.]+ ha, score up to [\d.]+$", text, re.M)) == 5, text
        check_change_claims(path, folder / "ofa-export")


def check_class_claims(path: Path, shares: dict[str, float]) -> None:
    """Notebook 04's "Look closely" against the table it prints (the five largest classes)."""
    claims = next(
        c.source for c in nbformat.read(path, as_version=4).cells if "Look closely" in c.source
    )
    assert "*SeaLake*, about half of the scene" in claims
    assert next(iter(shares)) == "SeaLake" and 40 <= shares["SeaLake"] <= 60, shares
    assert "lagoons and salt marshes" in claims and "*River* follows the mainland's shore" in claims
    assert "River" in shares, shares
    assert "barrier islands come out as *Industrial*" in claims and "Industrial" in shares
    assert "*Forest* is not among the five largest classes" in claims
    assert "Forest" not in shares, shares
    assert {"HerbaceousVegetation", "Highway"} <= set(shares), shares  # "mixes herbaceous ..."


def check_change_claims(path: Path, export: Path) -> None:
    """Notebook 06's text against the polygons it wrote (2009 to 2020, score 2.5 or more)."""
    import pyogrio
    import rasterio
    import shapely

    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "the field in the lower right, a tan field in 2009 that the" in text
    assert "half of them twenty pixels or fewer" in text
    assert "the largest is the flooded field in the lower right" in text
    _, _, geometry, (hectares, _, _) = pyogrio.raw.read(export / "changes_2009_2020.gpkg")
    assert np.median(hectares) <= 20 * 25.02 / 1e4  # 5 m pixels: 25.02 m² on the ground
    largest = shapely.from_wkb(geometry[np.argmax(hectares)]).centroid
    with rasterio.open(FOLDER / "data" / "naip_change" / "naip_2009.tif") as src:
        left, bottom, right, top = src.bounds
        before = src.read([1, 2, 3]).astype(float).sum(0)
    assert largest.x > (left + right) / 2 and largest.y < (bottom + top) / 2  # the lower right
    # "The lake in the top right, dark open water in 2009 ... scores about 2.4 (lower the
    # Threshold to 2 to see it)": the darkest 2009 pixels of the top right's upper part
    with rasterio.open(export / "change_2009_2020.tif") as src:
        score = src.read(1)
    height, width = score.shape
    lake = np.zeros_like(score, dtype=bool)
    lake[int(0.08 * height) : int(0.35 * height), int(0.65 * width) : int(0.97 * width)] = True
    lake &= before[:height, :width] < np.percentile(before, 15)
    assert lake.sum() > 1000 and 2.0 < np.median(score[lake]) < 2.5, np.median(score[lake])
    assert (score[lake] >= 2).mean() > 0.7 and (score[lake] >= 2.5).mean() < 0.5


@pytest.mark.parametrize(
    "name, cell, typed, said",
    [
        (  # "Your own classes" with a folder that is not there
            "04_classify_scene.ipynb",
            "fit_scene_head(",
            ("data/my_chips/", "my_chips/"),
            [
                "labelled data not found: my_chips",
                "a folder with one sub-folder of chips per class",
            ],
        ),
        (  # "Try it" 3: a year that is not there
            "06_change_between_dates.ipynb",
            "before, after = ",
            ("2009, 2014", "2009, 2010"),
            ["raster not found: data/naip_change/naip_2010.tif; check the path"],
        ),
    ],
    ids=["04", "06"],
)
def test_a_mistyped_path_in_an_exercise_is_one_line(name, cell, typed, said, tmp_path):
    """An exercise's cell with a path that does not exist: one line that names it as typed, no
    traceback through the package (machine paths)."""
    nb = nbformat.read(FOLDER / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    exercise = next(c for c in code if cell in c)
    assert typed[0] in exercise
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(workshop_folder(tmp_path)))
    try:
        assert _run(kc, code[0])["status"] == "ok"
        reply = _run(kc, exercise.replace(*typed))
        assert reply["status"] == "error"
        shown = "\n".join(reply["traceback"])
        assert len(reply["traceback"]) == 1 and all(s in shown for s in said), shown
        assert not MACHINE_PATH.search(shown) and "File " not in shown, shown
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_resume_exercise_after_a_kernel_restart(tmp_path):
    """Notebook 05 followed as its text says: start the training cell, restart the kernel once a
    checkpoint is written, run the first code cell again and the training cell: it continues."""
    nb = nbformat.read(FOLDER / "05_pretrain_tiny.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup, training, delete = code[0], code[1], code[-1]
    assert "train(config, resume=" in training and "rmtree" in delete
    folder = workshop_folder(tmp_path)
    (folder / "runs" / "tiny-ofa" / "checkpoints").mkdir(parents=True)  # an earlier run
    (folder / "runs" / "tiny-ofa" / "log.csv").write_text("step,modality,loss\n")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(folder))
    try:
        deleted = _run(kc, delete)  # step 1: the cell that deletes the run folder
        assert deleted["status"] == "ok" and "deleted runs" in deleted["stdout"], deleted
        assert not (folder / "runs" / "tiny-ofa").exists()
        assert _run(kc, setup)["status"] == "ok"
        kc.execute(training)  # not waited for: the kernel is restarted while it trains
        checkpoints = folder / "runs" / "tiny-ofa" / "checkpoints"
        t0 = time.time()
        while not any(checkpoints.glob("step_*")):
            assert time.time() - t0 < 240, "no checkpoint was written"
            time.sleep(0.2)
        km.restart_kernel(now=True)
        kc.stop_channels()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        assert _run(kc, setup)["status"] == "ok"
        reply = _run(kc, training)
        assert reply["status"] == "ok", reply.get("traceback")
        said = re.search(r"resumed from (\S+) at step (\d+)", reply["stdout"])
        assert said, reply["stdout"]
        assert int(said.group(2)) >= 100 and not os.path.isabs(said.group(1))
        assert (folder / "runs" / "tiny-ofa" / "model.safetensors").is_file()
        steps = [
            int(line.split(",")[0])
            for line in (folder / "runs" / "tiny-ofa" / "log.csv").read_text().splitlines()[1:]
        ]
        assert steps[-1] == 599 and sorted(set(steps)) == list(range(600))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        shutil.rmtree(folder / "runs", ignore_errors=True)


def _run(kc, code: str, timeout: float = 300) -> dict:
    """Execute ``code`` and collect its reply status and printed text."""
    msg_id = kc.execute(code)
    stdout: list[str] = []
    shown: list[str] | None = None
    t0 = time.time()
    while True:
        msg = kc.get_iopub_msg(timeout=max(1, timeout - (time.time() - t0)))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            shown = msg["content"]["traceback"]  # what the notebook shows: the error output
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return {
        "status": reply["content"]["status"],
        "stdout": "".join(stdout),
        "traceback": shown if shown is not None else reply["content"].get("traceback"),
    }
