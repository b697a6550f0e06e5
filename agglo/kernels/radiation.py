"""The radiation model (docs/model.md, "Other flow models", ``radiation``; Simini et al. 2012).

``s_ij = m_i n_j / ((m_i + S_ij)(m_i + n_j + S_ij))`` normalised over R(i), no self term,
``S_ij`` the population of the reachable towns (other than i, j) strictly closer to i in
travel time than j; towns at exactly the same time are not closer (a run of equal times
shares one S).
"""

import numpy as np

from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.reach import pair_minutes


@strict
def _raw_weights(rows, places, i, closed, end, circuity, speed_kmh, share):
    """Unnormalised weights of row i's first ``end`` pairs into ``share`` (0 across closed borders)."""
    start = rows.offsets[i]
    population = places.population
    m = population[i]
    closer = 0.0  # population of reachable towns strictly closer than the current run
    run = 0.0  # population of the current run of equal times
    prev_t = -1.0
    for q in range(end):
        j = rows.neighbour[start + q]
        if closed and places.region[j] != places.region[i]:
            continue
        t = pair_minutes(rows, places, i, start + q, circuity, speed_kmh)
        if t != prev_t:
            closer += run
            run = 0.0
        prev_t = t
        nj = population[j]
        w = m * nj / ((m + closer) * (m + nj + closer))
        share[start + q] = w
        run += nj


@strict_parallel
def radiation_batch(rows, places, closed, ends, is_core, circuity, speed_kmh):
    """Scenarios that differ only in their caps (``ends[s, i]``: row i's reachable prefix in
    scenario s; the same circuity, speed, borders and cores ``is_core``), in one pass.

    S_ij counts only towns closer than j, and every one of them lies in any prefix that
    holds j, so a pair's raw weight is the same in every scenario that reaches it: each
    row's weights are computed once over its widest prefix, with their running sum (the
    normalisation of a prefix ending at q) and the running best core by raw weight (ties to
    the lower town index); a scenario reads both at its own end. Returns the raw weight per
    pair (widest prefix, 0 elsewhere), the normalisation (S, N) (0 where nothing is
    reached), best core (S, N) and its share (S, N)."""
    n_scen, n = ends.shape
    weight = np.zeros(rows.neighbour.shape[0], dtype=np.float64)
    total = np.zeros((n_scen, n), dtype=np.float64)
    best_core = np.full((n_scen, n), -1, dtype=np.int32)
    best_share = np.zeros((n_scen, n), dtype=np.float64)
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        running = np.empty(rows.longest, dtype=np.float64)
        best_at = np.empty(rows.longest, dtype=np.int64)
        for i in range(chunks[ch], chunks[ch + 1]):
            w_end = 0
            for s in range(n_scen):
                w_end = max(w_end, ends[s, i])
            if w_end == 0:
                continue
            _raw_weights(rows, places, i, closed, w_end, circuity, speed_kmh, weight)
            start = rows.offsets[i]
            acc = 0.0
            best = -1
            bw = -1.0
            for q in range(w_end):
                w = weight[start + q]
                acc += w
                running[q] = acc
                j = rows.neighbour[start + q]
                if w > 0.0 and is_core[j] and (w > bw or (w == bw and j < rows.neighbour[start + best])):
                    best = q
                    bw = w
                best_at[q] = best
            for s in range(n_scen):
                e = ends[s, i]
                if e == 0 or not running[e - 1] > 0.0:
                    continue
                total[s, i] = running[e - 1]
                b = best_at[e - 1]
                if b >= 0:
                    best_core[s, i] = rows.neighbour[start + b]
                    best_share[s, i] = weight[start + b] / running[e - 1]
    return weight, total, best_core, best_share


@strict_parallel
def batch_inflow(rows, places, ends, weight, total):
    """inflow[s, j] = Σ_i population_i s_ij over scenario s's prefixes, s_ij = weight / total[s, i];
    one thread per scenario, each adding in row order (deterministic)."""
    n_scen, n = ends.shape
    population = places.population
    inflow = np.zeros((n_scen, n))
    for s in prange(n_scen):
        out = inflow[s]
        for i in range(n):
            t = total[s, i]
            if not t > 0.0:
                continue
            start = rows.offsets[i]
            pi = population[i]
            for q in range(ends[s, i]):
                out[rows.neighbour[start + q]] += pi * (weight[start + q] / t)
    return inflow
