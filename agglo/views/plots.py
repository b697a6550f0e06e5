"""Figures from a result cube (matplotlib, written as PNG).

``map`` (towns on lon/lat sized by population, coloured by core, commuting and freight
side by side, cores marked and the largest named, towns outside every agglomeration in
grey); ``heatmap`` (coverage over two swept keys, per mode); ``sensitivity`` (indices
with their confidence intervals); ``stability`` (modal-core frequency per town);
``agglo_vs_cap`` (the population of the largest agglomerations against the cap, per
mode). Titles state the scenario; axes carry units.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from agglo.engine.errors import UserError  # noqa: E402

UNITS = {"cap_min": "min", "speed_kmh": "km/h", "self_time_min": "min", "min_time_min": "min", "beta": "", "gamma": ""}


def _label(key: str) -> str:
    unit = UNITS.get(key.split(".")[-1], "")
    return f"{key} ({unit})" if unit else key


def scenario_dims(ds: xr.Dataset) -> list[str]:
    return json.loads(ds.attrs.get("scenario_dims", "[]"))


def pick_scenario(ds: xr.Dataset, select: dict) -> dict:
    """One value per scenario dimension: the user's ``--select``, else the value nearest to
    the run's configured default for that key, else the first."""
    config = OmegaConf.to_container(OmegaConf.create(ds.attrs.get("config") or "{}"))
    chosen = {}
    for dim in scenario_dims(ds):
        values = ds.coords[dim].values
        if dim in select:
            want = select[dim]
            if dim in ("sample", "scenario"):
                index = int(want)
                if not 0 <= index < values.size:
                    raise UserError(f"--select {dim}={want}: out of range; allowed: 0..{values.size - 1}")
                chosen[dim] = values[index]
                continue
            match = [v for v in values if str(v) == str(want)]
            if not match:
                try:
                    match = [v for v in values if np.isclose(float(v), float(want))]
                except ValueError:
                    match = []
            if not match:
                raise UserError(f"--select {dim}={want}: not in the cube; allowed: {', '.join(map(str, values))}")
            chosen[dim] = match[0]
            continue
        group, _, field = dim.partition(".")
        base = (config.get(group) or {}).get(field) if field else config.get(group)
        if base is not None and np.issubdtype(values.dtype, np.number):
            chosen[dim] = values[int(np.argmin(np.abs(values.astype(float) - float(base))))]
        elif base is not None and str(base) in map(str, values):
            chosen[dim] = values[[str(v) for v in values].index(str(base))]
        else:
            chosen[dim] = values[0]
    for key in select:
        if key not in chosen:
            raise UserError(
                f"--select {key}: not a dimension of the cube; allowed: {', '.join(scenario_dims(ds)) or 'none'}"
            )
    return chosen


