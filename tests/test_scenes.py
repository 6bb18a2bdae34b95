"""Many scenes: inputs from paths, globs and lists; one output per scene; serial runs and a
2-worker Dask LocalCluster give identical files; a failed scene is reported and the others end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest
from conftest import process_group, read_tif

from ofa_explore import load_pretrained
from ofa_explore.cli import main as cli
from ofa_explore.engine import EngineSettings, predict_raster
from ofa_explore.errors import EXIT_CANCELLED, EXIT_SCENES_FAILED
from ofa_explore.scenes import expand_inputs, predict_scenes, scene_outputs

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scenes(shared, tmp_path_factory):
    """Four real scenes of three sensors (EuroSAT S2 chips, a NAIP RGBN tile) and a broken one."""
    folder = tmp_path_factory.mktemp("scenes")
    for label in ("River", "Forest"):
        shutil.copy(sorted((shared / "eurosat" / label).glob("*.tif"))[0], folder / f"{label}.tif")
    naip = sorted((shared / "naip").glob("*.tif"))[0]
    shutil.copy(naip, folder / "naip.tif")
    shutil.copy(sorted((shared / "eurosat" / "Highway").glob("*.tif"))[0], folder / "Highway.tif")
    (folder / "broken.tif").write_text("a text file, not a GeoTIFF")
    return folder


def test_inputs_from_paths_globs_and_lists(scenes, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"# my scenes\n{scenes / 'naip.tif'}\n\n{os.path.relpath(scenes / 'River.tif', tmp_path)}\n"
    )
    found = expand_inputs([str(scenes / "[FH]*.tif"), str(listing), str(scenes / "Forest.tif")])
    assert [p.name for p in found] == ["Forest.tif", "Highway.tif", "naip.tif", "River.tif"]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_inputs([str(scenes / "*.jp2")])
    with pytest.raises(FileNotFoundError, match="missing.tif: no such raster file"):
        expand_inputs([str(scenes / "missing.tif")])
    (tmp_path / "other").mkdir()
    shutil.copy(scenes / "River.tif", tmp_path / "other" / "River.tif")
    with pytest.raises(ValueError, match="same name"):
        scene_outputs([scenes / "River.tif", tmp_path / "other" / "River.tif"], "embed", tmp_path)


def test_serial_run_reports_the_failed_scene_and_writes_the_others(scenes, tmp_path, capsys):
    # --precision fp32: exactly what predict_raster's default (fp32) gives, compared below
    code = cli(
        ["embed", str(scenes / "*.tif"), "-o", str(tmp_path / "out"), "-q", "--precision", "fp32"]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_SCENES_FAILED
    assert "broken.tif: failed: cannot read" in err and "1 of 5 scenes failed" in err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"{s}_embed{extra}"
        for s in ("Forest", "Highway", "River", "naip")
        for extra in (".tif", "_pca.tif", ".png")
    )  # each scene's embedding, colour view and quicklook; nothing hidden left behind
    single = predict_raster(load_pretrained(), scenes / "naip.tif", "embed")
    assert np.array_equal(
        read_tif(tmp_path / "out" / "naip_embed.tif"), single.data.values, equal_nan=True
    )


def test_local_dask_cluster_matches_serial_run(scenes, tmp_path):
    order = [scenes / n for n in ("River.tif", "broken.tif", "naip.tif", "Forest.tif")]
    ended = []
    settings = EngineSettings(batch_size=4)
    serial = predict_scenes(order, "classify", tmp_path / "serial", settings=settings)
    # what a worker killed mid-write leaves while the scheduler reruns its scene elsewhere
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / ".River_classify.tif.k1ll3d.tmp").write_bytes(b"half a GeoTIFF")
    dask = predict_scenes(
        order,
        "classify",
        tmp_path / "dask",
        settings=settings,
        cluster="local",
        workers=2,
        on_scene=lambda o, done, total: ended.append((done, total)),
    )
    assert ended == [(1, 4), (2, 4), (3, 4), (4, 4)]  # a progress step per scene
    assert [o.scene for o in dask] == order  # outcomes in the order given
    for s, d in zip(serial, dask):
        assert (s.error is None) == (d.error is None)
        if s.error is None:
            assert np.array_equal(read_tif(s.output), read_tif(d.output))
            assert d.result.class_areas == s.result.class_areas
    assert not list((tmp_path / "dask").glob(".*"))  # no hidden file left, however it came
    assert "cannot read" in dask[1].error
    assert "no classification head of this model takes 'rgbn'" in dask[2].error


def test_existing_scheduler_loads_one_model_per_worker(scenes, tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        outcomes = predict_scenes(
            [scenes / f"{n}.tif" for n in ("River", "Forest", "Highway")] * 1,
            "embed",
            tmp_path,
            cluster=cluster.scheduler_address,
        )
        assert all(o.error is None for o in outcomes)

        def models_loaded() -> int:
            from ofa_explore.scenes import _model

            return _model.cache_info().misses

        loads = client.run(models_loaded)
    assert sorted(loads.values()) in ([0, 1], [1, 1])  # never more than one per worker


def test_sigterm_stops_a_dask_run_and_leaves_nothing_hidden(shared, scenes, tmp_path):
    """A scheduler or a user stopping `ofa ... --dask`: the running scene stops at its next
    batch and removes its hidden files; the finished scenes stay."""
    if os.name != "posix":
        pytest.skip("SIGTERM handling is POSIX only")
    from test_cli import _mosaic

    big = _mosaic(shared, tmp_path / "big.tif", tiles=24)  # 1024 tiles
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "ofa_explore",
        "classify",
        str(scenes / "River.tif"),
        str(big),
        "-o",
        str(out),
        "--dask",
        "--workers",
        "1",
        "--progress",
        "json",
    ]
    with process_group(command) as proc:
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "scene":  # River is done; the big one runs
                break
        os.killpg(proc.pid, signal.SIGTERM)
        rest, err = proc.communicate(timeout=90)  # a hung run fails here instead of blocking
        events += [json.loads(line) for line in rest.splitlines()]
        assert proc.returncode == EXIT_CANCELLED, err
    assert events[-1] == {
        "event": "cancelled",
        "message": "cancelled; 1 of 2 scenes were written, nothing of the others",
    }
    assert sorted(p.name for p in out.iterdir()) == ["River_classify.png", "River_classify.tif"]


def test_cluster_options_without_a_folder_or_dask_are_explained(
    scenes, tmp_path, capsys, monkeypatch
):
    river = str(scenes / "River.tif")
    assert cli(["embed", river, "-o", str(tmp_path / "one.tif"), "--dask", "-q"]) == 2
    assert "give an output folder with -o" in capsys.readouterr().err
    assert cli(["embed", river, "-o", str(tmp_path / "out"), "--workers", "2", "-q"]) == 2
    assert "add --dask" in capsys.readouterr().err
    assert (
        cli(
            ["embed", river, str(scenes / "Forest.tif"), river, "-o", str(tmp_path / "twice"), "-q"]
        )
        == 0
    )  # the same file twice is one scene
    assert "2 scenes, one after another" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # dask.distributed not installed
    assert cli(["embed", river, "-o", str(tmp_path / "d"), "--dask", "-q"]) == 2
    assert "pip install 'ofa-explore[cluster]'" in capsys.readouterr().err
