"""Classification map: a head's class map over the scene, with a legend and the area of each
class."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..engine import predict_raster
from ..model import OFANet
from ..threads import ensure_threads
from .display import class_picture, latlon_bounds, on_display_grid, read_scene, rgb_picture
from .maps import PIXELATED_CSS, overlay, scene_map


class ClassificationMap(widgets.VBox):
    """``engine``: how the engine runs, as for ``predict_raster``: ``settings=EngineSettings(...)``
    and/or single fields (``precision="auto"``)."""

    def __init__(
        self,
        model: OFANet,
        source,
        head: str | None = None,
        modality: str | None = None,
        basemap: bool | None = None,
        **engine,
    ):
        ensure_threads()  # a shell: the default thread count unless one was chosen
        pixels, self.modality, self.raster = read_scene(source, modality)
        self.progress = widgets.IntProgress(description="Classifying", min=0, max=1)
        super().__init__([self.progress])

        def step(done: int, total: int) -> None:
            self.progress.max, self.progress.value = total, done

        if head is not None:  # else the settings' head, if any
            engine["head"] = head
        result = predict_raster(model, self.raster, "classify", progress=step, **engine)
        self.result = result
        self.classes = result.data.values[0]
        self.names, self.colors = result.class_names, result.class_colors
        self.map, _ = scene_map(self.raster, rgb_picture(pixels, self.modality), basemap=basemap)
        cell = round(abs(result.data.rio.resolution()[0] / self.raster.rio.resolution()[0]))
        picture = on_display_grid(class_picture(self.classes, self.colors), cell, self.raster)
        self.layer = overlay(picture, latlon_bounds(self.raster), f"classes ({result.head})", 0.7)
        self.map.add(self.layer)
        self.opacity = widgets.FloatSlider(
            value=0.7, min=0, max=1, step=0.05, description="Opacity"
        )
        self.opacity.observe(lambda c: setattr(self.layer, "opacity", c["new"]), names="value")
        res_x, res_y = result.data.rio.resolution()
        self.areas = result.class_areas
        self.legend = widgets.HTML(self.legend_html())
        self.table = widgets.HTML(self.table_html())
        self.status = widgets.HTML(
            f"{result.tiles} tiles classified in {result.seconds} s on "
            f"{result.device}; cells of {abs(res_x):g} m x {abs(res_y):g} m"
        )
        self.children = [
            widgets.HTML(PIXELATED_CSS),
            self.map,
            self.opacity,
            widgets.HBox([self.legend, self.table]),
            self.status,
        ]

    def legend_html(self) -> str:
        items = "".join(
            f"<div><span style='display:inline-block;width:12px;height:12px;"
            f"background:{c};margin-right:6px'></span>{html.escape(n)}</div>"
            for n, c in zip(self.names, self.colors)
        )
        return f"<div style='margin-right:24px'><b>{html.escape(self.result.head)}</b>{items}</div>"

    def table_html(self) -> str:
        metric = self.areas[0]["hectares"] is not None  # no metres in a geographic CRS: pixels
        key, unit = ("hectares", "area (ha)") if metric else ("pixels", "pixels")
        rows = "".join(
            f"<tr><td>{html.escape(r['class'])}</td>"
            f"<td style='text-align:right'>{r[key]:,.1f}</td>"
            f"<td style='text-align:right'>{r['share']:.1%}</td></tr>"
            for r in self.areas
            if r["pixels"]
        )
        total = sum(r[key] for r in self.areas)
        return (
            f"<table><tr><th>class</th><th>{unit}</th><th>share</th></tr>"
            f"{rows}<tr><td><b>classified</b></td><td style='text-align:right'>"
            f"<b>{total:,.1f}</b></td><td></td></tr></table>"
        )