def _title(chosen: dict, ds: xr.Dataset | None = None) -> str:
    """The chosen scenario in words; a sample or a table row named by its parameter values."""
    parts = []
    for key, value in chosen.items():
        if ds is not None and key in ("sample", "scenario"):
            index = int(np.flatnonzero(ds.coords[key].values == value)[0])
            swept = [k for k in ds.coords if k != key and ds.coords[k].dims == (key,)]
            values = ", ".join(f"{k} = {_value(ds.coords[k].values[index])}" for k in swept)
            parts.append(f"{key} {value}: {values}" if values else f"{key} = {value}")
        else:
            parts.append(f"{key} = {value}")
    return ", ".join(parts) or "the configured scenario"


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _town_panels(ds: xr.Dataset, smallest: float, largest: float):
    """Two map panels (commuting, freight) over the towns: the figure, its axes, and the
    towns' longitudes, latitudes and marker sizes (area grows with the square root of
    population, from ``smallest`` to ``smallest + largest``)."""
    lon, lat, pop = ds["lon"].values, ds["lat"].values, ds["population"].values
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    for ax in axes:
        ax.set_xlabel("longitude (°)")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].set_ylabel("latitude (°)")
    return fig, axes, lon, lat, smallest + largest * np.sqrt(pop / pop.max())


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_map(ds: xr.Dataset, chosen: dict, path: str, label_top: int = 8) -> str:
    one = ds.sel(chosen)
    names = ds["name"].values
    fig, axes, lon, lat, size = _town_panels(ds, 4, 60)
    # Distinct colours without greys (grey means "in no agglomeration"), largest agglomeration first.
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    palette += [c for i, c in enumerate(plt.get_cmap("Dark2").colors) if i != 7]
    for ax, mode in zip(axes, ("commute", "freight")):
        core = one["core"].sel(mode=mode).values
        cover = float(one["coverage"].sel(mode=mode))
        agg = one["agglo_population"].sel(mode=mode).values
        none = core < 0
        ax.scatter(lon[none], lat[none], s=size[none], c="lightgrey", edgecolors="none", label="in no agglomeration")
        members = ~none
        ranked = sorted(set(core[members].tolist()), key=lambda c: -agg[c])
        colour = {c: palette[r % len(palette)] for r, c in enumerate(ranked)}
        ax.scatter(lon[members], lat[members], s=size[members], c=[colour[c] for c in core[members]], edgecolors="none")
        cores = np.flatnonzero(core == np.arange(core.size))
        ax.scatter(lon[cores], lat[cores], s=size[cores] + 40, marker="*", c="black", label="core")
        for c in cores[np.argsort(-agg[cores])][:label_top]:
            ax.annotate(str(names[c]), (lon[c], lat[c]), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_title(f"{mode}: coverage {100 * cover:.1f} % of small-town population")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Agglomerations by commuting and by freight — {_title(chosen, ds)}\n(size: population; colour: core)")
    fig.tight_layout()
    return _save(fig, path)


def plot_heatmap(ds: xr.Dataset, x_key: str, y_key: str, chosen: dict, path: str) -> str:
    rest = {k: v for k, v in chosen.items() if k not in (x_key, y_key)}
    cov = ds["coverage"].sel(rest).transpose("mode", y_key, x_key).values * 100
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for m, (ax, mode) in enumerate(zip(axes, ("commute", "freight"))):
        im = ax.imshow(cov[m], origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=max(1, np.nanmax(cov)))
        ax.set_xticks(range(ds.sizes[x_key]), [f"{v:g}" if isinstance(v, float) else str(v) for v in ds[x_key].values])
        ax.set_yticks(range(ds.sizes[y_key]), [f"{v:g}" if isinstance(v, float) else str(v) for v in ds[y_key].values])
        ax.set_xlabel(_label(x_key))
        ax.set_ylabel(_label(y_key))
        ax.set_title(f"{mode}: coverage (%)")
        for (r, c), v in np.ndenumerate(cov[m]):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 50 else "black")
        fig.colorbar(im, ax=ax, label="% of small-town population in an agglomeration")
    fig.suptitle(f"Coverage over {x_key} and {y_key}" + (f" — {_title(rest, ds)}" if rest else ""))
    fig.tight_layout()
    return _save(fig, path)


def plot_sensitivity(result: xr.Dataset, path: str, output: str = "coverage") -> str:
    method = result.attrs.get("method")
    bars = {
        "sobol": [("S1", "S1_conf"), ("ST", "ST_conf")],
        "morris": [("mu_star", "mu_star_conf")],
        "lhs": [("delta", "delta_conf")],
        "grid": [("variance_share", None)],
    }[method]
    keys = [str(k) for k in result.coords["key"].values]
    modes = [str(m) for m in result.coords["mode"].values]
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 4), sharey=True)
    width = 0.8 / len(bars)
    for ax, mode in zip(np.atleast_1d(axes), modes):
        for b, (name, conf) in enumerate(bars):
            v = result[name].sel(output=output, mode=mode).values
            err = result[conf].sel(output=output, mode=mode).values if conf else None
            ax.bar(np.arange(len(keys)) + b * width, v, width, yerr=err, capsize=3, label=name)
        ax.set_xticks(np.arange(len(keys)) + width * (len(bars) - 1) / 2, keys, rotation=20, ha="right")
        ax.set_title(mode)
        ax.axhline(0, color="black", linewidth=0.5)
    np.atleast_1d(axes)[0].set_ylabel(
        {"grid": "variance share (eta²)", "morris": "mu* (elementary effect)"}.get(method, "index")
    )
    np.atleast_1d(axes)[0].legend()
    fig.suptitle(f"Sensitivity of {output} ({method}" + (", bars: 95 % CI)" if method != "grid" else ")"))
    fig.tight_layout()
    return _save(fig, path)


