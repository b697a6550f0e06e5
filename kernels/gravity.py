"""Production-constrained gravity shares over a neighbourhood, for a batch of scenarios.

Notes
-----
MODEL.md, "Shares" and "Deterrence"::

    w_ij = population_j ^ gamma · f(t_ij)            j in R(i)
    w_ii = population_i ^ gamma · f(self_time_min)   (absent when self_time_min is null)
    s_ij = w_ij / (w_ii + Σ_k w_ik)
    power: f(t) = max(t, min_time_min) ^ -beta;  exponential: f(t) = exp(-beta t)

Weights are handled as logarithms shifted by their row maximum, so that
``s_ij = exp(lw_ij - max) / Σ exp(lw_ik - max)``: the same ratio, without the
overflow of ``population ^ gamma`` or the underflow of ``exp(-beta t)``.

Both passes walk a town's neighbourhood row, which is sorted by distance, and stop
at the first town beyond the cap (``t`` grows with ``d``). The scenario loop is
inside the town loop, so a row is loaded once for the whole batch. Every sum runs in
row order, whatever the number of threads or the batch: results are bit-identical.
"""

import numpy as np

from kernels.jit import parallel, prange, serial

DECAY_CODES = {"power": 0, "exponential": 1}


@serial
def _log_deterrence(t, log_t, decay, beta, min_time):
    """log f(t); ``log_t`` is log(t) (may be -inf for t = 0)."""
    if decay == 0:
        if t < min_time:
            return -beta * np.log(min_time)
        return -beta * log_t
    return -beta * t


@serial
def _self_log_weight(log_pop_i, self_time, decay, beta, gamma, min_time):
    return gamma * log_pop_i + _log_deterrence(self_time, np.log(self_time), decay, beta, min_time)


@parallel
def origin_pass(
    chunks,
    offsets,
    neighbour,
    dist_km,
    log_dist,
    log_pop,
    region,
    closed,
    is_core,
    circuity,
    speed,
    cap,
    decay,
    beta,
    gamma,
    self_time,
    min_time,
):
    """Per origin town and scenario: reach count, log-shift, denominator, best core.

    Parameters are per scenario (length S) except the town and neighbourhood arrays;
    ``chunks`` splits the towns into ranges of about equal pair count.

    Returns ``n_reachable`` (S, N) int32, ``shift`` (S, N) float64 (the row maximum of
    the log weights), ``denominator`` (S, N) float64 (Σ exp(lw - shift), self term
    included), ``best_core`` (S, N) int32 (-1: no core reachable) and
    ``best_weight`` (S, N) float64 (exp(lw - shift) of that core).
    """
    n_scen = cap.shape[0]
    n_towns = log_pop.shape[0]
    n_reachable = np.zeros((n_scen, n_towns), dtype=np.int32)
    shift = np.zeros((n_scen, n_towns), dtype=np.float64)
    denominator = np.zeros((n_scen, n_towns), dtype=np.float64)
    best_core = np.full((n_scen, n_towns), -1, dtype=np.int32)
    best_weight = np.zeros((n_scen, n_towns), dtype=np.float64)
    longest = 0
    for i in range(n_towns):
        longest = max(longest, offsets[i + 1] - offsets[i])
    for c in prange(chunks.shape[0] - 1):
        log_w = np.empty(longest, dtype=np.float64)
        inside = np.empty(longest, dtype=np.bool_)
        for i in range(chunks[c], chunks[c + 1]):
            start = offsets[i]
            stop = offsets[i + 1]
            for s in range(n_scen):
                minutes_scale = 60.0 * circuity[s]
                log_scale = np.log(minutes_scale / speed[s])
                has_self = not np.isnan(self_time[s])
                top = -np.inf
                if has_self:
                    top = _self_log_weight(log_pop[i], self_time[s], decay[s], beta[s], gamma[s], min_time[s])
                count = 0
                end = start
                while end < stop:
                    t = minutes_scale * dist_km[end] / speed[s]
                    if t > cap[s]:
                        break
                    j = neighbour[end]
                    q = end - start
                    if closed[s] and region[j] != region[i]:
                        inside[q] = False
                    else:
                        inside[q] = True
                        lw = gamma[s] * log_pop[j] + _log_deterrence(
                            t, log_dist[end] + log_scale, decay[s], beta[s], min_time[s]
                        )
                        log_w[q] = lw
                        top = max(top, lw)
                        count += 1
                    end += 1
                n_reachable[s, i] = count
                if count == 0 and not has_self:
                    continue
                total = 0.0
                if has_self:
                    total = np.exp(
                        _self_log_weight(log_pop[i], self_time[s], decay[s], beta[s], gamma[s], min_time[s]) - top
                    )
                best = -1
                best_w = -1.0
                for q in range(end - start):
                    if not inside[q]:
                        continue
                    w = np.exp(log_w[q] - top)
                    total += w
                    j = neighbour[start + q]
                    if is_core[s, j] and (w > best_w or (w == best_w and j < best)):
                        best = j
                        best_w = w
                shift[s, i] = top
                denominator[s, i] = total
                best_core[s, i] = best
                if best >= 0:
                    best_weight[s, i] = best_w
    return n_reachable, shift, denominator, best_core, best_weight


