"""A batch of scenarios as typed arrays: a resolved config plus the swept values of the batch.

:func:`batch_parameters` gives a :class:`ScenarioBatch`: per mode a
:class:`agglo.kernels.ModeParams` (one value per scenario, docs/model.md's names), the borders
and the core size rule per scenario. The kernels read these arrays as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.config.schema import AggloConfig
from agglo.kernels import DECAY_CODES, ModeParams
from agglo.kernels.reach import reach_km_of
from agglo.kernels.records import take

MODEL_CODES = {"gravity": 0, "attraction": 1, "doubly": 2, "radiation": 3}
CODES = {"decay": DECAY_CODES, "model": MODEL_CODES}


def models_used(params) -> dict:
    """mode -> the names of the models its scenarios use (in code order)."""
    names = {code: name for name, code in MODEL_CODES.items()}
    return {mode: [names[int(c)] for c in np.unique(params.mode(mode).model)] for mode in MODES}


@dataclass(frozen=True)
class ScenarioBatch:
    commute: ModeParams
    freight: ModeParams
    closed: np.ndarray  # (S,) bool: borders = closed
    core_min_population: np.ndarray  # (S,) float64

    @property
    def n_scenarios(self) -> int:
        return int(self.closed.shape[0])

    def mode(self, name: str) -> ModeParams:
        return getattr(self, name)

    def take(self, index) -> ScenarioBatch:
        """The scenarios ``index`` (a slice or an integer array)."""
        return ScenarioBatch(
            commute=take(self.commute, index),
            freight=take(self.freight, index),
            closed=np.ascontiguousarray(self.closed[index]),
            core_min_population=np.ascontiguousarray(self.core_min_population[index]),
        )


def batch_parameters(cfg: AggloConfig, swept: dict, n_scenarios: int) -> ScenarioBatch:
    """Per-scenario arrays: the config's values, replaced by the swept ones (``swept`` maps
    a dotted key such as ``commute.cap_min`` to one value per scenario)."""

    def column(key: str, base, dtype):
        if key in swept:
            return np.asarray(swept[key])
        return np.full(n_scenarios, base, dtype=dtype)

    modes = {}
    for mode in MODES:
        mc = cfg.mode(mode)
        values = {}
        for name in ModeParams._fields:
            base = getattr(mc, name)
            key = f"{mode}.{name}"
            if name in CODES:
                values[name] = np.asarray([CODES[name][str(v)] for v in column(key, base, object)], dtype=np.int8)
            else:
                value = np.nan if base is None else float(base)
                values[name] = column(key, value, np.float64).astype(np.float64)
        if mc.travel_times is not None:  # t = time_factor · minutes, as 60 · circuity · d / speed_kmh reads it
            values["circuity"] = column(f"{mode}.time_factor", float(mc.time_factor), np.float64).astype(np.float64)
            values["speed_kmh"] = np.full(n_scenarios, 60.0)
        modes[mode] = ModeParams(**values)
    borders = column("borders", cfg.borders, object)
    core_min = column("cores.min_population", float(cfg.cores.min_population), np.float64)
    return ScenarioBatch(
        commute=modes["commute"],
        freight=modes["freight"],
        closed=np.asarray([str(b) == "closed" for b in borders], dtype=np.bool_),
        core_min_population=core_min.astype(np.float64),
    )


def reach_radius_km(mode: ModeParams) -> np.ndarray:
    """Per scenario, the distance its cap reaches (:func:`~agglo.kernels.reach.reach_km_of`;
    on a travel-time table: the table's minutes it reaches, cap_min / time_factor)."""
    return reach_km_of(mode.cap_min, mode.speed_kmh, mode.circuity)


def widened(km: float) -> float:
    """A reach widened by a relative 1e-9, so that rounding never drops a pair that the
    exact test in the kernel keeps."""
    return km * (1.0 + 1e-9) + 1e-9


def reach_radii(batch: ScenarioBatch) -> dict:
    """Per mode, the largest distance its scenarios reach (:func:`reach_radius_km`), widened
    by a relative 1e-9 so that rounding never drops a pair that the exact test in the kernel keeps.
    """
    radii = {}
    for mode in MODES:
        radii[mode] = widened(float(np.max(reach_radius_km(batch.mode(mode)))))
    return radii


def core_mask(population: np.ndarray, forced_core: np.ndarray, core_min_population: np.ndarray) -> np.ndarray:
    """(S, N) bool: docs/model.md's cores of each scenario (size rule or forced)."""
    is_core = (population[None, :] >= core_min_population[:, None]) | forced_core[None, :]
    return np.ascontiguousarray(is_core)
