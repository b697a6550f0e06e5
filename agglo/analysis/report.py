"""``agglo analyze`` and ``agglo plot``: read a cube, write the companion groups and figures."""

from __future__ import annotations

import json
import os

import numpy as np
import xarray as xr
import zarr

from agglo.analysis.discovery import prim
from agglo.analysis.sensitivity import analyze_sensitivity, format_table, scalar_outputs, scenario_table
from agglo.analysis.stability import adjusted_rand, coassignment, stability
from agglo.engine.errors import UserError
from agglo.engine.store import cube as store
from agglo.engine.store import lease
from agglo.engine.store.outputs import check_folder, probe_folder, writing
from agglo.engine.store.reading import open_complete

GROUP = "analysis"  # companion groups live under <store>/analysis/
MAX_REGION_TOWNS = 500


def write_group(path: str, name: str, data: xr.Dataset) -> str:
    """Replace the companion group ``analysis/<name>`` of the store (the cube is untouched)."""
    group = f"{GROUP}/{name}"
    data = data.load().copy()
    for var in list(data.variables):
        if data[var].dtype.kind in "UT":  # variable-length strings: the Zarr v3 form with a specification
            data[var] = data[var].astype(object)
    data.to_zarr(store.local_path(path), group=group, mode="w", zarr_format=3, consolidated=False)
    # the root's consolidated metadata lists the group too: xr.open_zarr(cube, group=...) finds it
    zarr.consolidate_metadata(store.local_path(path))
    return group


def read_group(path: str, name: str) -> xr.Dataset:
    return xr.open_zarr(store.local_path(path), group=f"{GROUP}/{name}", consolidated=False).load()


def _town_indices(ds: xr.Dataset, towns: str | None, region: str | None) -> np.ndarray | None:
    if towns:
        ids = [str(t) for t in ds["town_id"].values]
        idx = []
        for wanted in towns.split(","):
            if wanted.strip() not in ids:
                raise UserError(
                    f"--towns: town_id {wanted.strip()!r} is not in the cube; allowed: town_ids of its towns"
                )
            idx.append(ids.index(wanted.strip()))
        return np.asarray(idx)
    if region:
        regions = np.array([str(r) for r in ds["region"].values])
        idx = np.flatnonzero(regions == region)
        if idx.size == 0:
            raise UserError(
                f"--region {region!r}: no town of the cube is in it; allowed: {', '.join(sorted(set(regions))[:20])}"
            )
        if idx.size > MAX_REGION_TOWNS:
            raise UserError(f"--region {region!r}: {idx.size} towns; allowed: at most {MAX_REGION_TOWNS} (or --towns)")
        return idx
    return None


def analyze_store(
    path: str,
    towns: str | None = None,
    region: str | None = None,
    ari: tuple | None = None,
    discover: float | None = None,
) -> str:
    """Sensitivity (grid or sampled cubes), stability, and on request co-assignment, an
    adjusted Rand index and scenario discovery; returns the report text. It writes into the
    cube, so it holds the store's writer lease (no run writes the cube meanwhile)."""
    store.cube_path(path)
    # The results go into the cube's analysis/ group: the cube must accept files.
    if "://" not in store.local_path(path):
        probe_folder(f"agglo analyze {path!r} (writes {GROUP}/ into the cube)", store.local_path(path))
    with lease.held(store.local_path(path), "agglo analyze"):
        return _analyze(path, towns, region, ari, discover)