@parallel
def inflow_pass(
    chunks,
    offsets,
    neighbour,
    dist_km,
    log_dist,
    log_pop,
    population,
    region,
    closed,
    circuity,
    speed,
    cap,
    decay,
    beta,
    gamma,
    min_time,
    shift,
    denominator,
):
    """inflow_j = Σ_{i: j in R(i)} population_i · s_ij, per scenario (S, N) float64.

    Reachability is symmetric (t_ij = t_ji, same region), so town j gathers from its
    own row instead of every origin scattering into it: no write is shared by threads.
    """
    n_scen = cap.shape[0]
    n_towns = log_pop.shape[0]
    inflow = np.zeros((n_scen, n_towns), dtype=np.float64)
    for c in prange(chunks.shape[0] - 1):
        for j in range(chunks[c], chunks[c + 1]):
            start = offsets[j]
            stop = offsets[j + 1]
            for s in range(n_scen):
                minutes_scale = 60.0 * circuity[s]
                log_scale = np.log(minutes_scale / speed[s])
                acc = 0.0
                for p in range(start, stop):
                    t = minutes_scale * dist_km[p] / speed[s]
                    if t > cap[s]:
                        break
                    i = neighbour[p]
                    if closed[s] and region[j] != region[i]:
                        continue
                    lw = gamma[s] * log_pop[j] + _log_deterrence(
                        t, log_dist[p] + log_scale, decay[s], beta[s], min_time[s]
                    )
                    acc += population[i] * (np.exp(lw - shift[s, i]) / denominator[s, i])
                inflow[s, j] = acc
    return inflow


@parallel
def pair_shares(
    chunks,
    offsets,
    neighbour,
    dist_km,
    log_dist,
    log_pop,
    region,
    closed,
    circuity,
    speed,
    cap,
    decay,
    beta,
    gamma,
    self_time,
    min_time,
    shift,
    denominator,
):
    """One scenario's shares ``s_ij`` for every neighbourhood pair (0 where j is not in
    R(i)), travel times, and the home shares ``s_ii`` (0 without a self term, NaN for a
    town with no reach and no self term). Scalars are this scenario's parameters;
    ``shift``/``denominator`` come from :func:`origin_pass`."""
    n_towns = log_pop.shape[0]
    share = np.zeros(neighbour.shape[0], dtype=np.float64)
    travel = np.empty(neighbour.shape[0], dtype=np.float64)
    home = np.zeros(n_towns, dtype=np.float64)
    minutes_scale = 60.0 * circuity
    log_scale = np.log(minutes_scale / speed)
    for c in prange(chunks.shape[0] - 1):
        for i in range(chunks[c], chunks[c + 1]):
            if denominator[i] == 0.0:
                home[i] = np.nan
            elif not np.isnan(self_time):
                home[i] = (
                    np.exp(_self_log_weight(log_pop[i], self_time, decay, beta, gamma, min_time) - shift[i])
                    / denominator[i]
                )
            for p in range(offsets[i], offsets[i + 1]):
                t = minutes_scale * dist_km[p] / speed
                travel[p] = t
                if t > cap:
                    continue
                j = neighbour[p]
                if closed and region[j] != region[i]:
                    continue
                lw = gamma * log_pop[j] + _log_deterrence(t, log_dist[p] + log_scale, decay, beta, min_time)
                share[p] = np.exp(lw - shift[i]) / denominator[i]
    return share, travel, home
