"""Sweep planning: which scenarios a config asks for, and how they are cut into batches.

Pure planning, no computation. A grid sweep has one dimension per swept key (in the
order the keys were given); a sampled sweep has one dimension ``sample``. Batches are
blocks of the scenario dimensions aligned with the store's chunks, so two batches
never write the same chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agglo.engine.config.names import STRING_KEYS
from agglo.engine.errors import UserError


@dataclass(frozen=True)
class Plan:
    """The scenarios of one run.

    ``values[key]`` holds, for a grid, the values along the key's own dimension; for a
    sample, one value per sample. ``chunks`` is the batch block along each dimension.
    """

    kind: str  # "single" | "grid" | "sample" | "table"
    keys: tuple
    dims: tuple
    shape: tuple
    chunks: tuple
    values: dict
    sampler: dict | None = None

    @property
    def n_scenarios(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def chunk_grid(self) -> tuple:
        return tuple(math.ceil(n / c) for n, c in zip(self.shape, self.chunks))

    @property
    def n_batches(self) -> int:
        return int(np.prod(self.chunk_grid, dtype=np.int64)) if self.shape else 1

    def region(self, batch: int) -> tuple:
        """Slices of the scenario dimensions that batch ``batch`` covers."""
        if not self.shape:
            return ()
        index = np.unravel_index(batch, self.chunk_grid)
        return tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(index, self.chunks, self.shape))

    def scenario_values(self, batch: int | None = None) -> dict:
        """Per swept key, one value per scenario of the batch (all scenarios if None), C order."""
        if self.kind == "single":
            return {}
        region = self.region(batch) if batch is not None else tuple(slice(0, n) for n in self.shape)
        if self.kind in ("sample", "table"):
            return {k: np.asarray(v)[region[0]] for k, v in self.values.items()}
        axes = [np.asarray(self.values[k])[r] for k, r in zip(self.keys, region)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return {k: m.reshape(-1) for k, m in zip(self.keys, mesh)}

    def describe(self, batch: int) -> str:
        """Batch ``batch`` by its scenarios' values: ``commute.cap_min=40, freight.beta=0.5..1.5``."""
        values = self.scenario_values(batch)
        if not values:
            return f"batch {batch} (the one scenario)"

        def shown(x) -> str:
            return f"{x:g}" if isinstance(x, float) else str(x)

        parts = []
        for key, v in values.items():
            unique = list(dict.fromkeys(np.asarray(v).tolist()))
            parts.append(
                f"{key}={shown(unique[0])}" if len(unique) == 1 else f"{key}={shown(min(unique))}..{shown(max(unique))}"
            )
        return f"batch {batch} ({', '.join(parts)})"

    def batch_size(self, batch: int) -> int:
        return int(np.prod([r.stop - r.start for r in self.region(batch)], dtype=np.int64)) if self.shape else 1


