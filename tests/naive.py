"""Plain NumPy twin of the kernels, written from shared/MODEL.md alone.

Dense N x N, float64, no neighbourhood, no log-space: the formulas as the model
states them. Slow on purpose; the kernels must agree with it.
"""

import numpy as np

R_KM = 6371.0088


def travel_min(lat, lon, circuity, speed_kmh):
    phi = np.radians(lat)
    lam = np.radians(lon)
    dphi = phi[None, :] - phi[:, None]
    dlam = lam[None, :] - lam[:, None]
    h = np.sin(dphi / 2) ** 2 + np.cos(phi)[:, None] * np.cos(phi)[None, :] * np.sin(dlam / 2) ** 2
    d = 2 * R_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return 60 * circuity * d / speed_kmh


def deterrence(t, decay, beta, min_time):
    t = np.asarray(t, dtype=np.float64)
    if decay == "power":
        return np.maximum(t, min_time) ** (-beta)
    return np.exp(-beta * t)


def scenario(lat, lon, population, region, is_core, mode: dict, closed: bool):
    """One mode of one scenario. ``mode`` holds MODEL.md's keys (speed_kmh, cap_min, ...)."""
    n = len(population)
    t = travel_min(lat, lon, mode["circuity"], mode["speed_kmh"])
    reach = (t <= mode["cap_min"]) & ~np.eye(n, dtype=bool)
    if closed:
        reach &= region[:, None] == region[None, :]
    w = np.where(reach, population[None, :] ** mode["gamma"] * deterrence(t, mode["decay"], mode["beta"], mode["min_time_min"]), 0.0)
    if mode["self_time_min"] is None:
        w_self = np.zeros(n)
    else:
        w_self = population ** mode["gamma"] * deterrence(mode["self_time_min"], mode["decay"], mode["beta"], mode["min_time_min"])
    denom = w_self + w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(reach, w / denom[:, None], 0.0)
    inflow = (population[:, None] * s).sum(axis=0)

    core = np.full(n, -1, dtype=np.int64)
    share = np.full(n, np.nan)
    for i in range(n):
        if is_core[i]:
            core[i] = i
            share[i] = 1.0
            continue
        candidates = np.flatnonzero(reach[i] & is_core)
        if candidates.size == 0:
            continue
        best = candidates[np.argmax(s[i, candidates])]  # argmax: first (lowest index) of ties
        share[i] = s[i, best]
        if s[i, best] >= mode["threshold"]:
            core[i] = best
    agglo = np.zeros(n)
    for c in np.flatnonzero(is_core):
        agglo[c] = population[c] + population[(core == c) & ~is_core].sum()
    small = ~is_core
    covered = small & (core >= 0)
    coverage = population[covered].sum() / population[small].sum() if small.any() else np.nan
    n_agg = sum(1 for c in np.flatnonzero(is_core) if ((core == c) & ~is_core).any())
    return {
        "core": core,
        "share": share,
        "n_reachable": reach.sum(axis=1),
        "inflow": inflow,
        "agglo_population": agglo,
        "coverage": coverage,
        "n_agglomerations": n_agg,
        "s": s,
        "s_self": np.where(denom > 0, w_self / np.where(denom > 0, denom, 1.0), np.nan),
        "travel_min": t,
    }