def _analyze(path: str, towns, region, ari, discover) -> str:
    ds = open_complete(path)
    lines = []
    dims = json.loads(ds.attrs.get("scenario_dims", "[]"))
    # Every option is checked before anything is written.
    idx = _town_indices(ds, towns, region)
    n_scenarios = int(np.prod([ds.sizes[d] for d in dims])) if dims else 1
    for value in ari or ():
        if not 0 <= value < n_scenarios:
            raise UserError(f"--ari {value}: no such scenario; allowed: flat scenario indices 0..{n_scenarios - 1}")
    writes = writing(f"agglo analyze {path!r}")
    if dims and dims != ["scenario"]:
        sens = analyze_sensitivity(ds)
        with writes:
            lines += [format_table(sens), f"-> {path}/{write_group(path, 'sensitivity', sens)}"]
    stab = stability(ds)
    lines.append(f"\nstability over {stab.attrs['scenarios']} scenarios (per mode: towns whose modal core holds in")
    lines.append("every scenario / mean modal-core frequency / mean entropy in bits / mean P(member))")
    for mode in ("commute", "freight"):
        s = stab.sel(mode=mode)
        lines.append(
            f"  {mode:8} {int((s.modal_frequency == 1).sum()):>7} of {s.sizes['town']}  "
            f"{float(s.modal_frequency.mean()):.3f}  {float(s.entropy_bits.mean()):.3f}  {float(s.p_member.mean()):.3f}"
        )
    with writes:
        lines.append(f"-> {path}/{write_group(path, 'stability', stab)}")
    if idx is not None:
        co = coassignment(ds, idx)
        with writes:
            group = write_group(path, "coassignment", co.to_dataset(name="p_same"))
        lines.append(f"co-assignment of {idx.size} towns -> {path}/{group}")
    if ari is not None:
        a, b = ari
        flat = ds["core"].stack(flat_scenario=dims) if dims else ds["core"].expand_dims(flat_scenario=[0])
        for mode in ("commute", "freight"):
            one = flat.sel(mode=mode)
            value = adjusted_rand(one.isel(flat_scenario=a).values, one.isel(flat_scenario=b).values)
            lines.append(f"adjusted Rand index, scenarios {a} and {b}, {mode}: {value:.4f}")
    if discover is not None:
        columns = scenario_table(ds)
        outputs = scalar_outputs(ds)
        gap = outputs["coverage"].sel(mode="freight-commute")
        y = gap.transpose(*dims).values.reshape(-1) >= discover if dims else np.array([bool(gap >= discover)])
        columns = {k: v if v.dtype.kind in "biuf" else v.astype(object) for k, v in columns.items()}
        box, trajectory = prim(columns, y)
        lines.append(
            f"\nscenario discovery (PRIM): freight coverage - commuting coverage >= {discover:g} in {int(y.sum())} of {y.size} scenarios"
        )
        lines.append(f"  box: {' and '.join(box.rules(box.full))}")
        lines.append(
            f"  coverage {box.coverage:.2f} (cases inside / all cases), density {box.density:.2f} (cases inside / scenarios inside), mass {box.mass:.2f}"
        )
        lines.append(
            f"  peeling trajectory: {len(trajectory)} boxes, density {trajectory[0].density:.2f} -> {trajectory[-1].density:.2f}"
        )
    return "\n".join(lines)


def plot_store(path: str, select: dict, out: str, x_key: str | None = None, y_key: str | None = None) -> list[str]:
    """Every figure the cube allows, as PNGs in ``out``; returns their paths."""
    from agglo.views import plots

    check_folder("--out", out)
    ds = open_complete(path)
    chosen = plots.pick_scenario(ds, select)
    with writing(f"--out {out!r}"):
        return _plot_all(plots, ds, chosen, out, x_key, y_key)


def _plot_all(plots, ds, chosen, out, x_key, y_key) -> list[str]:
    os.makedirs(out, exist_ok=True)
    written = [plots.plot_map(ds, chosen, os.path.join(out, "map.png"))]
    dims = plots.scenario_dims(ds)
    grid = [d for d in dims if d not in ("sample", "scenario")]
    if len(grid) >= 2:
        xk, yk = x_key or grid[-1], y_key or grid[0]
        for key in (xk, yk):
            if key not in grid:
                raise UserError(f"--x/--y {key}: not a swept key of the cube; allowed: {', '.join(grid)}")
        written.append(plots.plot_heatmap(ds, xk, yk, chosen, os.path.join(out, "heatmap_coverage.png")))
    if dims and dims != ["scenario"]:
        sens = analyze_sensitivity(ds)
        written.append(plots.plot_sensitivity(sens, os.path.join(out, "sensitivity_coverage.png")))
    if dims:
        stab = stability(ds)
        written.append(plots.plot_stability(ds, stab, os.path.join(out, "stability.png")))
        written.append(plots.plot_membership(ds, stab, os.path.join(out, "membership.png")))
        curve = plots.plot_agglo_vs_cap(ds, chosen, os.path.join(out, "agglo_vs_cap.png"))
        if curve:
            written.append(curve)
    return written
