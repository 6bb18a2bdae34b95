"""MAE pre-training on real shared data: learning, SIGKILL + resume, torchrun/gloo, bad configs."""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ofa_explore import load_checkpoint, set_threads
from ofa_explore.checkpoint import CheckpointError
from ofa_explore.errors import BadInput, OFAError
from ofa_explore.pretraining.config import ConfigError, load_config
from ofa_explore.pretraining.train import fused_attention, latest_checkpoint, train
from ofa_explore.pretraining.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]


CONTRASTIVE = {
    "objective": {"contrastive": 1.0, "temperature": 0.2, "projection_dim": 32, "hidden_dim": 64},
    "augment": {"gain": 0.1, "band_gain": 0.05, "band_offset": 0.05, "band_dropout": 0.1},
    "crop_scale": [0.45, 1.0],
}


def config(shared: Path, out: Path, **overrides) -> dict:
    cfg = {
        "model": {"size": "tiny", "patch_size": 8, "img_size": 32, "arch": {"depth": 2}},
        "data": [
            {"modality": "s2_l1c", "paths": [str(shared / "eurosat/*/*.tif")], "weight": 2.0},
            {"modality": "rgbn", "paths": [str(shared / "naip/*2019*.tif")], "split": "rows"},
        ],
        "optim": {"lr": 1e-3, "warmup_steps": 5},
        "steps": 20,
        "batch_size": 8,
        "checkpoint_every": 5,
        "keep_last": 2,
        "val_batches": 2,
        "output_dir": str(out),
        "seed": 3,
    }
    cfg.update(copy.deepcopy(overrides))
    return cfg


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16 on a CPU: plain attention
def test_twenty_steps_on_real_data_lower_the_loss(shared, tmp_path, precision):
    cfg = config(
        shared,
        tmp_path / "run",
        precision=precision,
        data=[{"modality": "s2_l1c", "paths": [str(shared / "eurosat/*/*.tif")]}],
    )
    final = train(load_config(cfg), Path.cwd(), quiet=True)
    losses = [float(r["loss"]) for r in read_log(tmp_path / "run")]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    model = load_checkpoint(final)
    assert model.provenance["steps"] == 20 and model.provenance["val_loss"] > 0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000015",
        "step_0000020",
    ]


