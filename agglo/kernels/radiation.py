"""The radiation model (MODEL.md, "Other flow models", ``radiation``; Simini et al. 2012).

``s_ij = m_i n_j / ((m_i + S_ij)(m_i + n_j + S_ij))`` normalised over R(i), no self term,
``S_ij`` the population of the reachable towns (other than i, j) strictly closer to i in
travel time than j; towns at exactly the same time are not closer (a run of equal times
shares one S).
"""

import numpy as np

from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.reach import travel_minutes


@strict
def _raw_weights(rows, places, i, closed, ends, circuity, speed_kmh, share):
    """Unnormalised weights of row i into ``share``; returns (their sum, |R(i)|)."""
    start = rows.offsets[i]
    population = places.population
    m = population[i]
    closer = 0.0  # population of reachable towns strictly closer than the current run
    run = 0.0  # population of the current run of equal times
    prev_t = -1.0
    total = 0.0
    reached = 0
    for q in range(ends[i]):
        j = rows.neighbour[start + q]
        if closed and places.region[j] != places.region[i]:
            continue
        t = travel_minutes(places, i, j, circuity, speed_kmh)
        if t != prev_t:
            closer += run
            run = 0.0
        prev_t = t
        nj = population[j]
        w = m * nj / ((m + closer) * (m + nj + closer))
        share[start + q] = w
        total += w
        run += nj
        reached += 1
    return total, reached


@strict_parallel
def radiation_pass(rows, places, closed, ends, is_core, circuity, speed_kmh):
    """One scenario: share per pair (0 beyond reach), best core, its share, |R(i)|."""
    n = places.population.shape[0]
    share = np.zeros(rows.neighbour.shape[0], dtype=np.float64)
    best_core = np.full(n, -1, dtype=np.int32)
    best_share = np.zeros(n, dtype=np.float64)
    count = np.zeros(n, dtype=np.int32)
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            total, reached = _raw_weights(rows, places, i, closed, ends, circuity, speed_kmh, share)
            count[i] = reached
            if total <= 0:
                continue
            start = rows.offsets[i]
            best = -1
            bw = -1.0
            for q in range(ends[i]):
                w = share[start + q]
                if w <= 0.0:
                    continue
                w = w / total
                share[start + q] = w
                j = rows.neighbour[start + q]
                if is_core[j] and (w > bw or (w == bw and j < best)):
                    best = j
                    bw = w
            best_core[i] = best
            if best >= 0:
                best_share[i] = bw
    return share, best_core, best_share, count


@strict
def scatter_inflow(rows, places, ends, share):
    """inflow_j = Σ_i population_i s_ij, in row order (one thread: deterministic)."""
    population = places.population
    inflow = np.zeros(population.shape[0])
    for i in range(population.shape[0]):
        start = rows.offsets[i]
        for q in range(ends[i]):
            inflow[rows.neighbour[start + q]] += population[i] * share[start + q]
    return inflow
