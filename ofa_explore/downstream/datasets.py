"""Labelled chips from disk: a folder per class (EuroSAT layout), a CSV of path,label, or
image/mask pairs for segmentation.

Readers only list files and labels; ``load_chips`` reads the pixels (through ``io.open_raster``,
so that modality detection and units are those of the rest of the package).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from ..errors import BadInput, NotFound, literal, warn_user
from ..io import CONVERSION_ATTR, RasterError, open_raster, raster_modality
from ..modalities import Modality
from ..scale import to_model_units

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt")
GROUP_COLUMNS = ("group", "geo_group")  # optional CSV column: chips that must stay together
IGNORE_INDEX = 255  # mask value that is not scored (nodata, unlabelled)


class LabelError(BadInput):
    """Labels that do not fit the task; the message names them and the fix."""


@dataclass
class LabelledChips:
    """Image chips with one class label each (``classes`` fixes the label order)."""

    paths: list[Path]
    labels: list[str]
    classes: list[str]
    groups: list[str] | None = None  # e.g. spatial blocks, for honest cross-validation
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in self.labels], dtype=np.int64)

    def with_classes(self, classes: Sequence[str]) -> LabelledChips:
        """The same chips with the label order of a trained head; unknown labels are an error."""
        unknown = sorted(set(self.labels) - set(classes))
        if unknown:
            raise LabelError(
                f"{self.source or 'the data'} has labels the head does not know: "
                f"{', '.join(unknown)}; the head's classes are "
                f"{', '.join(classes)}. Drop those chips or train a new head"
            )
        return LabelledChips(self.paths, self.labels, list(classes), self.groups, self.source)

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledChips:
        index = [int(i) for i in index]
        return LabelledChips(
            [self.paths[i] for i in index],
            [self.labels[i] for i in index],
            self.classes,
            [self.groups[i] for i in index] if self.groups else None,
            self.source,
        )


@dataclass
class SegmentationScenes:
    """Images with a per-pixel class mask each (mask value = class index, 255 = ignore)."""

    images: list[Path]
    masks: list[Path]
    classes: list[str]
    colors: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------- readers
def read_labelled_chips(source: str | Path, classes: Sequence[str] | None = None) -> LabelledChips:
    """A folder with one sub-folder of chips per class, or a CSV with ``path,label`` columns
    (paths relative to the CSV; an optional ``group`` column keeps chips together in splits)."""
    source = Path(source)
    if source.is_dir():
        chips = _read_class_folders(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        chips = _read_label_csv(source)
    elif not source.exists():
        raise NotFound(
            f"labelled data not found: {literal(source)}",
            "give a folder with one sub-folder of chips per class, or a CSV file of path,label",
        )
    else:
        raise LabelError(
            f"{source}: pass a folder with one sub-folder per class, or a .csv with "
            "path,label columns"
        )
    if len(set(chips.labels)) < 2 and classes is None:
        raise LabelError(
            f"{source}: a classifier needs at least two classes, found "
            f"{sorted(set(chips.labels)) or 'none'}"
        )
    return chips.with_classes(classes) if classes is not None else chips


def _read_class_folders(root: Path) -> LabelledChips:
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in RASTER_SUFFIXES:
                paths.append(path)
                labels.append(folder.name)
    if not paths:
        raise LabelError(
            f"{root} has no class folders with rasters ({', '.join(RASTER_SUFFIXES)}) "
            "in them; expected <root>/<class name>/<chip>.tif"
        )
    return LabelledChips(paths, labels, sorted(set(labels)), None, str(root))


def _read_label_csv(path: Path) -> LabelledChips:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if not {"path", "label"} <= columns:
        raise LabelError(
            f"{path} needs the columns path,label (found {', '.join(sorted(columns)) or 'no rows'})"
        )
    group_column = next((c for c in GROUP_COLUMNS if c in columns), None)
    paths, labels, groups = [], [], []
    for n, row in enumerate(rows, start=2):
        file = (path.parent / row["path"]).resolve()
        if not file.is_file():
            raise NotFound(f"{path}, line {n}: {row['path']} does not exist")
        if not row["label"]:
            raise LabelError(f"{path}, line {n}: empty label")
        paths.append(file)
        labels.append(row["label"])
        groups.append(row[group_column] if group_column else None)
    classes = sorted(set(labels))
    return LabelledChips(paths, labels, classes, groups if group_column else None, str(path))


def read_segmentation_scenes(
    source: str | Path, classes: Sequence[str] | None = None
) -> SegmentationScenes:
    """A CSV with ``image,mask`` columns, or a folder with ``images/`` and ``masks/`` whose files
    share names. Class names come from ``classes``, else a ``classes.json`` beside the data
    (a list, or {"classes": [...], "colors": [...]}), else the largest mask value."""
    source = Path(source)
    colors = None
    if source.is_dir():
        images = sorted(
            p for p in (source / "images").glob("*") if p.suffix.lower() in RASTER_SUFFIXES
        )
        if not images:
            raise LabelError(
                f"{source} needs images/ and masks/ folders with rasters of the same names"
            )
        masks = []
        for image in images:
            mask = source / "masks" / image.name
            if not mask.is_file():
                raise NotFound(f"no mask for {image.name}: expected {mask}")
            masks.append(mask)
        meta_file = source / "classes.json"
    elif source.is_file() and source.suffix.lower() == ".csv":
        with open(source, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"image", "mask"} <= set(rows[0]):
            raise LabelError(f"{source} needs the columns image,mask")
        images = [(source.parent / r["image"]).resolve() for r in rows]
        masks = [(source.parent / r["mask"]).resolve() for r in rows]
        for file in images + masks:
            if not file.is_file():
                raise NotFound(f"{source}: {file} does not exist")
        meta_file = source.parent / "classes.json"
    else:
        raise NotFound(
            f"segmentation data not found: {source} (a folder with images/ "
            "and masks/, or a CSV with image,mask)"
        )
    if classes is None and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        classes = meta if isinstance(meta, list) else meta["classes"]
        colors = None if isinstance(meta, list) else meta.get("colors")
    if classes is None:
        top = max(int(np.max(_mask(m)[_mask(m) != IGNORE_INDEX], initial=0)) for m in masks)
        classes = [f"class_{i}" for i in range(top + 1)]
    return SegmentationScenes(images, masks, list(classes), colors, str(source))


def boxes_to_mask(boxes_csv: str | Path, shape: tuple[int, int], value: int = 1) -> np.ndarray:
    """A uint8 mask from box annotations in pixel coordinates (DeepForest's CSV: xmin, ymin,
    xmax, ymax columns), e.g. tree crowns: ``value`` inside any box, 0 elsewhere."""
    mask = np.zeros(shape, np.uint8)
    with open(boxes_csv, newline="") as f:
        for n, box in enumerate(csv.DictReader(f), start=2):
            try:
                x0, y0, x1, y1 = (int(float(box[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (KeyError, ValueError):
                raise LabelError(
                    f"{boxes_csv}, line {n}: needs numeric xmin,ymin,xmax,ymax "
                    "columns (pixel coordinates)"
                ) from None
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = value
    return mask


# ---------------------------------------------------------------- pixels
def load_chips(
    paths: Sequence[Path],
    modality: str | Modality | None = None,
    size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, Modality]:
    """Read chips into one array [N, C, S, S] in model units.

    Chips of other sizes are resized (bilinear) to ``size`` (default: the first chip's size);
    nodata or NaN pixels are filled with the modality's mean, with a warning naming the files.
    """
    arrays, modality_of, filled = [], None, []
    for i, path in enumerate(paths):
        da = open_raster(path, modality)
        m = raster_modality(da)
        if modality_of is None:
            modality_of = m
        elif m.name != modality_of.name:
            raise RasterError(
                f"{path} looks like '{m.name}' but earlier chips are "
                f"'{modality_of.name}'; name the sensor with {{modality}} or keep one "
                "sensor per dataset"
            )
        raw = da.values
        values = to_model_units(raw, da.attrs[CONVERSION_ATTR])
        bad = ~np.isfinite(values)
        nodata = da.rio.nodata
        if nodata is not None and np.isfinite(nodata):
            bad |= raw == nodata
        if bad.any():
            filled.append(path.name)
            values = np.where(bad, np.asarray(m.mean, np.float32)[:, None, None], values)
        arrays.append(values.astype(np.float32))
        if progress:
            progress(i + 1, len(paths))
    if not arrays:
        raise LabelError("no chips to read")
    if filled:
        warn_user(
            f"{len(filled)} chip(s) had nodata/NaN pixels, filled with the modality "
            f"mean: {', '.join(filled[:5])}{' ...' if len(filled) > 5 else ''}"
        )
    size = size or arrays[0].shape[-1]
    return np.stack([_resized(a, size) for a in arrays]), modality_of


def load_masks(paths: Sequence[Path], size: int | None = None) -> np.ndarray:
    """Class masks [N, S, S] int64 (nearest-neighbour when resized)."""
    out = []
    for path in paths:
        mask = _mask(path)
        if size and mask.shape != (size, size):
            t = torch.from_numpy(mask.astype(np.float32))[None, None]
            mask = F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy()
        out.append(mask.astype(np.int64))
    return np.stack(out)


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        if src.count != 1:
            raise LabelError(
                f"mask {path} has {src.count} bands; a mask is one band of class "
                f"indices ({IGNORE_INDEX} = ignore)"
            )
        return src.read(1)


def _resized(chip: np.ndarray, size: int) -> np.ndarray:
    if chip.shape[-2:] == (size, size):
        return chip
    t = torch.from_numpy(chip)[None]
    return F.interpolate(
        t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0].numpy()


def scene_tiles(size: int, data: SegmentationScenes, modality: str | Modality | None = None):
    """``size`` x ``size`` tiles of every scene (the model's image size): images [N, C, S, S],
    masks [N, S, S] (edges padded with the modality mean / ignore), the (scene, row, col) of each
    tile, and the modality."""
    images, masks, groups, found = [], [], [], None
    for i, (image_path, mask_path) in enumerate(zip(data.images, data.masks)):
        image, m = load_chips([image_path], modality or found)
        mask = load_masks([mask_path])[0]
        if mask.shape != image.shape[-2:]:
            raise BadInput(
                f"mask {mask_path.name} is {mask.shape[0]}x{mask.shape[1]} but its "
                f"image is {image.shape[-2]}x{image.shape[-1]}; they must match"
            )
        found = m
        bad = (mask != IGNORE_INDEX) & (mask >= len(data.classes))
        if bad.any():
            raise BadInput(
                f"mask {mask_path.name} has class values "
                f"{sorted(set(mask[bad].tolist()))[:5]} beyond the "
                f"{len(data.classes)} classes {data.classes}"
            )
        for tile, tile_mask, (r, c) in tile_pairs(image[0], mask, size, m):
            images.append(tile)
            masks.append(tile_mask)
            groups.append((i, r, c))
    return np.stack(images), np.stack(masks), groups, found


def tile_pairs(image: np.ndarray, mask: np.ndarray, size: int, modality: Modality):
    """Non-overlapping ``size`` tiles of image [C, H, W] and mask [H, W], edges padded with the
    modality mean and the ignore value: yields (tile, mask tile, (row, col))."""
    H, W = mask.shape
    Hp, Wp = -(-H // size) * size, -(-W // size) * size
    padded = np.broadcast_to(
        np.asarray(modality.mean, np.float32)[:, None, None], (image.shape[0], Hp, Wp)
    ).copy()
    padded[:, :H, :W] = image
    padded_mask = np.full((Hp, Wp), IGNORE_INDEX, np.int64)
    padded_mask[:H, :W] = mask
    for r in range(0, Hp, size):
        for c in range(0, Wp, size):
            yield (
                padded[:, r : r + size, c : c + size],
                padded_mask[r : r + size, c : c + size],
                (r // size, c // size),
            )
