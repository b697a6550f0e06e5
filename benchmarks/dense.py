"""The benchmarks' baseline: docs/model.md's production-constrained gravity, dense and in float64,
as a NumPy user would write it (every origin row against every destination)."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088


def dense_gravity(lat, lon, population, is_core, mode: dict, rows: int) -> np.ndarray:
    """docs/model.md's core of the first ``rows`` origins for one mode (``mode``: its keys)."""
    idx = np.arange(rows)
    phi, lam = np.radians(lat), np.radians(lon)
    h = (
        np.sin((phi[None, :] - phi[idx, None]) / 2) ** 2
        + np.cos(phi[idx])[:, None] * np.cos(phi)[None, :] * np.sin((lam[None, :] - lam[idx, None]) / 2) ** 2
    )
    t = 60 * mode["circuity"] * 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) / mode["speed_kmh"]
    reach = t <= mode["cap_min"]
    reach[idx, idx] = False

    def f(time):
        if mode["decay"] == "power":
            return np.maximum(time, mode["min_time_min"]) ** (-mode["beta"])
        return np.exp(-mode["beta"] * time)

    w = np.where(reach, population[None, :] ** mode["gamma"] * f(t), 0.0)
    w_self = population[idx] ** mode["gamma"] * f(mode["self_time_min"]) if mode["self_time_min"] else 0.0
    s = w / (w_self + w.sum(axis=1))[:, None]
    _ = (population[idx, None] * s).sum(axis=0)  # the inflows, as the kernels compute them
    s_core = np.where(reach & is_core[None, :], s, -1.0)
    best = s_core.argmax(axis=1)
    best_share = s_core[idx, best]
    core = np.where(best_share >= mode["threshold"], best, -1)
    core[is_core[:rows]] = idx[is_core[:rows]]
    return core
