"""Sensitivity of a cube's scalar outputs to its swept keys.

Outputs, per scenario and per mode (``commute``, ``freight`` and their difference
``freight-commute``): ``coverage``, ``n_agglomerations``, ``mean_agglo_population`` and
``largest_agglo_population`` (over cores with at least one member; NaN when there is
none). A sampled cube is analysed with SALib's analyser for the sampler that drew it,
with the sample's own parameters (so the numbers equal SALib's on the same outputs):
``sobol`` -> Sobol indices S1, ST, S2 with 95 % confidence intervals; ``morris`` ->
mu*, sigma (and mu*'s interval); ``lhs`` -> Borgonovo's delta and S1. A grid cube gets
main effects (the mean of an output at each value of a key, over all other keys) and
variance shares (the variance of those means over the output's variance, eta²).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from agglo.engine.errors import UserError

OUTPUTS = ("coverage", "n_agglomerations", "mean_agglo_population", "largest_agglo_population")
MODES3 = ("commute", "freight", "freight-commute")


def scalar_outputs(ds: xr.Dataset) -> xr.Dataset:
    """The four outputs for every scenario and mode (the difference as a third mode)."""
    population = ds["population"]
    ap = ds["agglo_population"]
    is_agglo = ap > population
    count = is_agglo.sum("town")
    total = ap.where(is_agglo).sum("town")
    out = xr.Dataset(
        {
            "coverage": ds["coverage"].astype(np.float64),
            "n_agglomerations": ds["n_agglomerations"].astype(np.float64),
            "mean_agglo_population": (total / count).where(count > 0),
            "largest_agglo_population": ap.where(is_agglo).max("town"),
        }
    ).compute()
    diff = out.sel(mode="freight", drop=True) - out.sel(mode="commute", drop=True)
    diff = diff.expand_dims(mode=["freight-commute"])
    return xr.concat([out, diff], dim="mode")


def scenario_table(ds: xr.Dataset) -> dict:
    """Every swept key and its value in every scenario, in the cube's flat scenario order."""
    dims = json.loads(ds.attrs.get("scenario_dims", "[]"))
    if dims == ["sample"] or dims == ["scenario"]:
        dim = dims[0]
        keys = [c for c in ds.coords if ds.coords[c].dims == (dim,) and c != dim]
        return {k: np.asarray(ds.coords[k].values) for k in keys}
    values = [np.asarray(ds.coords[d].values) for d in dims]
    index = np.meshgrid(*[np.arange(v.size) for v in values], indexing="ij")
    return {d: v[i.reshape(-1)] for d, v, i in zip(dims, values, index)}


def analyze_sensitivity(ds: xr.Dataset) -> xr.Dataset:
    """Sensitivity of every output and mode to the cube's swept keys (see the module)."""
    outputs = scalar_outputs(ds)
    dims = json.loads(ds.attrs.get("scenario_dims", "[]"))
    if not dims:
        raise UserError(
            "the cube has a single scenario; allowed: a grid or a sampled cube (sweep.grid or sweep.sampler)"
        )
    if "sampler" in ds.attrs:
        return _sampled(ds, outputs, json.loads(ds.attrs["sampler"]))
    if dims == ["scenario"]:
        raise UserError("a scenario-table cube has no design to analyse; allowed: a grid or a sampled cube")
    return _grid(outputs, dims)


def _problem(info: dict) -> dict:
    return {"num_vars": len(info["names"]), "names": list(info["names"]), "bounds": [list(b) for b in info["bounds"]]}


