"""``agglo explore``: one self-contained HTML page to browse every scenario of a cube.

The page is a Bokeh standalone document with inline resources (no network, no server):
commuting and freight maps side by side (towns coloured by their core, sized by population,
cores marked and named, agglomerations outlined by the convex hull of their members, country
outlines where Natural Earth data is installed), one slider per swept dimension (or one over
the samples of a sampled cube), a summary per mode, and, when ``agglo analyze`` has run, a
stability layer. The cube's per-town results travel once, deflate-compressed, and the page's
script (``explore.js``) redraws from them in the browser.

What the page holds, per (mode, town, scenario): ``core`` (int32), ``share`` (uint8, in steps
of 0.4 %: ``round(250 * share)``, 255 for "no core reachable"), ``n_reachable`` (int32); per
(scenario, mode): ``coverage`` and ``n_agglomerations`` exactly as in the cube. A cube whose
compressed arrays exceed ``max_mb`` is subsampled: the swept dimension with the most values
keeps every other value (repeatedly, until it fits), a sampled cube every k-th sample; the
page says which values it holds.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import NamedTuple

import numpy as np

from agglo.engine.errors import UserError
from agglo.engine.store import cube as store
from agglo.engine.store.outputs import check_folder, writing
from agglo.views.explore_data import MAX_LABELS, PageData, _nearest, _text, page_data
from agglo.views.outlines import outlines

DEFAULT_MAX_MB = 40.0
TOOLTIPS = [
    ("town", "@name"),
    ("population", "@population{0,0}"),
    ("core", "@core_name"),
    ("share to core", "@share"),
    ("reachable towns", "@reach"),
]


class Page(NamedTuple):
    doc: object  # the Bokeh Document
    held: str  # what the page holds, in words (scenarios, subsampling, towns)
    data_mb: float  # the size of its compressed, base64-encoded arrays
    payload: dict  # what the page's script reads (see explore.js)


def build_page(path: str, select: dict | None = None, max_mb: float = DEFAULT_MAX_MB) -> Page:
    """The page's Bokeh document, what it holds, and the data its script reads."""
    from bokeh.document import Document
    from bokeh.events import DocumentReady
    from bokeh.layouts import column, row
    from bokeh.models import CustomJS, RadioButtonGroup

    data = page_data(path, select or {}, max_mb)
    payload = data.payload
    # The view: the towns' extent and a margin; the outlines are clipped to it.
    pad_x, pad_y = 0.08 * (np.ptp(data.x) + 1e4), 0.08 * (np.ptp(data.y) + 1e4)
    x_range = (float(data.x.min() - pad_x), float(data.x.max() + pad_x))
    y_range = (float(data.y.min() - pad_y), float(data.y.max() + pad_y))
    layers = outlines(x_range, y_range)
    maps = _maps(data, x_range, y_range, layers)
    sliders, payload["slider_of_dim"] = _sliders(data)
    layer = None
    if payload["stability"] is not None:
        layer = RadioButtonGroup(labels=["colour: core", "modal-core frequency", "P(member)"], active=0, name="layer")
    heading = _div("", 1240, "heading")
    models = {**{k: maps[k] for k in ("towns", "cores", "hulls", "summaries")}, "sliders": sliders}
    models.update(heading=heading, layerPick=layer)
    script = resources.files("agglo.views").joinpath("explore.js").read_text(encoding="utf-8")
    ready = CustomJS(args={"payload": payload, **models}, code=script)
    redraw = CustomJS(code="if (window.aggloExplore && window.aggloExplore.ready) window.aggloExplore.show();")
    for slider in sliders:
        slider.js_on_change("value", redraw)
    if layer is not None:
        layer.js_on_change("active", redraw)
    held = (
        f"{payload['n_scenarios']} scenarios"
        + (f" (subsampled to fit {max_mb:g} MB: {'; '.join(data.notes)})" if data.notes else "")
        + f", {payload['n_towns']} towns"
    )
    about = _about(path, held, "; ".join(note for _, _, note in layers.values()))
    controls = [heading, *sliders] + ([layer] if layer is not None else [])
    page = column(*controls, row(*maps["figures"]), row(*maps["summaries"]), about)
    doc = Document()
    doc.add_root(page)
    doc.js_on_event(DocumentReady, ready)
    return Page(doc, held, data.size_mb, payload)


def _div(text: str, width: int, name: str | None = None):
    from bokeh.models import Div

    return Div(text=text, width=width, name=name) if name else Div(text=text, width=width)


def _maps(data: PageData, x_range: tuple, y_range: tuple, layers: dict) -> dict:
    """Per mode: the map with its towns, cores and hulls (filled by the script) and its summary."""
    out = {"towns": [], "cores": [], "hulls": [], "summaries": [], "figures": []}
    shared_range = {}
    for mode in ("commute", "freight"):
        towns, cores, hulls, fig = _map(
            mode, data, shared_range.get("x", x_range), shared_range.get("y", y_range), layers
        )
        shared_range = {"x": fig.x_range, "y": fig.y_range}
        out["towns"].append(towns)
        out["cores"].append(cores)
        out["hulls"].append(hulls)
        out["summaries"].append(_div("", 620, f"summary_{mode}"))
        out["figures"].append(fig)
    return out


