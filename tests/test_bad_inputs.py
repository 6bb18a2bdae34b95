"""Bad inputs that no one hand-picks (issue 23): hypothesis writes GeoTIFFs of every kind (data
types, 1-300 bands, 1 px to a few tiles, nodata values, NaN and inf, all-nodata, odd CRSs and
transforms, no CRS, no transform) and runs the real `ofa embed` and `ofa reconstruct` on each.

The property: every run either succeeds with a sane, georeferenced output, or exits 2 with one
`ofa <verb>: error: ...` line; either way nothing is left behind. Deterministic (derandomized,
no example database); `OFA_BAD_INPUT_EXAMPLES` sets how many examples run (default 700) and
`OFA_BAD_INPUT_SEED` explores others than CI's. The session's last lines say how many cases ran
and how they ended (tests/conftest.py); KNOWN_FAILURES lists the failures not fixed yet.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from ofa_explore import pretrained
from ofa_explore.cli import main
from ofa_explore.modalities import get_modality
from ofa_explore.scale import to_model_units

EXAMPLES = int(os.environ.get("OFA_BAD_INPUT_EXAMPLES", "700"))
SEED = os.environ.get("OFA_BAD_INPUT_SEED")  # explore other cases than CI's (derandomized) ones
VERBS = ("embed", "reconstruct")
KNOWN_BANDS = (2, 3, 4, 6, 7, 8, 9, 12, 13, 202)  # `ofa modalities`: band counts detected
PATCH = 8  # the shipped model's patch (load_model().config; its tiles are 64 px)
LAEA = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
# CRS -> (origin x, origin y, pixel size) of a plausible north-up grid in it
CRSS: dict[str | None, tuple[float, float, float]] = {
    "EPSG:4326": (10.0, 50.0, 1e-4),
    "EPSG:32633": (500_000.0, 5_500_000.0, 10.0),
    "EPSG:3857": (1_000_000.0, 6_000_000.0, 10.0),
    "EPSG:3031": (-500.0, 500.0, 30.0),  # Antarctic polar stereographic, over the pole
    LAEA: (4_321_000.0, 3_210_000.0, 20.0),
    None: (0.0, 0.0, 1.0),
}
LIMITS = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767)}
LIMITS["float32"] = (-3.4e38, 3.4e38)
TRANSFORMS = ["plain"] * 4 + ["non_square", "tiny", "huge", "south_up", "rotated", "none"]
REALISTIC = {"uint8": (0, 255), "uint16": (0, 10000), "int16": (-100, 4000)}

# Failures found and not fixed yet: each is assumed away so the search goes on to others.
# Remove an entry once its fix is in: (what fails, (spec, written) -> True where it applies).
KNOWN_FAILURES: list[tuple[str, Callable[[Spec, dict], bool]]] = []


@dataclass(frozen=True)
class Spec:
    """One generated raster: what hypothesis prints for a failing example."""

    dtype: str
    bands: int
    height: int
    width: int
    values: str  # realistic | dn | db | constant_<where> | full | extremes | tiny
    nodata: str | None  # None | zero | min | max | -9999 | nan | in_data
    fill: str  # none | some | all | rows | one_band (pixels set to the nodata value)
    special: str  # none | nan_some | nan_all | inf_some | nan_band (floats)
    crs: str | None
    transform: str  # plain | non_square | tiny | huge | south_up | rotated | none
    seed: int


@st.composite
def specs(draw) -> Spec:
    dtype = draw(st.sampled_from([*LIMITS, "float32"]))  # floats hold the most cases
    bands = draw(st.sampled_from(KNOWN_BANDS + (0, 0)))  # 0: any count
    bands = bands or draw(st.integers(1, 300))
    most = 160 if bands <= 16 else 72  # many bands: a smaller raster, to keep the time down
    side = st.sampled_from([0] * 6 + [1, 7, 8, 9, 16, 63, 64, 65, 72]).flatmap(
        lambda n: st.just(n) if n else st.integers(8, most)  # 0: any size from one patch
    )
    values = ["realistic"] * 4 + ["constant_min", "constant_max", "constant_zero", "full"]
    nodata: list[str | None] = [None, None, "zero", "min", "max", "in_data"]
    nodata += ["-9999"] if dtype in ("int16", "float32") else []
    special = ["none"]
    if dtype == "float32":
        values += ["dn", "db", "tiny"]
        nodata += ["nan", "nan"]
        special += ["none", "nan_some", "nan_all", "inf_some", "nan_band"]
    return Spec(
        dtype=dtype,
        bands=bands,
        height=min(draw(side), most),
        width=min(draw(side), most),
        values=draw(st.sampled_from([*values, "extremes"])),
        nodata=draw(st.sampled_from(nodata)),
        fill=draw(st.sampled_from(["none"] * 3 + ["some", "some", "all", "rows", "one_band"])),
        special=draw(st.sampled_from(special)),
        crs=draw(st.sampled_from(list(CRSS))),
        transform=draw(st.sampled_from(TRANSFORMS)),
        seed=draw(st.integers(0, 2**16)),
    )


def _nodata_value(spec: Spec, data: np.ndarray) -> float | None:
    lo, hi = LIMITS[spec.dtype]
    if spec.nodata == "in_data":  # a value that also occurs as valid data
        return data.flat[0].item()
    return {None: None, "zero": 0, "min": lo, "max": hi, "-9999": -9999, "nan": math.nan}[
        spec.nodata
    ]


def _pixels(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    shape = (spec.bands, spec.height, spec.width)
    lo, hi = LIMITS[spec.dtype]
    v = spec.values
    if v == "realistic":
        a = rng.uniform(*REALISTIC.get(spec.dtype, (0.0, 1.0)), shape)
    elif v.startswith("constant"):
        a = np.full(shape, {"constant_min": lo, "constant_max": hi, "constant_zero": 0}[v])
    elif v == "full":
        a = rng.uniform(lo, hi, shape)
    elif v == "extremes":
        a = np.where(rng.random(shape) < 0.5, lo, hi)
    elif v == "dn":
        a = rng.uniform(0, 10000, shape)
    elif v == "db":
        a = rng.uniform(-30, 5, shape)
    else:  # tiny: subnormal-sized floats
        a = rng.uniform(0, 1e-38, shape)
    a = a.astype(spec.dtype)
    nodata = _nodata_value(spec, a)
    fill_with = nodata if nodata is not None else lo  # without nodata: the value stays valid
    if spec.fill == "some":
        a[:, rng.random(shape[1:]) < rng.uniform(0.05, 0.95)] = fill_with
    elif spec.fill == "all":
        a[:] = fill_with
    elif spec.fill == "rows":
        a[:, : max(1, spec.height // 2)] = fill_with
    elif spec.fill == "one_band":
        a[rng.integers(spec.bands)] = fill_with
    if spec.special == "nan_some":
        a[:, rng.random(shape[1:]) < 0.3] = np.nan
    elif spec.special == "nan_all":
        a[:] = np.nan
    elif spec.special == "inf_some":
        a[rng.integers(spec.bands), rng.random(shape[1:]) < 0.3] = np.inf
        a.flat[-1] = -np.inf
    elif spec.special == "nan_band":
        a[rng.integers(spec.bands)] = np.nan
    return a


def _transform(spec: Spec) -> Affine | None:
    x, y, res = CRSS[spec.crs]
    return {
        "plain": Affine(res, 0, x, 0, -res, y),
        "non_square": Affine(res, 0, x, 0, -3 * res, y),
        "tiny": Affine(res * 1e-6, 0, x, 0, -res * 1e-6, y),
        "huge": Affine(res * 1e4, 0, x, 0, -res * 1e4, y),
        "south_up": Affine(res, 0, x, 0, res, y),
        "rotated": Affine(res, 0.3 * res, x, 0.2 * res, -res, y),
        "none": None,
    }[spec.transform]


def write_raster(spec: Spec, path: Path) -> dict:
    """Write the spec's GeoTIFF; returns what the outputs are checked against."""
    data = _pixels(spec, np.random.default_rng(spec.seed))
    profile = dict(
        driver="GTiff", dtype=spec.dtype, count=spec.bands, height=spec.height, width=spec.width
    )
    # bands of imagery, none an alpha band: GDAL's writer calls the fourth of four 8-bit bands
    # alpha by default, and 'extremes' fills one with 0 and 255 (alpha bands: test_io.py)
    profile["photometric"] = "MINISBLACK"
    nodata = _nodata_value(spec, data)
    if nodata is not None:
        profile["nodata"] = nodata
    if spec.crs is not None:
        profile["crs"] = CRS.from_user_input(spec.crs)
    transform = _transform(spec)
    if transform is not None:
        profile["transform"] = transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        with rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
    ok = _valid_values(data, nodata)
    return {
        "crs": crs,
        "transform": transform,
        "shape": data.shape,
        "valid": ok.all(axis=0),  # what the engine runs the model on: data in every band
        "data": data,
        "some_value": ok.any(),
        "peak": float(np.abs(data[ok]).max(initial=0.0)),
    }


