"""The other flow models of MODEL.md ("Other flow models"), over the same neighbourhood.

- ``attraction``: A_j = Σ_{i reaching j} population_i^alpha f(t_ij) is a row sum of the
  gravity kernel with alpha as the mass exponent and no self term (the engine calls
  :func:`agglo.kernels.gravity.origin_pass` for it); then s_ij = population_j ·
  population_i^(alpha-1) f(t_ij) / A_j, whose best core :func:`best_core_by_destination`
  finds.
- ``doubly``: T_ij = A_i O_i B_j D_j f(t_ij) balanced by iterative proportional fitting
  (:func:`doubly_ipf`), float64, gathers only (reachability is symmetric), so the result
  does not depend on the number of threads.
- ``radiation``: Simini et al. (2012), :func:`radiation_pass`.

Every kernel works one scenario at a time inside a batch; sums run in row order.
"""

import numpy as np

from agglo.kernels.geometry import haversine_km
from agglo.kernels.gravity import candidate_log_f, log_deterrence
from agglo.kernels.jit import prange, strict, strict_parallel

IPF_TOL = 1e-9
IPF_MAX_ITER = 1000


@strict_parallel
def best_core_by_destination(
    chunks,
    offsets,
    neighbour,
    reach,
    cand_offsets,
    cand_pos,
    cand_town,
    cand_logd,
    cand_d,
    region,
    closed,
    is_core,
    log_pop,
    dest_term,
    origin_term,
    circuity,
    speed,
    decay,
    beta,
    min_time,
):
    """For every origin and scenario: the reachable core j maximising
    log s_ij = log population_j + log f(t_ij) + dest_term[s, j] + origin_term[s, i]
    (ties: lower index). Returns best_core (S, N) int32 and best_share (S, N) float64."""
    n_scen = reach.shape[0]
    n_towns = log_pop.shape[0]
    best_core = np.full((n_scen, n_towns), -1, dtype=np.int32)
    best_share = np.zeros((n_scen, n_towns), dtype=np.float64)
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            for s in range(n_scen):
                scale = 60 * circuity[s] / speed[s]
                log_scale = np.log(scale)
                log_min = np.log(min_time[s])
                end = reach[s, i]
                best = -1
                best_lw = -np.inf
                for c in range(cand_offsets[i], cand_offsets[i + 1]):
                    if cand_pos[c] >= end:
                        break
                    j = cand_town[c]
                    if not is_core[s, j] or (closed[s] and region[j] != region[i]):
                        continue
                    lw = log_pop[j] + candidate_log_f(
                        c, cand_logd, cand_d, decay[s], beta[s], scale, log_scale, log_min
                    )
                    lw = lw + dest_term[s, j]
                    if lw > best_lw or (lw == best_lw and best >= 0 and j < best):
                        best = j
                        best_lw = lw
                best_core[s, i] = best
                if best >= 0:
                    best_share[s, i] = np.exp(best_lw + origin_term[s, i])
    return best_core, best_share


@strict
def _pair_f(ld, decay, beta, scale, log_scale, log_min):
    """f(t) in float64 from a float32 log-distance."""
    if decay == 0:
        return np.exp(-beta * max(np.float64(ld) + log_scale, log_min))
    return np.exp(-beta * (scale * np.exp(np.float64(ld))))


@strict_parallel
def _deterrence_pairs(chunks, offsets, neighbour, log_dist, region, closed, ends, decay, beta, scale, min_time):
    """f(t_ij) for the reachable pairs of one scenario (0 elsewhere)."""
    f = np.zeros(neighbour.shape[0], dtype=np.float64)
    log_scale = np.log(scale)
    log_min = np.log(min_time)
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = offsets[i]
            for q in range(ends[i]):
                if closed and region[neighbour[start + q]] != region[i]:
                    continue
                f[start + q] = _pair_f(log_dist[start + q], decay, beta, scale, log_scale, log_min)
    return f


@strict_parallel
def _weighted_row_sums(chunks, offsets, neighbour, f, ends, weight, self_f, out):
    """out[i] = Σ_{q < ends[i]} weight[neighbour] f + weight[i] self_f (a gather per row)."""
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = offsets[i]
            total = weight[i] * self_f
            for q in range(ends[i]):
                total += weight[neighbour[start + q]] * f[start + q]
            out[i] = total


