"""The best reachable core of a town (docs/model.md, "Cores and assignment").

``j* = argmax_{j in R(i), j a core} s_ij`` (exact ties: the lower town index). The share's
denominator is the same for every j of a row, so the argmax is taken on the float64
log-weight ``gamma · log mass_j + log f(t_ij)`` (mass: the destination mass, the population
unless the town table gives one; for the attraction and doubly models the population plus a
destination term), among the row's candidate cores only (``Rows.cand_*``:
the neighbours that are cores in some scenario of the run), from their stored float64
distances. The bodies are branch-free: which candidate wins is data, not a branch.
"""

import numpy as np

from agglo.kernels.gravity.terms import log_deterrence_km
from agglo.kernels.jit import inlined, prange, strict_parallel


@inlined
def _candidate_log_f(rows, c, terms, s):
    return log_deterrence_km(
        rows.cand_logd[c],
        rows.cand_d[c],
        terms.decay[s],
        terms.beta[s],
        terms.min_per_km[s],
        terms.log_min_per_km[s],
        terms.log_min_time[s],
    )


@inlined
def _takes(ok, lw, j, best_lw, best):
    """docs/model.md's rule for the best core so far: a larger log-weight, or an equal one at
    a lower town index (``best`` starts past the last town, ``best_lw`` at -inf)."""
    return ok & ((lw > best_lw) | ((lw == best_lw) & (j < best)))


@inlined
def best_core(rows, places, i, s, end, is_core, terms):
    """(j*, its log-weight) for origin ``i`` in scenario ``s`` among the first ``end`` pairs
    of its row; (-1, -inf) when no core is reachable."""
    n_towns = places.log_pop.shape[0]
    best = n_towns
    best_lw = -np.inf
    home = places.region[i]
    opened = terms.opened[s]
    gamma = terms.gamma[s]
    cand_pos, cand_town, log_mass, region = rows.cand_pos, rows.cand_town, places.log_mass, places.region
    cand_logd, cand_d = rows.cand_logd, rows.cand_d
    decay, beta = terms.decay[s], terms.beta[s]
    min_per_km, log_min_per_km, log_min_time = terms.min_per_km[s], terms.log_min_per_km[s], terms.log_min_time[s]
    for c in range(rows.cand_offsets[i], rows.cand_offsets[i + 1]):
        if cand_pos[c] >= end:
            break
        j = cand_town[c]
        log_f = log_deterrence_km(cand_logd[c], cand_d[c], decay, beta, min_per_km, log_min_per_km, log_min_time)
        lw = gamma * log_mass[j] + log_f
        take = _takes(is_core[s, j] & (opened | (region[j] == home)), lw, j, best_lw, best)
        best = j if take else best
        best_lw = lw if take else best_lw
    if best == n_towns:
        return -1, -np.inf
    return best, best_lw


@inlined
def best_cores_all(rows, places, i, ends, core_t, terms, best, best_lw):
    """:func:`best_core` for every scenario at once into ``best``/``best_lw``, the scenario
    loop innermost (``core_t`` is is_core transposed): the same float64 operations, the
    same candidates in the same order, the same rule; a candidate is looked at only for
    the scenarios before the trailing ones whose reach has ended (see batch_sums)."""
    n_scen = ends.shape[0]
    n_towns = places.log_pop.shape[0]
    qmax = 0
    for s in range(n_scen):
        best[s] = n_towns
        best_lw[s] = -np.inf
        qmax = max(qmax, ends[s])
    home = places.region[i]
    gamma, beta = terms.gamma, terms.beta
    min_per_km, log_min_per_km, log_min_time = terms.min_per_km, terms.log_min_per_km, terms.log_min_time
    decay, opened = terms.decay, terms.opened
    n_active = n_scen
    for c in range(rows.cand_offsets[i], rows.cand_offsets[i + 1]):
        q = rows.cand_pos[c]
        if q >= qmax:
            break
        while ends[n_active - 1] <= q:  # trailing scenarios whose reach has ended (see batch_sums)
            n_active -= 1
        j = rows.cand_town[c]
        lp = places.log_mass[j]
        ld = rows.cand_logd[c]
        d = rows.cand_d[c]
        same = places.region[j] == home
        is_core = core_t[j]
        for s in range(n_active):
            log_f = log_deterrence_km(ld, d, decay[s], beta[s], min_per_km[s], log_min_per_km[s], log_min_time[s])
            lw = gamma[s] * lp + log_f
            take = _takes((q < ends[s]) & is_core[s] & (opened[s] | same), lw, j, best_lw[s], best[s])
            best[s] = j if take else best[s]
            best_lw[s] = lw if take else best_lw[s]
    for s in range(n_scen):
        if best[s] == n_towns:
            best[s] = -1


@strict_parallel
def best_core_by_destination(rows, places, reach, is_core, terms, dest_term, origin_term):
    """For every origin and scenario: the reachable core j maximising
    log s_ij = log population_j + log f(t_ij) + dest_term[s, j] + origin_term[s, i]
    (ties: lower index), for the attraction and doubly models. Returns best_core (S, N)
    int32 and best_share (S, N) float64."""
    n_scen = reach.shape[0]
    n_towns = places.log_pop.shape[0]
    best_core = np.full((n_scen, n_towns), -1, dtype=np.int32)
    best_share = np.zeros((n_scen, n_towns), dtype=np.float64)
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            for s in range(n_scen):
                end = reach[s, i]
                best = n_towns
                best_lw = -np.inf
                for c in range(rows.cand_offsets[i], rows.cand_offsets[i + 1]):
                    if rows.cand_pos[c] >= end:
                        break
                    j = rows.cand_town[c]
                    if not is_core[s, j] or (terms.closed[s] and places.region[j] != places.region[i]):
                        continue
                    lw = places.log_pop[j] + _candidate_log_f(rows, c, terms, s)
                    lw = lw + dest_term[s, j]
                    # a core whose destination term is -inf (nothing reaches it) is never chosen
                    if _takes(lw > -np.inf, lw, j, best_lw, best):
                        best = j
                        best_lw = lw
                if best < n_towns:
                    best_core[s, i] = best
                    best_share[s, i] = np.exp(best_lw + origin_term[s, i])
    return best_core, best_share
