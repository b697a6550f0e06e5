"""The study's answer per scenario, as a short table: how much small-town population
lies inside an agglomeration, how many agglomerations, and how large, per mode."""

from __future__ import annotations

import numpy as np
import xarray as xr

MAX_ROWS = 48


def _people(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def scenario_rows(ds: xr.Dataset):
    """The labels (swept key -> value) of every scenario, in C order."""
    dims = [d for d in ds.coverage.dims if d != "mode"]
    if not dims:
        yield {}
        return
    shape = [ds.sizes[d] for d in dims]
    for flat in range(int(np.prod(shape))):
        index = np.unravel_index(flat, shape)
        sel = dict(zip(dims, (int(i) for i in index)))
        if len(dims) == 1 and dims[0] in ("sample", "scenario"):
            dim = dims[0]
            labels = {k: ds[k].values[sel[dim]] for k in ds.coverage.coords if k not in ("mode", dim)}
            labels = {dim: sel[dim]} | labels
        else:
            labels = {d: ds[d].values[sel[d]] for d in dims}
        yield labels


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def table(ds: xr.Dataset, top: int = 3) -> str:
    """A plain-text table of the cube (first ``MAX_ROWS`` scenarios)."""
    population = ds.population.values
    names = ds.name.values
    dims = [d for d in ds.core.dims if d not in ("mode", "town")]
    n_scen = int(np.prod([ds.sizes[d] for d in dims] or [1]))
    # The shown scenarios' cores (scenario in C order, mode, town), from one read of the
    # leading block of the scenario dimensions that holds them.
    shape = [ds.sizes[d] for d in dims]
    index = np.unravel_index(np.arange(min(n_scen, MAX_ROWS)), shape) if dims else ()
    block = ds.core.transpose(*dims, "mode", "town").isel({d: slice(0, int(i.max()) + 1) for d, i in zip(dims, index)})
    cores_shown = block.values[index] if dims else block.values[None]
    lines = []
    header_keys = None
    rows = []
    for k, labels in enumerate(scenario_rows(ds)):
        if k >= MAX_ROWS:
            break
        header_keys = list(labels)
        cores = cores_shown[k]  # (mode, town)
        for m, mode in enumerate(ds.mode.values):
            c = cores[m]
            is_core = c == np.arange(c.shape[0])
            member = (c >= 0) & ~is_core
            counts = np.bincount(c[member], minlength=c.shape[0])
            sizes = np.bincount(c[member], weights=population[member], minlength=c.shape[0]) + np.where(
                is_core, population, 0.0
            )
            agglos = np.flatnonzero(is_core & (counts > 0))
            agglos = agglos[np.argsort(-sizes[agglos], kind="stable")]
            small = population[~is_core].sum()
            coverage = population[member].sum() / small if small > 0 else np.nan
            largest = ", ".join(f"{names[a]} {_people(sizes[a])}/{counts[a]}" for a in agglos[:top])
            rows.append(
                [_fmt(labels[key]) for key in header_keys]
                + [str(mode), f"{100 * coverage:.1f} %", str(len(agglos)), largest or "-"]
            )
    header = (header_keys or []) + [
        "mode",
        "coverage",
        "agglos",
        f"largest agglomerations (population/member towns, top {top})",
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    lines.append(fmt(header))
    lines.append(fmt(["-" * w for w in widths]))
    lines.extend(fmt(r) for r in rows)
    if n_scen > MAX_ROWS:
        lines.append(f"... {n_scen - MAX_ROWS} more scenarios in the cube (open it with agglo.open_results)")
    return "\n".join(lines)


def header(ds: xr.Dataset) -> str:
    core = ds.core.isel({d: 0 for d in ds.core.dims if d not in ("mode", "town")}).values[0]
    is_core = core == np.arange(core.shape[0])
    small_pop = float(ds.population.values[~is_core].sum())
    return (
        f"{ds.attrs.get('input_source', '?')}: {ds.sizes['town']} towns, "
        f"{int(is_core.sum())} cores in the first scenario, small-town population {_people(small_pop)}; "
        "coverage = share of small-town population inside an agglomeration"
    )


def describe_cube(path: str) -> str:
    """``agglo info``: the cube's engine and input, its dimensions, how much is written, who
    holds its writer lease, whether it has checksums, and its summary table."""
    from agglo.engine.store import cube as store
    from agglo.engine.store import lease, reading

    lines: list[str] = []
    path = store.cube_path(path)
    ds = reading.open_results(path)
    done = reading.batch_done(path)
    lines.append(
        f"{path}: engine {ds.attrs.get('engine_version')}, input SHA-256 {ds.attrs.get('input_sha256', '')[:16]}…"
    )
    lines.append("dims: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    lines.append(
        f"batches written: {int(done.sum())}/{done.size}"
        + ("" if done.all() else " (incomplete: 'agglo run' with the same config resumes it)")
    )
    holder = lease.read(path)
    if holder is not None:
        lines.append(
            f"writer: {holder.describe()} (it holds the store's lease)"
            if isinstance(holder, lease.Holder)
            else f"writer: unknown (the lease file {lease.lease_path(path)!r} is not a lease record)"
        )
    lines.append(
        "checksums: every written batch has one ('agglo verify' checks them; 'agglo run' does on resume)"
        if reading.has_checksums(path)
        else "checksums: none (a cube of an older engine; it cannot be verified)"
    )
    lines.append(header(ds))
    lines.append(table(ds))
    return "\n".join(lines)


def regions_text(country: str, min_population: float) -> str:
    """``agglo regions``: a country's first-level divisions (data.admin1 codes), each named
    by its largest town, with its towns and population."""
    from agglo.api import regions

    table = regions(country, min_population)
    country = country.upper()
    lines = [
        f"{country}: {len(table)} first-level divisions (data.admin1), named by their largest town",
        f"{'admin1':<8} {'largest town':<32} {'towns':>7} {'population':>12}",
    ]
    for code, row in table.iterrows():
        lines.append(f"{code:<8} {row.largest_town[:32]:<32} {row.towns:>7} {row.population:>12,.0f}")
    first = table.index[0]
    lines.append(
        f"use: agglo run data.country={country} data.admin1={first}  (a list: 'data.admin1=[{first},...]'; all: data.admin1=null)"
    )
    return "\n".join(lines)