def _map(mode: str, data: PageData, x_range, y_range, layers: dict):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    n = len(data.names)
    size = 3 + 22 * np.sqrt(data.population / data.population.max())
    towns = ColumnDataSource(
        {"x": data.x, "y": data.y, "name": data.names, "population": data.population, "size": size,
         "core": np.full(n, -1, dtype=np.int32), "color": ["#c8c8c8"] * n, "core_name": [""] * n,
         "share": [""] * n, "reach": np.zeros(n, dtype=np.int32)},
        name=f"towns_{mode}",
    )  # fmt: skip
    cores = ColumnDataSource({"x": [], "y": [], "name": [], "color": []}, name=f"cores_{mode}")
    hulls = ColumnDataSource({"xs": [], "ys": [], "color": []}, name=f"hulls_{mode}")
    fig = figure(
        title=f"{mode}: {'people travel to the core' if mode == 'commute' else 'goods travel to the core'}",
        x_axis_type="mercator", y_axis_type="mercator", x_range=x_range, y_range=y_range, match_aspect=True,
        width=620, height=560, tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
        name=f"map_{mode}",
    )  # fmt: skip
    region_x, region_y, _ = layers["regions"]
    if region_x:
        fig.multi_line(region_x, region_y, line_color="#999999", line_width=0.6, line_dash="dashed")
    country_x, country_y, _ = layers["countries"]
    if country_x:
        fig.multi_line(country_x, country_y, line_color="#666666", line_width=0.9)
    fig.patches("xs", "ys", source=hulls, fill_color="color", fill_alpha=0.12, line_color="color", line_width=1.5)
    dots = fig.scatter("x", "y", source=towns, size="size", fill_color="color", line_color="#555555",
                       line_width=0.3, fill_alpha=0.85)  # fmt: skip
    fig.scatter("x", "y", source=cores, marker="star", size=18, fill_color="color", line_color="black")
    fig.text("x", "y", text="name", source=cores, text_font_size="10pt", x_offset=8, y_offset=-4,
             text_font_style="bold")  # fmt: skip
    fig.add_tools(HoverTool(renderers=[dots], tooltips=TOOLTIPS))
    return towns, cores, hulls, fig


def _sliders(data: PageData) -> tuple[list, list]:
    """One slider over the samples of a sampled cube, else one per swept dimension with two
    or more values; and, per dimension, the index of its slider (None: no slider)."""
    from bokeh.models import CustomJSTickFormatter, Slider

    ds, keep = data.ds, data.keep
    if data.sample_dim is not None:
        dim = data.sample_dim
        count = len(keep[dim])
        start = int(np.searchsorted(keep[dim], int(data.chosen[dim])))
        slider = Slider(start=0, end=max(count - 1, 1), value=min(start, count - 1), step=1,
                        title=f"{dim} (of {count})", width=600, disabled=count < 2, name=f"slider_{dim}")  # fmt: skip
        return [slider], [0]
    sliders, slider_of_dim = [], []
    for d in data.dims:
        values = ds.coords[d].values[keep[d]]
        if len(values) < 2:
            slider_of_dim.append(None)
            continue
        labels = [_text(v) for v in values]
        tick = CustomJSTickFormatter(args={"labels": labels}, code="return labels[Math.round(tick)]")
        slider_of_dim.append(len(sliders))
        sliders.append(Slider(start=0, end=len(values) - 1, value=_nearest(values, data.chosen[d]), step=1,
                              title=d, width=600, format=tick, name=f"slider_{d}"))  # fmt: skip
    return sliders, slider_of_dim


def _about(path: str, held: str, outline_note: str):
    source = store.read_attrs(path) or {}
    return _div(
        f"<p style='color:#555'>{os.path.basename(os.path.normpath(path))}: {source.get('input_source', '')}, {held}. "
        "Colour: the town's core (grey: no core within the share threshold); size: population; stars: cores "
        f"(the {MAX_LABELS} largest agglomerations named); "
        "outlines: convex hulls of each agglomeration's towns. Share to core in steps of 0.4 %. "
        f"{outline_note}.</p>",
        1240,
    )


def explore_store(path: str, out: str, select: dict | None = None, max_mb: float = DEFAULT_MAX_MB) -> str:
    """Write the page for the cube at ``path`` to ``out``; returns a one-line description."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    if not (max_mb > 0):
        raise UserError(f"--max-mb {max_mb}: allowed: a positive number of megabytes")
    if os.path.isdir(out):
        raise UserError(f"--out {out!r} is a folder; allowed: a file path for the page (e.g. page.html)")
    check_folder("--out: its folder", os.path.dirname(os.path.abspath(out)))
    path = store.cube_path(path)
    page = build_page(path, select, max_mb)
    held = page.held
    html = file_html(page.doc, INLINE, title=f"agglo explore: {os.path.basename(os.path.normpath(path))}")
    partial = out + ".partial"
    with writing(f"--out {out!r}"):
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(partial, out)
    return f"{out}: {os.path.getsize(out) / 1e6:.1f} MB, {held}; open it in a browser (no network needed)"