def _valid_values(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Values that are data, as the README says the engine sees them: finite, below 1e30 in
    size (float nodata markers), not the nodata value; without a nodata value, integer pixels
    that are 0 in every band are nodata (scene borders)."""
    with np.errstate(invalid="ignore"):
        ok = np.abs(data.astype(np.float64)) < 1e30
    if nodata is not None and not math.isnan(nodata):
        ok &= data != np.array(nodata).astype(data.dtype)
    if nodata is None and data.dtype.kind in "iu":
        ok &= ~(data == 0).all(axis=0)
    return ok


def _in_range(data: np.ndarray, tags: dict) -> np.ndarray:
    """Pixels within 1e4 standard deviations of the detected sensor's means in every band
    (after its unit conversion), as the engine requires of float values."""
    if data.dtype.kind != "f":
        return np.ones(data.shape[1:], bool)
    m = get_modality(tags["ofa_modality"])
    values = to_model_units(data, json.loads(tags["ofa_conversion"]))
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (m.mean, m.std))
    with np.errstate(invalid="ignore"):
        return (np.abs(values - mean) <= 1e4 * std).all(axis=0)


def _valid_cells(valid: np.ndarray, res: int) -> np.ndarray:
    """A patch counts when more than half of its pixels inside the raster are valid."""
    if res == 1:
        return valid
    h, w = -(-valid.shape[0] // res), -(-valid.shape[1] // res)
    padded = np.zeros((h * res, w * res), dtype=bool)
    inside = padded.copy()
    padded[: valid.shape[0], : valid.shape[1]] = valid
    inside[: valid.shape[0], : valid.shape[1]] = True

    def per_cell(a: np.ndarray) -> np.ndarray:
        return a.reshape(h, res, w, res).sum(axis=(1, 3))

    return 2 * per_cell(padded) > per_cell(inside)


def _envelope(t: Affine, height: int, width: int) -> np.ndarray:
    corners = np.array([t * (c, r) for c in (0, width) for r in (0, height)])
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])  # x0, y0, x1, y1


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    warnings: list[str]
    logs: list[str]


class _Logs(logging.Handler):
    """What rasterio/GDAL log at WARNING and above (`ofa` shows none: rasterio's logger has a
    NullHandler), to report their kinds."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def run_cli(argv: list[str]) -> Run:
    out, err, logs = io.StringIO(), io.StringIO(), _Logs()
    logging.getLogger().addHandler(logs)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            warnings.simplefilter("always")
            code = main(argv)
    finally:
        logging.getLogger().removeHandler(logs)
    kinds = [f"{w.category.__name__} ({Path(w.filename).name}): {w.message}" for w in caught]
    return Run(code, out.getvalue(), err.getvalue(), kinds, logs.lines)


def _gist(text: str) -> str:
    """A message with its paths and numbers blanked, to count distinct kinds."""
    text = re.sub(r"(?<!\w)/[^\s;]+", "PATH", text)
    return re.sub(r"-?\d[\d.e+-]*", "N", text)[:110]


class Tally:
    def __init__(self):
        self.cases = 0
        self.known: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()

    def summary(self) -> str:
        lines = [
            f"{self.cases} generated rasters, each through {' and '.join(VERBS)} "
            f"(and {sum(self.known.values())} more left out as KNOWN_FAILURES: "
            f"{', '.join(f'{k} {n}' for k, n in self.known.items()) or 'none'}): "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.outcomes.items()))
        ]
        lines += [f"  exit 2 x{n}: {e}" for e, n in self.errors.most_common()]
        lines += [f"  warning x{n}: {w}" for w, n in self.warnings.most_common()]
        return "\n".join(lines)