def plot_stability(ds: xr.Dataset, stab: xr.Dataset, path: str) -> str:
    fig, axes, lon, lat, size = _town_panels(ds, 4, 60)
    for ax, mode in zip(axes, ("commute", "freight")):
        f = stab["modal_frequency"].sel(mode=mode).values
        im = ax.scatter(lon, lat, s=size, c=f, cmap="magma_r", vmin=0, vmax=1, edgecolors="none")
        ax.set_title(f"{mode}: how often a town has its modal core")
    fig.colorbar(im, ax=axes, label="modal-core frequency over all scenarios")
    fig.suptitle(f"Cluster stability over {stab.attrs.get('scenarios', '?')} scenarios")
    return _save(fig, path)


def plot_membership(ds: xr.Dataset, stab: xr.Dataset, path: str) -> str:
    """P(belongs to an agglomeration) per town over all scenarios; never attached in red."""
    fig, axes, lon, lat, size = _town_panels(ds, 3, 40)
    for ax, mode in zip(axes, ("commute", "freight")):
        p = stab["p_member"].sel(mode=mode).values
        never = p == 0
        im = ax.scatter(lon[~never], lat[~never], s=size[~never], c=p[~never], cmap="viridis", vmin=0, vmax=1)
        ax.scatter(
            lon[never], lat[never], s=size[never], c="tab:red", label=f"never attached ({int(never.sum())} towns)"
        )
        ax.set_title(f"{mode}: share of scenarios in an agglomeration")
        ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(im, ax=axes, label="P(member) over all scenarios")
    fig.suptitle(f"Which towns any scenario attaches ({stab.attrs.get('scenarios', '?')} scenarios)")
    return _save(fig, path)


def plot_agglo_vs_cap(ds: xr.Dataset, chosen: dict, path: str, top: int = 5) -> str | None:
    keys = {"commute": "commute.cap_min", "freight": "freight.cap_min"}
    if not any(k in scenario_dims(ds) for k in keys.values()):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ds["name"].values
    for ax, (mode, key) in zip(axes, keys.items()):
        if key not in scenario_dims(ds):
            ax.set_axis_off()
            ax.set_title(f"{mode}: {key} not swept")
            continue
        rest = {k: v for k, v in chosen.items() if k != key}
        ap = ds["agglo_population"].sel(rest).sel(mode=mode).transpose(key, "town").values
        caps = ds[key].values
        agglo = np.flatnonzero((ap > ds["population"].values[None, :]).any(axis=0))
        biggest = agglo[np.argsort(-ap[:, agglo].max(axis=0))][:top]
        for c in biggest:
            ax.plot(caps, ap[:, c] / 1e6, marker="o", label=str(names[c]))
        ax.set_xlabel(_label(key))
        ax.set_ylabel("agglomeration population (millions)")
        ax.set_title(f"{mode}: the {top} largest agglomerations")
        ax.legend(fontsize=8)
    fig.suptitle(
        "Agglomeration population against the cap, commuting vs freight"
        + (f" — {_title({k: v for k, v in chosen.items() if k not in keys.values()})}" if len(chosen) > 1 else "")
    )
    fig.tight_layout()
    return _save(fig, path)
