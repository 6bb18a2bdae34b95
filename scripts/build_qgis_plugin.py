"""Zip the QGIS plugin for "Plugins > Manage and Install Plugins > Install from ZIP".

    python scripts/build_qgis_plugin.py [-o dist/ofa_explore_qgis.zip]
    python scripts/build_qgis_plugin.py --stage FOLDER   # the plugin folder, unzipped, in FOLDER

The plugin's sources (qgis_plugin/ofa_explore_qgis/) plus the package's torch-free modules that
both sides of the process boundary share (ofa_explore/protocol.py, errors.py and
enmap_product.py), copied into ``ofa_explore_qgis/_shared/`` here, at build time: the source
tree holds no second copy. The zip also carries the package's own wheel
(``ofa_explore_qgis/wheels/``), built here by pip from this checkout: Set up engine… installs
exactly this engine, and only PyTorch and the package's libraries come from the index.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "qgis_plugin" / "ofa_explore_qgis"
SHARED = [ROOT / "ofa_explore" / name for name in ("errors.py", "protocol.py", "enmap_product.py")]
SHARED_PACKAGE = "_shared"
WHEELS = "wheels"  # install.WHEELS
SHARED_INIT = (
    '"""Copied from the ofa_explore package when the plugin is built '
    '(scripts/build_qgis_plugin.py); edit the originals."""\n'
)


def files() -> list[tuple[Path, Path]]:
    """(source file, path inside the plugin's folder) of everything the plugin ships."""
    own = [
        (path, path.relative_to(PLUGIN))
        for path in sorted(PLUGIN.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.relative_to(PLUGIN).parts[0] != SHARED_PACKAGE
    ]
    return own + [(path, Path(SHARED_PACKAGE) / path.name) for path in SHARED]


def build_wheel(folder: Path) -> Path:
    """The package's wheel (ofa_explore-<version>-py3-none-any.whl) in ``folder``, built by pip
    from a copy of the package's sources (no stale build/ of the checkout gets in, nothing is
    written into it) and without the index (no build isolation: the running Python's
    setuptools)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copyfile(ROOT / name, source / name)
        shutil.copytree(
            ROOT / "ofa_explore",
            source / "ofa_explore",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
            + ["--disable-pip-version-check", "--wheel-dir", str(folder), str(source)],
            check=True,
        )
    return next(Path(folder).glob("ofa_explore-*.whl"))


def stage(folder: str | Path, wheel: bool = False) -> Path:
    """The plugin as QGIS installs it: ``folder/ofa_explore_qgis`` (replaced if it exists),
    with the package's wheel if ``wheel`` (a few seconds: the tests that need none skip it)."""
    target = Path(folder) / PLUGIN.name
    if target.exists():
        shutil.rmtree(target)
    for source, inside in files():
        (target / inside).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / inside)
    (target / SHARED_PACKAGE / "__init__.py").write_text(SHARED_INIT)
    if wheel:
        build_wheel(target / WHEELS)
    return target


def build(output: Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".zip.part")
    with (
        tempfile.TemporaryDirectory() as staging,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        plugin = stage(staging, wheel=True)
        for path in sorted(plugin.rglob("*")):
            if path.is_file():
                zf.write(path, Path(PLUGIN.name) / path.relative_to(plugin))
    tmp.replace(output)
    return output


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "ofa_explore_qgis.zip")
    parser.add_argument(
        "--stage",
        type=Path,
        metavar="FOLDER",
        help="write the plugin folder into FOLDER (e.g. a QGIS profile's "
        "python/plugins) instead of a zip",
    )
    args = parser.parse_args()
    print(f"wrote {stage(args.stage, wheel=True) if args.stage else build(args.output)}")