def test_sigkill_then_resume_continues_exactly(shared, tmp_path, monkeypatch):
    # one thread count for all three runs: another count sums in another order, and on a busy
    # machine the automatic choice (threads.default_threads) can differ between processes
    monkeypatch.setenv("OFA_EXPLORE_THREADS", "2")
    set_threads(2)
    steps = 120
    reference = tmp_path / "reference"
    train(
        load_config(config(shared, reference, steps=steps, checkpoint_every=20)),
        Path.cwd(),
        quiet=True,
    )
    killed = tmp_path / "killed"
    path = write_config(tmp_path, config(shared, killed, steps=steps, checkpoint_every=20))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ofa_explore.pretraining.train", "--config", str(path), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "log.csv").exists() and len(read_log(killed)) >= 50:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = len(read_log(killed))
    assert stopped_at < steps, "the run finished before it could be killed"
    resume_from = latest_checkpoint(killed)
    start = int(resume_from.name.split("_")[1])
    assert 20 <= start <= stopped_at
    # resumed with the old spelling, kept for one release: it says so in one line, and works
    resumed = subprocess.run(
        [sys.executable, "-m", "pretraining.train", "--config", str(path), "-q", "--resume"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "`-m pretraining.train` is deprecated" in resumed.stderr.splitlines()[0]
    ref_rows = {int(r["step"]): r for r in read_log(reference)}
    rows = read_log(killed)
    resumed = [r for r in rows[stopped_at:]]
    assert int(resumed[0]["step"]) == start  # continues at the checkpoint's step
    for r in resumed:  # the same batches, the same losses as the uninterrupted run
        ref = ref_rows[int(r["step"])]
        assert r["batch_sum"] == ref["batch_sum"] and r["modality"] == ref["modality"]
        assert float(r["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-4)
    a = load_checkpoint(reference / "model.safetensors").state_dict()
    b = load_checkpoint(killed / "model.safetensors").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_torchrun_two_gloo_processes_hold_identical_weights(shared, tmp_path):
    """DDP with the whole objective: two views, the projector, a band subset through the
    wavelength-conditioned embedding on some steps."""
    cfg = config(shared, tmp_path / "ddp", steps=6, checkpoint_every=3, **CONTRASTIVE)
    cfg["model"]["wavelength_embed"] = True
    cfg["data"][0]["band_subsets"] = 0.5
    path = write_config(tmp_path, cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "ofa_explore.pretraining.train",
            "--config",
            str(path),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    digests = {
        line.split()[1]: line.split()[-1]
        for line in res.stdout.splitlines()
        if line.startswith("rank ") and "sha256" in line
    }
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    assert len(read_log(tmp_path / "ddp")) == 6  # rank 0 alone logs
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_invalid_config_names_the_bad_key(shared, tmp_path):
    cfg = config(shared, tmp_path)
    cfg["optim"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        load_config(cfg)
    cfg = config(shared, tmp_path, steps="many")
    with pytest.raises(ConfigError, match="'steps' must be int"):
        load_config(cfg)
    cfg = config(shared, tmp_path, precision="fp8")
    with pytest.raises(ConfigError, match="precision"):
        load_config(cfg)
    cfg = config(shared, tmp_path)
    del cfg["data"][0]["modality"]
    with pytest.raises(ConfigError, match="missing key 'data\\[0\\].modality'"):
        load_config(cfg)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="crop_scale"):
        load_config(config(shared, tmp_path, crop_scale=[0.5, 0.2]))
    with pytest.raises(ConfigError, match="attention must be auto, fused or math"):
        load_config(config(shared, tmp_path, attention="flash"))
    with pytest.raises(ConfigError, match="'model' must be a mapping, got 3"):
        load_config(config(shared, tmp_path, model=3))
    cfg = config(shared, tmp_path)
    cfg["model"]["arch"] = {"depth": True}
    with pytest.raises(ConfigError, match="'model.arch.depth' must be int, got True"):
        load_config(cfg)
    assert issubclass(ConfigError, BadInput)  # the CLI's "bad input", exit 2


def test_ofa_pretrain_calls_the_training_function(shared, tmp_path, capsys):
    from ofa_explore.cli import main as cli

    path = write_config(tmp_path, config(shared, tmp_path / "run", steps=2, checkpoint_every=2))
    assert cli(["pretrain", "--config", str(path), "--steps", "3", "--threads", "1"]) == 0
    assert "model written to" in capsys.readouterr().out
    assert len(read_log(tmp_path / "run")) == 3  # --steps reached the config
    assert cli(["pretrain", "--config", str(path), "--threads", "1"]) == 2  # the run is there
    assert "already holds the checkpoints of a run" in capsys.readouterr().err
    bad = config(shared, tmp_path / "other")
    bad["optim"]["lrr"] = 1
    assert cli(["pretrain", "--config", str(write_config(tmp_path, bad))]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'optim.lrr'" in err and len(err.splitlines()) == 1


def test_attention_kernel_is_picked_for_the_device(shared, tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    picked = {
        (d.type, p, a): fused_attention(
            load_config(config(shared, tmp_path, precision=p, attention=a)), d
        )
        for d in (cpu, cuda)
        for p in ("fp32", "bf16")
        for a in ("auto", "fused", "math")
    }
    assert picked[("cpu", "bf16", "auto")] is False  # the CPU's fused bf16 backward is slow
    assert picked[("cpu", "fp32", "auto")] and picked[("cuda", "bf16", "auto")]
    assert all(v == (a == "fused") for (_, _, a), v in picked.items() if a != "auto")


def test_random_resized_crops_zoom_into_the_chips(shared, tmp_path):
    """crop_scale draws smaller windows and resizes them: same chip size, finer detail."""
    from ofa_explore.pretraining.data import ChipSampler, build_sources

    cfg = load_config(config(shared, tmp_path, crop_scale=[0.25, 0.25]))
    sources = build_sources(cfg, Path.cwd())
    plain = ChipSampler(sources, seed=0).views_for(0)[1][0].x
    zoomed = ChipSampler(sources, seed=0, crop_scale=cfg.crop_scale).views_for(0)[1][0].x
    assert plain.shape == zoomed.shape

    # a 16-pixel window blown up to 32: neighbouring pixels differ less than in a plain chip
    def roughness(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean() / x.std()

    assert roughness(zoomed) < 0.8 * roughness(plain)


def test_corrupt_checkpoint_is_refused_on_resume(shared, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = load_config(config(shared, out, steps=5, checkpoint_every=5))
    train(cfg, Path.cwd(), quiet=True)
    with pytest.raises(FileExistsError, match="continue it with resume=True"):
        train(cfg, Path.cwd(), quiet=True)  # a new run would mix its checkpoints with these
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config(shared, out, steps=5)))
    assert train_main(["--config", str(tmp_path / "run.yaml"), "-q"]) == 2
    assert "error: " in capsys.readouterr().err  # one line, no traceback
    state = latest_checkpoint(out) / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[-100] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        train(
            load_config(config(shared, out, steps=8, checkpoint_every=5)),
            Path.cwd(),
            resume=True,
            quiet=True,
        )
    (latest_checkpoint(out) / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="not a complete training checkpoint"):
        train(load_config(config(shared, out, steps=8)), Path.cwd(), resume=True, quiet=True)


def wavelength_config(shared: Path, out: Path, **overrides) -> dict:
    """EuroSAT through its own embedding (band subsets through the wavelength path), real
    Landsat-8 L1 and EnMAP only through the wavelength-conditioned embedding."""
    cfg = config(shared, out, **CONTRASTIVE, **overrides)
    cfg["model"]["wavelength_embed"] = True
    cfg["data"] = [
        {"modality": "s2_l1c", "paths": [str(shared / "eurosat/*/*.tif")], "band_subsets": 0.5},
        {
            "modality": "landsat_oli_l1",
            "paths": [str(shared / "landsat/l8_gulf_coast")],
            "stack_folders": True,
            "band_files": "B[1-79].tif",
            "embedding": "wavelength",
            "split": "rows",
            "band_subsets": 0.5,
        },
        {
            "modality": "auto",
            "paths": [str(shared / "enmap_potsdam/images/*.tif")],
            "embedding": "wavelength",
            "chip_size": 32,
            "batch_size": 4,
        },
    ]
    return cfg


def test_contrastive_run_resumes_exactly_with_its_projector(shared, tmp_path):
    """Stop after a checkpoint, resume from it: the same losses, batches and final weights as
    an uninterrupted run, projector and optimiser state included."""
    steps, every = 10, 5
    reference = tmp_path / "reference"
    train(
        load_config(wavelength_config(shared, reference, steps=steps, checkpoint_every=every)),
        Path.cwd(),
        quiet=True,
    )
    state = latest_checkpoint(reference) / "state.safetensors"
    from ofa_explore.checkpoint import read_tensors
    from ofa_explore.pretraining.train import STATE_FORMAT

    tensors, _ = read_tensors(state, STATE_FORMAT)
    assert any(k.startswith("projector.") for k in tensors)

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(
        reference / "checkpoints" / f"step_{every:07d}",
        resumed / "checkpoints" / f"step_{every:07d}",
    )
    train(
        load_config(wavelength_config(shared, resumed, steps=steps, checkpoint_every=every)),
        Path.cwd(),
        resume=True,
        quiet=True,
    )
    ref_rows = {int(r["step"]): r for r in read_log(reference)}
    rows = read_log(resumed)
    assert [int(r["step"]) for r in rows] == list(range(every, steps))
    assert {r["modality"] for r in ref_rows.values()} >= {"s2_l1c"}
    for r in rows:
        ref = ref_rows[int(r["step"])]
        assert r["batch_sum"] == ref["batch_sum"] and r["modality"] == ref["modality"]
        assert r["contrastive"] != ""
        for key in ("loss", "mae", "contrastive"):
            assert float(r[key]) == pytest.approx(float(ref[key]), rel=1e-4)
    a = load_checkpoint(reference / "model.safetensors").state_dict()
    b = load_checkpoint(resumed / "model.safetensors").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)

    # the same folder under an MAE-only config is refused with the reason
    mae_only = wavelength_config(shared, resumed, steps=steps + 2, checkpoint_every=every)
    mae_only["objective"] = {"contrastive": 0.0}
    with pytest.raises(CheckpointError, match="with the contrastive objective"):
        train(load_config(mae_only), Path.cwd(), resume=True, quiet=True)


def test_landsat_and_enmap_train_the_wavelength_path(shared, tmp_path):
    """Real Landsat-8 L1 and EnMAP chips reach the model only through the wavelength-conditioned
    embedding and pixel head, and training changes them."""
    from ofa_explore.pretraining.data import ChipSampler, build_sources
    from ofa_explore.pretraining.train import build_model

    cfg = load_config(wavelength_config(shared, tmp_path / "run", steps=12, checkpoint_every=12))
    sources = build_sources(cfg, Path.cwd())
    landsat, enmap = sources[1].modality, sources[2].modality
    assert landsat.num_bands == 8 and enmap.num_bands == 218 and enmap.kind == "hyperspectral"
    assert list(build_model(cfg).patch_embeds) == ["s2_l1c"]
    sampler = ChipSampler(sources, seed=0, views=2, augment=cfg.augment)
    seen = {}
    for step in range(40):
        name, views = sampler.views_for(step)
        seen.setdefault(name, []).append(views)
    assert set(seen) == {"s2_l1c", "landsat_oli_l1", "hyperspectral"}
    subsets = [v[1].modality for v in seen["s2_l1c"] if v[1].modality.name == "s2_l1c_subset"]
    assert subsets and all(3 <= m.num_bands < 13 for m in subsets)  # some steps, fewer bands
    for views in seen["s2_l1c"]:  # the two views: same windows, augmented independently
        assert views[0].x.shape[0] == views[1].x.shape[0]
        assert not torch.equal(views[0].x[:, : views[1].x.shape[1]], views[1].x)

    torch.manual_seed(cfg.seed)
    before = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    final = train(cfg, Path.cwd(), quiet=True)
    after = load_checkpoint(final).state_dict()
    for prefix in ("wavelength_embed.", "wavelength_head."):
        moved = [
            k
            for k in before
            if k.startswith(prefix) and not torch.allclose(before[k], after[k].float())
        ]
        assert moved, f"{prefix} did not train"
    logged = {r["modality"] for r in read_log(tmp_path / "run")}
    assert "landsat_oli_l1" in logged or "hyperspectral" in logged


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["data"][1].update(embedding="both"), "embedding must be own or wavelength"),
        (lambda c: c["data"][2].update(embedding="own"), "add 'embedding: wavelength'"),
        (lambda c: c["model"].update(wavelength_embed=False), "set model.wavelength_embed: true"),
        (lambda c: c["data"][0].update(band_subsets=1.5), "band_subsets is a share of steps"),
        (lambda c: c["data"][2].update(chip_size=36), "chip_size 36 must be a multiple"),
        (lambda c: c["objective"].update(contrastive=-1), "objective.contrastive is a loss weight"),
        (lambda c: c["objective"].update(temperature=0), "objective.temperature must be positive"),
        (lambda c: c["objective"].update(hog=-0.5), "objective.hog is a loss weight"),
        (lambda c: c["data"][0].update(packed="x.npz"), "packed replaces paths"),
        (lambda c: c["objective"].update(projector=3), "unknown key 'objective.projector'"),
        (lambda c: c["augment"].update(band_dropout=1.0), "augment.band_dropout must be in"),
        (
            lambda c: c["data"][0].update(time_pairs=True, stack_folders=True),
            "time_pairs reads one file per date",
        ),
        (lambda c: c.update(init_from=3), "'init_from' must be str"),
        (
            lambda c: c["model"].update(modalities=["s2_l1c", "landsat_oli_l1"]),
            "the model gives 'landsat_oli_l1' an embedding of its own",
        ),
    ],
)
def test_new_config_keys_are_validated_with_named_errors(shared, tmp_path, change, message):
    cfg = wavelength_config(shared, tmp_path)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_hog_target_sees_orientation_and_trains_the_reconstruction(shared, tmp_path):
    """HOG descriptors put vertical stripes and horizontal ones in different orientation bins;
    the HOG loss is 0 for a perfect reconstruction and passes gradients to it; a run with
    ``objective.hog`` logs the term (and a log begun without the column keeps its columns)."""
    from ofa_explore.pretraining.objective import HOG_BINS, hog, hog_loss

    stripes = torch.zeros(1, 16, 16)
    stripes[:, :, ::4] = 1
    vertical = hog(stripes, 8)[0, 0, :HOG_BINS]
    horizontal = hog(stripes.transpose(1, 2), 8)[0, 0, :HOG_BINS]
    assert vertical.argmax() == 0 and horizontal.argmax() in (4, 5)

    model = load_checkpoint(train(load_config(config(shared, tmp_path / "a", steps=1)), quiet=True))
    x = torch.randn(2, 13, 32, 32)
    mask = torch.ones(2, 16)
    perfect = model.patchify(x).requires_grad_(True)
    assert hog_loss(model, x, perfect, mask) < 1e-6
    noisy = (perfect.detach() + torch.randn_like(perfect)).requires_grad_(True)
    loss = hog_loss(model, x, noisy, mask)
    loss.backward()
    assert loss > 0.1 and noisy.grad.abs().sum() > 0

    out = tmp_path / "hog"
    cfg = config(shared, out, steps=3, checkpoint_every=3, **CONTRASTIVE)
    cfg["objective"] = {**cfg["objective"], "hog": 1.0}
    train(load_config(cfg), quiet=True)
    rows = read_log(out)
    assert all(float(r["hog"]) > 0 for r in rows)
    assert all(float(r["loss"]) > float(r["mae"]) + float(r["contrastive"]) for r in rows)

    old = tmp_path / "old"  # a log written before the hog column: resumed in its own columns
    train(load_config(config(shared, old, steps=2, checkpoint_every=2)), quiet=True)
    text = (old / "log.csv").read_text().splitlines()
    header = text[0].replace(",hog", "")
    rows_without = [",".join(v for i, v in enumerate(r.split(",")) if i != 5) for r in text[1:]]
    (old / "log.csv").write_text("\n".join([header, *rows_without]) + "\n")
    train(load_config(config(shared, old, steps=4, checkpoint_every=2)), quiet=True, resume=True)
    resumed = read_log(old)
    assert len(resumed) == 4 and "hog" not in resumed[0] and resumed[3]["step"] == "3"


def test_info_nce_rewards_matching_views():
    from ofa_explore.pretraining.objective import info_nce

    torch.manual_seed(0)
    a = torch.randn(16, 64)
    assert info_nce(a, a + 0.01 * torch.randn(16, 64), 0.1) < 0.1
    assert info_nce(a, torch.randn(16, 64), 0.1) > 2.0


def test_time_pairs_make_two_dates_of_one_place_the_two_views(shared, tmp_path):
    """OSCD images, two cities of two dates each: with ``time_pairs`` the two views of a chip
    are one window at two dates (they differ as the dates do, where the same-date views of
    plain sources match up to augmentation), and held-out rows stay out of training."""
    import numpy as np

    from ofa_explore.pretraining.data import ChipSampler, build_sources

    for city in ("rennes", "nantes"):  # the images only: change maps never leave shared data
        (tmp_path / city).mkdir()
        for date in sorted((shared / "change/oscd" / city).glob(f"{city}_20*.tif")):
            (tmp_path / city / date.name).symlink_to(date)
    source = {"modality": "s2_l1c", "paths": [str(tmp_path / "*/*.tif")], "val_fraction": 0.2}
    cfg = load_config(config(shared, tmp_path / "run", data=[{**source, "time_pairs": True}]))
    (sources,) = build_sources(cfg, Path.cwd())
    assert len(sources.train) == 2 and all(len(r.dates) == 2 for r in sources.train)
    assert all(r.rows[1] <= v.rows[0] for r, v in zip(sources.train, sources.val))

    def gap(sampler):  # how far the two views of a chip are apart, per band, in the median
        _, (a, b) = sampler.views_for(0)
        return float(np.median((a.x.mean((2, 3)) - b.x.mean((2, 3))).abs()))

    across_time = gap(ChipSampler([sources], seed=0, views=2))
    plain_cfg = load_config(config(shared, tmp_path / "run", data=[source]))
    same_date = gap(ChipSampler(build_sources(plain_cfg, Path.cwd()), seed=0, views=2))
    assert same_date == 0.0  # no augmentation, no crops: the same window twice
    assert across_time > 10  # DN: the two acquisitions differ

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "one_date.tif").symlink_to(next((tmp_path / "rennes").glob("*.tif")))
    cfg = load_config(
        config(
            shared,
            tmp_path / "run",
            data=[{**source, "paths": [str(lonely / "*.tif")], "time_pairs": True}],
        )
    )
    with pytest.raises(BadInput, match="two or more dates of each place"):
        build_sources(cfg, Path.cwd())


def test_init_from_starts_a_run_from_a_trained_model(shared, tmp_path):
    """``init_from`` continues a trained model with a fresh schedule: the new run's first
    weights are the checkpoint's; a checkpoint of another architecture is refused by name."""
    from ofa_explore.errors import ModelMismatch
    from ofa_explore.pretraining.train import build_model, load_initial_weights

    first = train(load_config(config(shared, tmp_path / "a", steps=3)), quiet=True)
    trained = load_checkpoint(first)
    cfg = load_config(config(shared, tmp_path / "b", steps=3, init_from=str(first)))
    model = build_model(cfg)
    load_initial_weights(model, cfg.init_from, Path.cwd())
    for name, tensor in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

    deeper = config(shared, tmp_path / "c", init_from=str(first))
    deeper["model"]["arch"] = {"depth": 3}
    with pytest.raises(ModelMismatch, match="does not fit the model of this config"):
        train(load_config(deeper), quiet=True)
    missing = load_config(config(shared, tmp_path / "d", init_from=str(tmp_path / "none.st")))
    with pytest.raises(OFAError, match="init_from: no checkpoint"):
        train(missing, quiet=True)
