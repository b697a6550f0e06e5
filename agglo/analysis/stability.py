"""How robust each town's membership is across the scenarios of a cube.

Per mode and town, over every scenario: the modal core (the most frequent value of
``core``, -1 included; ties: the lower value) and its frequency; the Shannon entropy of
the assignment in bits (0: always the same); the probability of belonging to an
agglomeration (``core >= 0``; a core belongs to its own). Between towns: the
co-assignment probability (both in the same agglomeration: same core, not -1). Between
two scenarios: the adjusted Rand index of their partitions, where each town outside
every agglomeration is its own cluster (being unassigned is not a shared cluster).

Everything is computed block by block over the cube's Dask chunks (sparse counts of
(town, core) per block, summed), so a national cube is never loaded whole.
"""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

from agglo.engine.config.names import MODES


def _flat_core(ds: xr.Dataset) -> xr.DataArray:
    """``core`` as (scenario..., mode, town) with the scenario dims first."""
    core = ds["core"]
    scen = [d for d in core.dims if d not in ("mode", "town")]
    return core.transpose(*scen, "mode", "town")


def _block_counts(block: np.ndarray, n_towns: int):
    """Sparse counts of (mode, town, core) in a block of shape (..., mode, town)."""
    b = block.reshape(-1, block.shape[-2], block.shape[-1])
    modes = np.broadcast_to(np.arange(b.shape[1])[None, :, None], b.shape)
    towns = np.broadcast_to(np.arange(b.shape[2])[None, None, :], b.shape)
    key = (modes.astype(np.int64) * n_towns + towns) * (n_towns + 1) + (b.astype(np.int64) + 1)
    keys, counts = np.unique(key.reshape(-1), return_counts=True)
    return keys, counts


def _merge(parts):
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    u, inv = np.unique(keys, return_inverse=True)
    return u, np.bincount(inv, weights=counts).astype(np.int64)


def stability(ds: xr.Dataset) -> xr.Dataset:
    """modal_core, modal_frequency, entropy_bits and p_member per (mode, town)."""
    core = _flat_core(ds)
    n_towns = core.sizes["town"]
    n_modes = core.sizes["mode"]
    data = core.data
    if hasattr(data, "to_delayed"):
        blocks = [dask.delayed(_block_counts)(b, n_towns) for b in data.to_delayed().reshape(-1)]
        parts = dask.compute(*blocks)
    else:
        parts = [_block_counts(np.asarray(data), n_towns)]
    keys, counts = _merge(list(parts))
    value = keys % (n_towns + 1) - 1
    cell = keys // (n_towns + 1)  # mode * n_towns + town
    total = np.bincount(cell, weights=counts, minlength=n_modes * n_towns)
    p = counts / total[cell]
    entropy = np.bincount(cell, weights=-p * np.log2(p), minlength=n_modes * n_towns)
    member = np.bincount(cell, weights=np.where(value >= 0, counts, 0), minlength=n_modes * n_towns) / total
    # Modal value: the largest count, ties to the lower value (keys are sorted by value within a cell).
    order = np.lexsort((value, -counts, cell))
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    modal = np.full(n_modes * n_towns, -1, dtype=np.int64)
    freq = np.zeros(n_modes * n_towns)
    modal[cell[order][first]] = value[order][first]
    freq[cell[order][first]] = counts[order][first] / total[cell[order][first]]
    shape = (n_modes, n_towns)
    coords = {
        "mode": core.coords["mode"].values,
        **{c: core.coords[c] for c in core.coords if core.coords[c].dims == ("town",)},
    }
    return xr.Dataset(
        {
            "modal_core": (("mode", "town"), modal.reshape(shape).astype(np.int32)),
            "modal_frequency": (("mode", "town"), freq.reshape(shape)),
            "entropy_bits": (("mode", "town"), entropy.reshape(shape)),
            "p_member": (("mode", "town"), member.reshape(shape)),
        },
        coords=coords,
        attrs={"scenarios": int(total[0]) if total.size else 0},
    )


def _block_coassign(block: np.ndarray, idx: np.ndarray):
    b = block.reshape(-1, block.shape[-2], block.shape[-1])[:, :, idx]  # (s, mode, k)
    same = (b[:, :, :, None] == b[:, :, None, :]) & (b[:, :, :, None] >= 0)
    return same.sum(axis=0), b.shape[0]


def coassignment(ds: xr.Dataset, towns: np.ndarray) -> xr.DataArray:
    """P(town a and town b in the same agglomeration) over all scenarios: (mode, a, b)."""
    core = _flat_core(ds)
    idx = np.asarray(towns, dtype=np.int64)
    data = core.data
    if hasattr(data, "to_delayed"):
        parts = dask.compute(*[dask.delayed(_block_coassign)(b, idx) for b in data.to_delayed().reshape(-1)])
    else:
        parts = [_block_coassign(np.asarray(data), idx)]
    total = sum(n for _, n in parts)
    prob = sum(s for s, _ in parts) / total
    ids = core.coords["town_id"].values[idx]
    return xr.DataArray(
        prob, dims=("mode", "town_a", "town_b"), coords={"mode": list(MODES), "town_a": ids, "town_b": ids}
    )


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two assignments (``core`` vectors; -1 = its own cluster)."""
    a = np.asarray(a, dtype=np.int64).copy()
    b = np.asarray(b, dtype=np.int64).copy()
    n = a.shape[0]
    lone = np.arange(n) + a.max(initial=0) + b.max(initial=0) + 2
    a[a < 0] = lone[a < 0]
    b[b < 0] = lone[b < 0]
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    pairs_ab = np.unique(ai * (bi.max() + 1) + bi, return_counts=True)[1]
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731
    sum_ab = comb(pairs_ab).sum()
    sum_a = comb(np.bincount(ai)).sum()
    sum_b = comb(np.bincount(bi)).sum()
    expected = sum_a * sum_b / comb(n) if n > 1 else 0.0
    top = (sum_a + sum_b) / 2.0
    if top == expected:
        return 1.0
    return float((sum_ab - expected) / (top - expected))