def check_outcome(verb: str, run: Run, spec: Spec, written: dict, out_dir: Path) -> None:
    prefix = f"ofa {verb}: error: "
    where = f"{verb} on {spec}: exit {run.code}\nstderr:\n{run.stderr[-3000:]}"
    assert run.code in (0, 2), where
    new = sorted(p.name for p in out_dir.iterdir())
    if run.code == 2:  # one error line (after any `ofa VERB: warning:` lines)
        lines = [x for x in run.stderr.splitlines() if not x.startswith(f"ofa {verb}: warning: ")]
        assert len(lines) == 1 and lines[0].startswith(prefix), where
        assert len(lines[0]) > len(prefix), where
        # the engine keeps nodata/NaN out of the model and tiles to the patch size, so the
        # model's own checks of a tensor `x` (Python API words) never speak to a CLI user
        assert not lines[0][len(prefix) :].startswith("x "), where
        assert new == [], f"{where}\nleft in the output folder: {new}"
        return
    expected = ["out.png", "out.tif"] + (["out_pca.tif"] if verb == "embed" else [])
    assert new == expected, f"{where}\nthe output folder holds {new}"
    bands, height, width = written["shape"]
    res = PATCH if verb == "embed" else 1
    t_in = written["transform"]
    with rasterio.open(out_dir / "out.tif") as dst:
        valid = written["valid"] & _in_range(written["data"], dst.tags())
    t_grid = t_in  # the grid the outputs lie on: the input's, turned north up if south up
    if t_in.b == 0 and t_in.d == 0 and t_in.e > 0:
        t_grid, valid = Affine(t_in.a, 0, t_in.c, 0, -t_in.e, t_in.f + t_in.e * height), valid[::-1]
    for name in expected[1:]:  # the GeoTIFFs (the quicklook PNG is tested elsewhere)
        with rasterio.open(out_dir / name) as dst:
            what = f"{where}\n{name}"
            if written["crs"] is not None:
                assert dst.crs == written["crs"], f"{what}: CRS {dst.crs}"
            else:
                assert not dst.crs, f"{what}: CRS {dst.crs} made up for an input without one"
            # on the input's grid (north up), at the task's resolution, and covering the input
            tol = 1e-6 * (abs(t_in.a) + abs(t_in.b) + abs(t_in.d) + abs(t_in.e)) * res
            want_t = t_grid * Affine.scale(res)
            assert dst.transform.almost_equals(want_t, tol), f"{what}: {dst.transform}"
            have = _envelope(dst.transform, dst.height, dst.width)
            want = _envelope(t_in, height, width)
            covers = (have[:2] <= want[:2] + tol).all() and (have[2:] >= want[2:] - tol).all()
            assert covers, f"{what}: bounds {have} do not cover the input's {want}"
            cells = _valid_cells(valid, res)
            assert (dst.height, dst.width) == cells.shape, f"{what}: {dst.shape}"
            if name == "out_pca.tif":
                assert dst.count == 3, what
                continue
            if verb == "reconstruct":
                assert dst.count == bands, f"{what}: {dst.count} bands"
            data = dst.read(masked=True)
            mask = np.ma.getmaskarray(data)
            bad = ~np.isfinite(data.filled(0)) & ~mask
            assert not bad.any(), f"{what}: {int(bad.sum())} non-finite valid values"
            # nodata exactly where the input had no valid pixels (most of a patch for embed)
            lost, made_up = cells & mask.any(axis=0), ~cells & ~mask.all(axis=0)
            assert not lost.any(), (
                f"{what}: {int(lost.sum())} of {int(cells.sum())} valid cells are nodata"
            )
            assert not made_up.any(), f"{what}: {int(made_up.sum())} values for nodata cells"
            assert cells.any(), f"{what}: written though no cell holds data"


