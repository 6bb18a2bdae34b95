"""ofa_explore.protocol: what the engine and the QGIS plugin share, without torch or numpy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_explore import protocol
from ofa_explore.errors import API_WORDS, CLI_WORDS, BadInput, NotFound, render_event


def test_stdlib_only():
    """Importing protocol and errors loads neither torch nor numpy (QGIS ships a copy)."""
    code = (
        "import sys, importlib.util, pathlib\n"
        "for name in ('errors', 'protocol'):\n"
        "    spec = importlib.util.spec_from_file_location(\n"
        "        'ofa_explore.' + name, pathlib.Path('ofa_explore') / (name + '.py'))\n"
        "    m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m\n"
        "    spec.loader.exec_module(m)\n"
        "print(sorted(n for n in ('numpy', 'torch', 'rasterio') if n in sys.modules))\n"
    )
    root = Path(protocol.__file__).parents[1]
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_tasks_and_output_names(tmp_path):
    assert protocol.TASK_NAMES == ("classify", "embed", "reconstruct", "change")
    assert [protocol.task(n).suffix for n in protocol.TASK_NAMES] == [
        "classes",
        "embedding",
        "reconstruction",
        "change",
    ]
    assert protocol.output_files(tmp_path / "c.tif", "change") == [
        tmp_path / "c.tif",
        tmp_path / "c.gpkg",  # the polygons, when asked for
        tmp_path / "c.png",  # the quicklook
    ]
    with pytest.raises(BadInput, match="unknown task 'segment'"):
        protocol.task("segment")
    assert (
        protocol.scene_output(tmp_path, "a/b/scene.v2.tif", "embed")
        == tmp_path / "scene.v2_embed.tif"
    )
    assert protocol.output_files(tmp_path / "e.tif", "embed") == [
        tmp_path / "e.tif",
        tmp_path / "e_pca.tif",
        tmp_path / "e.png",  # the quicklook
    ]
    assert protocol.output_files(tmp_path / "c.tiff", "classify") == [
        tmp_path / "c.tiff",
        tmp_path / "c.png",
    ]
    assert protocol.quicklook_path(tmp_path / "r.tif") == tmp_path / "r.png"
    assert protocol.pca_path(tmp_path / "e.tif") == tmp_path / "e_pca.tif"
    first = protocol.layer_output(tmp_path, "S2 scene / 2024", "classify")
    assert first == tmp_path / "S2_scene_2024_classes.tif"
    first.write_bytes(b"x")
    assert (
        protocol.layer_output(tmp_path, "S2 scene / 2024", "classify").name
        == "S2_scene_2024_classes_2.tif"
    )
    assert protocol.layer_output(tmp_path, "***", "reconstruct").name == "layer_reconstruction.tif"


def test_events_round_trip():
    line = protocol.event_line(protocol.progress_event(3, 8))
    assert line.endswith("\n") and line.count("\n") == 1
    assert protocol.parse_event(line) == {
        "event": "progress",
        "done": 3,
        "total": 8,
        "percent": 37.5,
    }
    assert protocol.parse_event("a warning") is None
    assert protocol.parse_event('{"no": "event"}') is None
    assert protocol.parse_event("[1, 2]") is None
    with pytest.raises(ValueError, match="unknown event"):
        protocol.event("finished")
    start = protocol.start_event("embed", "rgb", 3, "a.tif")
    assert start == {
        "event": "start",
        "task": "embed",
        "modality": "rgb",
        "bands": 3,
        "input": "a.tif",
    }
    err = BadInput("3 bands could be rgb or naip", "say which with {modality}")
    event = err.to_event()
    assert event == {
        "event": "error",
        "kind": "bad_input",
        "problem": err.problem,
        "fix": "say which with {modality}",
        "message": "3 bands could be rgb or naip; say which with --modality",
    }
    assert protocol.parse_event(protocol.event_line(event)) == event
    assert render_event(event, {"modality": "the Sensor list"}).endswith("the Sensor list")
    assert str(err).endswith("say which with modality=")  # the Python API's words
    assert err.render(CLI_WORDS) != err.render(API_WORDS)
    assert (
        BadInput("a {path with braces", "fix {modality}").render(CLI_WORDS)
        == "a {path with braces; fix --modality"
    )


def test_checkpoint_metadata_from_the_header(tmp_path):
    from ofa_explore.checkpoint import read_metadata
    from ofa_explore.pretrained import shipped_checkpoint_path

    shipped = shipped_checkpoint_path()
    assert shipped.name == protocol.SHIPPED_CHECKPOINT
    assert protocol.read_checkpoint_metadata(shipped) == read_metadata(shipped)
    with pytest.raises(NotFound, match="does not exist"):
        protocol.read_checkpoint_metadata(tmp_path / "missing.safetensors")
    for content in (
        b"",
        b"\x80\x02not a safetensors file",
        shipped.read_bytes()[:200],
        (20).to_bytes(8, "little") + b'{"__metadata__": {}}',
    ):
        (tmp_path / "bad.safetensors").write_bytes(content)
        with pytest.raises(BadInput, match="is not an OFA Explore model"):
            protocol.read_checkpoint_metadata(tmp_path / "bad.safetensors")


def test_wavelength_tags():
    assert protocol.band_wavelength(
        {"WAVELENGTH": "665", "wavelength_units": "Nanometers"}
    ) == pytest.approx(0.665)
    assert protocol.band_wavelength({"wavelength": "0.665", "wavelength_units": "um"}) == 0.665
    assert protocol.band_wavelength({"wavelength": "842"}) == pytest.approx(0.842)  # no units
    assert protocol.band_wavelength({"wavelength": "n/a"}) is None
    assert protocol.band_wavelength({}) is None
    tags = [
        {"wavelength": "450", "bbl": "1"},
        {"wavelength": "1400", "bbl": "0"},
        {"wavelength": "865"},
    ]
    waves, good = protocol.band_wavelengths(tags)
    assert good == [0, 2] and waves == pytest.approx([0.45, 0.865])
    assert protocol.band_wavelengths(tags + [{}]) is None  # one band without: none
    assert protocol.band_wavelengths([{"wavelength": "450", "bbl": "0.0"}]) is None


def test_sensor_hint_is_the_engines_detection():
    """The same rule as io.detect_modality: count, names, the 8-bit layouts for bytes, then
    the sensors marked for detection."""
    from ofa_explore.io import detect_modality
    from ofa_explore.modalities import get_modality, list_modalities

    facts = protocol.load_sensor_facts(Path(protocol.__file__).parent / "data")
    assert [f["name"] for f in facts] == list_modalities()[: len(facts)]
    assert protocol.sensor_hint(facts, 2, None, "uint8") == "s1"  # the uint8 rule
    assert protocol.sensor_hint(facts, 2, None, "Byte") == "s1"  # GDAL's name
    assert protocol.sensor_hint(facts, 2, None, "float32") == "s1_grd"
    assert protocol.sensor_hint(facts, 5) is None
    assert protocol.sensor_candidates(facts, 5) == []
    assert protocol.sensor_hint(facts, 2, ["VH", "VV"], "float32") == "s1_grd"
    for count, dtype in ((2, "uint8"), (2, "float32"), (3, "uint8"), (13, "uint16")):
        assert detect_modality(count, None, dtype).name == protocol.sensor_hint(
            [get_modality(n).to_dict() for n in list_modalities()], count, None, dtype
        )


def test_named_bands_that_are_some_of_a_sensors():
    facts = protocol.load_sensor_facts(Path(protocol.__file__).parent / "data")
    s2 = (("s2_l1c", ["B02", "B03", "B04", "B08"]), ("s2_l2a", ["B02", "B03", "B04", "B08"]))
    # Sentinel-2's 10 m bands, as ESA names them and as Earth Engine does; the 8-bit layout of
    # the same bands ('s2') only for bytes
    assert protocol.band_subsets(facts, ["B02", "B03", "B04", "B08"], "uint16") == list(s2)
    assert protocol.band_subsets(facts, ["b2", "B3", "B4", "B8"], "UInt16") == list(s2)
    assert protocol.band_subsets(facts, ["B2", "B3", "B4", "B8"], "uint8")[0][0] == "s2"
    assert protocol.sensor_hint(facts, 4, ["B02", "B03", "B04", "B08"], "uint16") == (
        "s2_l1c_b02_b03_b04_b08"
    )  # L1C's or L2A's: the same bands, L1C's unless the values say otherwise
    assert [n for n, _ in protocol.band_subsets(facts, ["B2", "B3", "B4"], "uint16")] == [
        "s2_l1c",
        "s2_l2a",
        "landsat_oli_l1",
    ]
    assert protocol.sensor_hint(facts, 3, ["B2", "B3", "B4"], "uint16") is None  # the values say
    # Earth Engine's Landsat-8 B1 ... B11: 11 of Sentinel-2's by name, all of Landsat-8
    # Level-1's among them; the values say which (the hint said Sentinel-2's)
    eleven = [f"B{n}" for n in range(1, 12)]
    assert ("landsat_oli_l1", [1, 2, 3, 4, 5, 6, 7, 9]) in protocol.sensors_among(facts, eleven)
    assert protocol.sensor_hint(facts, 11, eleven, "uint16") is None
    assert [n for n, _ in protocol.band_subsets(facts, ["B02", "B03", "B04"], "uint16")] == [
        "s2_l1c",
        "s2_l2a",
    ]  # a file's B02 is never Landsat's B2
    # none: all of a sensor's bands, a band unnamed or named twice, or names no sensor has
    assert protocol.band_subsets(facts, ["R", "G", "B", "NIR"]) == []
    assert protocol.band_subsets(facts, ["B02", None]) == []
    assert protocol.band_subsets(facts, ["B02", "B2"]) == []
    assert protocol.band_subsets(facts, ["Band 1", "Band 2"]) == []
    assert protocol.band_subsets(facts, ["B001", "B002"]) == []  # EnMAP's: by wavelength
    assert protocol.band_subsets(facts, ["B08"]) == []  # one band tells no sensor apart
    # unnamed bands picked by number of a file whose band count is one sensor's
    assert protocol.picked_bands(facts, 13, [2, 3, 4, 8]) == s2[0]
    assert protocol.picked_bands(facts, 13, list(range(1, 14))) is None  # all of them
    assert protocol.picked_bands(facts, 4, [1, 2, 3]) is None  # NAIP's, Gaofen's...: as before
    # names round-trip, bands with underscores too
    for sensor, bands in (s2[0], ("landsat_oli", ["SR_B4", "SR_B5"]), ("s2", ["B8", "B4"])):
        name = protocol.subset_name(sensor, bands)
        assert name == name.lower() and protocol.subset_of(facts, name) == (sensor, bands)
    assert protocol.subset_of(facts, "s2_l1c") is None
    assert protocol.subset_of(facts, "s2_l1c_b99") is None


def test_facts_file_is_plain_json():
    data = json.loads(
        (Path(protocol.__file__).parent / "data" / protocol.MODALITIES_FILE).read_text()
    )
    assert {"name", "bands", "units"} <= set(data["modalities"][0])


def test_a_sources_local_file_inside_gdal_dataset_names(tmp_path):
    """QGIS layers of a GeoPackage's raster, a zip's file or a product's sub-dataset have GDAL
    dataset names as sources; the file they read is on this machine. Remote ones are not."""
    import zipfile

    tif, gpkg, archive = tmp_path / "a.tif", tmp_path / "b.gpkg", tmp_path / "S2B.zip"
    for path in (tif, gpkg):
        path.write_bytes(b"x")
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("S2B.SAFE/MTD_MSIL2A.xml", "<x/>")
    assert protocol.local_file(str(tif)) == str(tif)
    assert protocol.local_file(f"GPKG:{gpkg}:t2020") == str(gpkg)
    assert protocol.local_file(f'NETCDF:"{tif}":sst') == str(tif)
    zipped_name = f"/vsizip/{archive}/S2B.SAFE/MTD_MSIL2A.xml"
    assert protocol.local_file(zipped_name).endswith(str(archive))
    product = f"SENTINEL2_L2A:/vsizip/{archive}/S2B.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633"
    assert protocol.local_file(product).endswith(str(archive))
    for elsewhere in (
        "/vsicurl/https://example.com/a.tif",
        "https://example.com/a.tif",
        f"GPKG:{tmp_path / 'gone.gpkg'}:t2020",
        str(tmp_path / "gone.tif"),
    ):
        assert protocol.local_file(elsewhere) is None, elsewhere


def test_one_instrument_at_two_processing_levels():
    """Sentinel-2 L1C (13 bands) and L2A (12, no B10) are one instrument at two levels, as are
    Landsat 7's surface reflectance and its 8-bit digital numbers; Landsat 7 and 8 (NIR and
    SWIR 30-40 nm apart), or L1C and an RGBN aerial image, are not."""
    from ofa_explore.detection import sensor_records
    from ofa_explore.protocol import one_instrument, other_level

    records = {r["name"]: r for r in sensor_records()}
    assert one_instrument(records["s2_l1c"], records["s2_l2a"])
    assert one_instrument(records["landsat_etm"], records["landsat_tm_8bit"])
    assert not one_instrument(records["landsat_oli"], records["landsat_etm"])
    assert not one_instrument(records["s2_l1c"], records["rgbn"])
    assert not one_instrument(records["s2_l1c"], records["s2_l1c"])
    assert other_level(records.values(), records["s2_l1c"], 12)["name"] == "s2_l2a"
    assert other_level(records.values(), records["s2_l2a"], 13)["name"] == "s2_l1c"
    assert other_level(records.values(), records["s2_l1c"], 4) is None  # 10 m bands, or RGBN
    assert other_level(records.values(), records["landsat_oli"], 6) is None