def _as_array(key: str, values: list) -> np.ndarray:
    if key in STRING_KEYS:
        return np.asarray([str(v) for v in values], dtype=object)
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def block_chunks(shape: tuple, batch_size: int) -> tuple:
    """Chunks of about ``batch_size`` scenarios, filled from the last dimension."""
    chunks = []
    room = max(1, int(batch_size))
    for n in reversed(shape):
        c = max(1, min(n, room))
        chunks.append(c)
        room = max(1, room // c)
    return tuple(reversed(chunks))


SCHEMES = {
    "sobol": ("N x (2D + 2)", "Saltelli's scheme with second-order indices"),
    "morris": ("N x (D + 1)", "N trajectories of D + 1 points"),
    "lhs": ("N", "a Latin hypercube"),
}


def sample_count(sampler: str, n_keys: int, n: int) -> int:
    """The scenarios a sample of base size ``sweep.n`` holds."""
    return {"sobol": n * (2 * n_keys + 2), "morris": n * (n_keys + 1), "lhs": n}[sampler]


def describe_sample(info: dict) -> str:
    """One line saying how many scenarios a sampled sweep has, and why."""
    d, n = len(info["names"]), info["n"]
    formula, what = SCHEMES[info["sampler"]]
    line = (
        f"sweep.sampler = {info['sampler']}: sweep.n = {n} (N), {d} key(s) (D): {formula} = "
        f"{sample_count(info['sampler'], d, n)} scenarios ({what})"
    )
    return line + (f"; note: {info['note']}" if info.get("note") else "")


def sample(sampler: str, bounds: dict, n: int, seed: int, notes: list | None = None) -> np.ndarray:
    """Draw SALib's sample for ``problem = {names: keys, bounds}``: rows are scenarios.
    SALib's and SciPy's warnings are not printed: ``notes`` gets our one line instead."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = _draw(sampler, bounds, n, seed)
    if caught and notes is not None and sampler == "sobol" and n & (n - 1):
        low = 1 << (n.bit_length() - 1)
        notes.append(f"Sobol' points balance only when sweep.n is a power of 2 (e.g. {low} or {2 * low})")
    elif caught and notes is not None:
        notes.append(str(caught[0].message).splitlines()[0])
    return rows


def _draw(sampler: str, bounds: dict, n: int, seed: int) -> np.ndarray:
    problem = {"num_vars": len(bounds), "names": list(bounds), "bounds": [list(map(float, b)) for b in bounds.values()]}
    if sampler == "sobol":
        from SALib.sample import sobol

        return sobol.sample(problem, n, calc_second_order=True, seed=seed)
    if sampler == "morris":
        from SALib.sample import morris

        return morris.sample(problem, n, num_levels=4, seed=seed)
    from SALib.sample import latin

    return latin.sample(problem, n, seed=seed)


def make_plan(cfg, batch_size: int, table: dict | None = None, chunks: tuple | None = None) -> Plan:
    """The plan of a config (typed or OmegaConf) (``sweep.grid``, ``sweep.sampler``, or the
    scenario ``table`` read from ``sweep.table``: key -> one value per scenario);
    ``chunks`` (from an existing store) overrides ``batch_size``."""
    if (cfg.sweep.table is not None) != (table is not None):
        raise ValueError("make_plan: give the scenario table exactly when sweep.table is set")
    plan = _plan(cfg, batch_size, table)
    if chunks is not None and plan.shape:
        plan = Plan(plan.kind, plan.keys, plan.dims, plan.shape, tuple(chunks), plan.values, plan.sampler)
    return plan


def _plan(cfg, batch_size: int, table: dict | None) -> Plan:
    sweep = cfg.sweep
    if table is not None:
        values = table
        keys = tuple(values)
        shape = (len(next(iter(values.values()))),)
        return Plan("table", keys, ("scenario",), shape, block_chunks(shape, batch_size), values)
    if sweep.sampler is not None:
        bounds = {k: list(v) for k, v in sweep.bounds.items()}
        for key in bounds:
            if key in STRING_KEYS:
                raise UserError(f"sweep.bounds.{key}: a text key cannot be sampled; allowed: numeric keys")
        notes: list = []
        rows = sample(sweep.sampler, bounds, int(sweep.n), int(sweep.seed), notes)
        keys = tuple(bounds)
        values = {k: rows[:, q].astype(np.float64) for q, k in enumerate(keys)}
        shape = (rows.shape[0],)
        info = {
            "sampler": sweep.sampler,
            "names": list(keys),
            "bounds": list(bounds.values()),
            "n": int(sweep.n),
            "seed": int(sweep.seed),
        }
        if notes:
            info["note"] = notes[0]
        return Plan("sample", keys, ("sample",), shape, block_chunks(shape, batch_size), values, info)
    grid = dict(sweep.grid)
    if not grid:
        return Plan("single", (), (), (), (), {})
    keys = tuple(grid)
    values = {
        k: _as_array(k, [v] if isinstance(v, str) or not isinstance(v, Sequence) else list(v)) for k, v in grid.items()
    }
    shape = tuple(len(values[k]) for k in keys)
    return Plan("grid", keys, keys, shape, block_chunks(shape, batch_size), values)
