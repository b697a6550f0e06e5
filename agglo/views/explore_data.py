"""What the explorer page holds: the cube's per-town arrays for the scenarios kept (all,
unless they exceed the page's size budget), compressed for the page's script, and the
towns' positions, names and core ranks. No Bokeh here: :mod:`~agglo.views.explore` builds
the page around this payload."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np

from agglo.engine.store.reading import open_complete
from agglo.views.outlines import mercator

PALETTE = [  # Bokeh's Category20, without its greys (grey is "no core")
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#bcbd22", "#dbdb8d",
    "#17becf", "#9edae5",
]  # fmt: skip
MAX_LABELS = 15  # agglomerations named on each map, the largest first


@dataclass
class PageData:
    ds: object  # the cube
    dims: list  # its scenario dimensions
    chosen: dict  # the scenario shown first
    keep: dict  # dimension -> the indices the page holds
    sample_dim: str | None  # "sample" or "scenario" for a sampled or tabled cube
    x: np.ndarray  # Web Mercator metres
    y: np.ndarray
    population: np.ndarray
    names: list
    notes: list  # what was subsampled
    size_mb: float  # the compressed arrays, base64
    payload: dict  # what explore.js reads


def page_data(path: str, select: dict, max_mb: float) -> PageData:
    """The cube at ``path`` read for the page (a complete cube: refused otherwise)."""
    from agglo.views.plots import pick_scenario, scenario_dims

    ds = open_complete(path)
    dims = scenario_dims(ds)
    chosen = pick_scenario(ds, select)
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
    payload = {
        "n_towns": n,
        "n_scenarios": arrays["n_scenarios"],
        "dims": dims,
        "shape": [len(keep[d]) for d in dims],
        "dim_values": [[_text(v) for v in ds.coords[d].values[keep[d]]] for d in dims],
        "slider_of_dim": None,  # set by the page, which makes the sliders
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
        "stability": _stability(path, n),
        **{k: packed[k][0] for k in ("core", "share", "reach")},
    }
    return PageData(ds, dims, chosen, keep, sample_dim, x, y, population, names, notes, data["size_mb"], payload)


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