def _sampled(ds: xr.Dataset, outputs: xr.Dataset, info: dict) -> xr.Dataset:
    from SALib.analyze import delta, morris, sobol

    problem = _problem(info)
    names = problem["names"]
    columns = scenario_table(ds)
    x = np.column_stack([columns[k].astype(np.float64) for k in names])
    fields = {"sobol": ("S1", "S1_conf", "ST", "ST_conf"), "morris": ("mu_star", "mu_star_conf", "sigma", "mu")}
    fields["lhs"] = ("delta", "delta_conf", "S1", "S1_conf")
    per_key = {f: np.full((len(OUTPUTS), 3, len(names)), np.nan) for f in fields[info["sampler"]]}
    s2 = s2_conf = None
    if info["sampler"] == "sobol":
        s2 = np.full((len(OUTPUTS), 3, len(names), len(names)), np.nan)
        s2_conf = s2.copy()
    for o, name in enumerate(OUTPUTS):
        for m, mode in enumerate(MODES3):
            y = outputs[name].sel(mode=mode).values.astype(np.float64)
            if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
                continue  # undefined in some scenario (no agglomeration) or constant: no index
            if info["sampler"] == "sobol":
                res = sobol.analyze(problem, y, calc_second_order=True, print_to_console=False, seed=info["seed"])
                s2[o, m], s2_conf[o, m] = res["S2"], res["S2_conf"]
            elif info["sampler"] == "morris":
                res = morris.analyze(problem, x, y, num_levels=4, print_to_console=False, seed=info["seed"])
            else:
                res = delta.analyze(problem, x, y, print_to_console=False, seed=info["seed"])
            for f in per_key:
                per_key[f][o, m] = np.asarray(res[f], dtype=np.float64)
    coords = {"output": list(OUTPUTS), "mode": list(MODES3), "key": names}
    out = xr.Dataset({f: (("output", "mode", "key"), v) for f, v in per_key.items()}, coords=coords)
    if s2 is not None:
        out["S2"] = (("output", "mode", "key", "key2"), s2)
        out["S2_conf"] = (("output", "mode", "key", "key2"), s2_conf)
        out = out.assign_coords(key2=names)
    out.attrs.update(method=info["sampler"], sampler=json.dumps(info), conf_level=0.95)
    return out


def _grid(outputs: xr.Dataset, dims: list[str]) -> xr.Dataset:
    out = xr.Dataset(coords={"output": list(OUTPUTS), "mode": list(MODES3), "key": dims})
    share = np.full((len(OUTPUTS), 3, len(dims)), np.nan)
    for o, name in enumerate(OUTPUTS):
        y = outputs[name]
        full = y.var(dim=dims)
        for k, key in enumerate(dims):
            others = [d for d in dims if d != key]
            main = y.mean(dim=others) if others else y
            out[f"main_effect.{name}.{key}"] = main.transpose("mode", key)
            var = main.var(dim=key).values
            share[o, :, k] = np.where(full.values > 0, var / np.where(full.values > 0, full.values, 1.0), np.nan)
    out["variance_share"] = (("output", "mode", "key"), share)
    out.attrs.update(method="grid")
    return out


def format_table(result: xr.Dataset) -> str:
    """A readable table of the indices (one block per output, one line per mode and key)."""
    method = result.attrs.get("method")
    cols = {
        "sobol": [("S1", "S1_conf"), ("ST", "ST_conf")],
        "morris": [("mu_star", "mu_star_conf"), ("sigma", None)],
        "lhs": [("delta", "delta_conf"), ("S1", "S1_conf")],
        "grid": [("variance_share", None)],
    }[method]
    head = "  ".join(f"{c:>16}" for c, _ in cols)
    lines = [f"sensitivity ({method}); ± = 95 % confidence interval" if method != "grid" else "sensitivity (grid)"]
    for name in OUTPUTS:
        lines.append(f"\n{name}\n{'mode':16} {'key':24} {head}")
        for mode in MODES3:
            for key in result.coords["key"].values:
                cells = []
                for value, conf in cols:
                    v = float(result[value].sel(output=name, mode=mode, key=key))
                    c = float(result[conf].sel(output=name, mode=mode, key=key)) if conf else None
                    cells.append(f"{v:>8.3f} ± {c:<5.3f}" if c is not None and np.isfinite(v) else f"{v:>16.3f}")
                lines.append(f"{mode:16} {str(key):24} " + "  ".join(f"{x:>16}" for x in cells))
    return "\n".join(lines)