@strict
def doubly_ipf(
    chunks, offsets, neighbour, log_dist, region, closed, ends, population, decay, beta, scale, min_time, self_time
):
    """Furness balancing of one scenario: T_ij = A_i O_i B_j D_j f(t_ij), O = D = population,
    the self pair included when ``self_time`` is not NaN.

    Order: B = 1; A = 1/R(B); then repeat: B = 1/C(A) (columns exact), R = R(B),
    error = max_i |A_i R_i - 1| over towns with any pair; stop when error < IPF_TOL
    (A kept, so the columns stay exact) or after IPF_MAX_ITER, else A = 1/R. When the
    factors overflow (no balanced table exists: a town's total exceeds what the towns it
    reaches can take) balancing stops with error = inf.
    Returns log A, log B (-inf for a town with no pair), iterations, error, f per pair,
    and f of the self pair.
    """
    n = population.shape[0]
    f = _deterrence_pairs(chunks, offsets, neighbour, log_dist, region, closed, ends, decay, beta, scale, min_time)
    self_f = 0.0
    if not np.isnan(self_time):
        self_f = np.exp(log_deterrence(self_time, decay, beta, min_time))
    b = np.ones(n)
    r = np.zeros(n)
    col = np.zeros(n)
    _weighted_row_sums(chunks, offsets, neighbour, f, ends, b * population, self_f, r)
    support = r > 0
    a = np.where(support, 1.0 / np.where(support, r, 1.0), 0.0)
    iterations = 0
    error = np.inf
    for it in range(1, IPF_MAX_ITER + 1):
        _weighted_row_sums(chunks, offsets, neighbour, f, ends, a * population, self_f, col)
        b = np.where(support, 1.0 / np.where(support, col, 1.0), 0.0)
        _weighted_row_sums(chunks, offsets, neighbour, f, ends, b * population, self_f, r)
        error = 0.0
        for i in range(n):
            if support[i]:
                if not (0.0 < a[i] < np.inf and 0.0 < b[i] < np.inf and 0.0 < r[i] < np.inf):
                    error = np.inf  # a factor left the floats: the balancing failed
                    break
                error = max(error, abs(a[i] * r[i] - 1.0))
        iterations = it
        if not np.isfinite(error):
            error = np.inf  # no balanced table exists (a town larger than all it reaches)
            break
        if error < IPF_TOL:
            break
        a = np.where(support, 1.0 / np.where(support, r, 1.0), 0.0)
    log_a = np.where(support, np.log(np.where(support, a, 1.0)), -np.inf)
    log_b = np.where(support, np.log(np.where(support, b, 1.0)), -np.inf)
    return log_a, log_b, iterations, error, f, self_f, a, b


@strict
def doubly_inflow(chunks, offsets, neighbour, f, ends, population, a, b):
    """inflow_j = Σ_{i != j} A_i O_i B_j D_j f_ij."""
    n = population.shape[0]
    col = np.zeros(n)
    _weighted_row_sums(chunks, offsets, neighbour, f, ends, a * population, 0.0, col)
    return b * population * col


@strict_parallel
def radiation_pass(
    chunks, offsets, neighbour, log_dist, lat, lon, region, closed, ends, population, is_core, circuity, speed
):
    """One scenario of the radiation model: s_ij = m_i n_j / ((m_i + S_ij)(m_i + n_j + S_ij))
    normalised over R(i), S_ij the population of the reachable towns strictly closer in
    travel time than j (ties are not closer: runs of equal time share one S).

    Returns share per pair (0 beyond reach), best core, its share, and n_reachable."""
    n = population.shape[0]
    share = np.zeros(neighbour.shape[0], dtype=np.float64)
    best_core = np.full(n, -1, dtype=np.int32)
    best_share = np.zeros(n, dtype=np.float64)
    count = np.zeros(n, dtype=np.int32)
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = offsets[i]
            m = population[i]
            closer = 0.0  # population of reachable towns strictly closer than the current run
            run = 0.0  # population of the current run of equal times
            prev_t = -1.0
            total = 0.0
            reached = 0
            for q in range(ends[i]):
                j = neighbour[start + q]
                if closed and region[j] != region[i]:
                    continue
                t = 60 * circuity * haversine_km(lat[i], lon[i], lat[j], lon[j]) / speed
                same_run = t == prev_t
                prev_t = t
                if not same_run:
                    closer += run
                    run = 0.0
                nj = population[j]
                w = m * nj / ((m + closer) * (m + nj + closer))
                share[start + q] = w
                total += w
                run += nj
                reached += 1
            count[i] = reached
            if total > 0:
                best = -1
                bw = -1.0
                for q in range(ends[i]):
                    w = share[start + q]
                    if w <= 0.0:
                        continue
                    w = w / total
                    share[start + q] = w
                    j = neighbour[start + q]
                    if is_core[j] and (w > bw or (w == bw and j < best)):
                        best = j
                        bw = w
                best_core[i] = best
                if best >= 0:
                    best_share[i] = bw
    return share, best_core, best_share, count


@strict
def scatter_inflow(offsets, neighbour, ends, population, share):
    """inflow_j = Σ_i population_i s_ij, in row order (one thread: deterministic)."""
    n = population.shape[0]
    inflow = np.zeros(n)
    for i in range(n):
        start = offsets[i]
        for q in range(ends[i]):
            inflow[neighbour[start + q]] += population[i] * share[start + q]
    return inflow