@pytest.fixture(scope="module")
def one_model():
    """The shipped model, loaded once: the CLI otherwise loads it for every run."""
    model = pretrained.load_model()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pretrained, "load_model", lambda checkpoint=None, **_: model)
        yield model


def test_generated_rasters_succeed_or_fail_cleanly(one_model, request):
    tally = Tally()

    @settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(spec=specs())
    def case(spec: Spec) -> None:
        with tempfile.TemporaryDirectory(prefix="ofa-bad-input-") as tmp:
            in_dir = Path(tmp) / "in"
            in_dir.mkdir()
            tif = in_dir / "scene.tif"
            written = write_raster(spec, tif)
            known = [what for what, applies in KNOWN_FAILURES if applies(spec, written)]
            tally.known.update(known[:1])
            assume(not known)
            tally.cases += 1
            for verb in VERBS:
                out_dir = Path(tmp) / verb
                out_dir.mkdir()
                run = run_cli(
                    [verb, str(tif), "-o", str(out_dir / "out.tif"), "--progress", "none"]
                )
                tally.outcomes[f"{verb} exit {run.code}"] += 1
                if run.code == 2:
                    tally.errors[_gist(run.stderr.strip())] += 1
                tally.warnings.update(_gist(w) for w in run.warnings + run.logs)
                check_outcome(verb, run, spec, written, out_dir)
                left = sorted(p.name for p in in_dir.iterdir())
                assert left == ["scene.tif"], f"{verb} on {spec} left {left} beside the input"

    try:
        (seed(int(SEED))(case) if SEED else case)()
    finally:
        summary = tally.summary()
        request.node.user_properties.append(("summary", summary))
        request.node.add_report_section("call", "bad-input cases", summary)
