"""Plain iterative proportional fitting (Furness) of the doubly-constrained model on an
asymmetric travel-time table, whose balanced table is not symmetric (the symmetric case:
:mod:`agglo.kernels.doubly`)."""

import numpy as np

from agglo.kernels.doubly import IPF_MAX_ITER, IPF_TOL, _deterrence_pairs, _pair_sums
from agglo.kernels.jit import inlined, strict


@inlined
def _widest(ends):
    """Per town, the longest reachable prefix over the scenarios."""
    widest = np.zeros(ends.shape[1], dtype=np.int64)
    for s in range(ends.shape[0]):
        for i in range(ends.shape[1]):
            widest[i] = max(widest[i], ends[s, i])
    return widest


@inlined
def _row_error(a, sums, weight, self_f, support):
    """max_i |A_i m_i - 1| over towns with a pair (m_i: the row sum with the self pair); inf
    when a factor or a row sum left the floats (no balanced table)."""
    worst = 0.0
    for i in range(a.shape[0]):
        if not support[i]:
            continue
        m = sums[i] + weight[i] * self_f
        if not (0.0 < m < np.inf and 0.0 < a[i] < np.inf):
            return np.inf
        worst = max(worst, abs(a[i] * m - 1.0))
    return worst if np.isfinite(worst) else np.inf


@inlined
def _factors(out, sums, weight, self_f):
    """out_i = 1 / (sums_i + weight_i · self_f), 0 where that sum is not positive."""
    for i in range(out.shape[0]):
        m = sums[i] + weight[i] * self_f
        out[i] = 1.0 / m if m > 0.0 else 0.0


@inlined
def _weighted(weight, factor, population):
    """weight = factor · population, per scenario and town."""
    for s in range(weight.shape[0]):
        for i in range(weight.shape[1]):
            weight[s, i] = factor[s, i] * population[i]


@strict
def furness_group(rows, cols, places, terms, group, ends_out, ends_in):
    """Furness for the scenarios ``group`` of ``terms`` (they share f, as for
    :func:`~agglo.kernels.doubly.balance_group`); ``ends_out`` / ``ends_in`` (S, N): the
    reachable prefixes of the outgoing ``rows`` and the incoming ``cols``. Each round: the
    row sums m_i at the current B give the row error (:func:`_row_error`; the columns hold
    exactly after every round); below IPF_TOL, after IPF_MAX_ITER rounds or when it is inf
    it stops; else A = 1 / m and B = 1 / Σ_i f_ij A_i O_i (+ the self pair), every sum
    along a row in row order. Returns (A, B, inflow, rounds, error), inflow_j = B_j D_j Σ_i A_i O_i f_ij."""
    population = places.population
    n_scen, n = ends_out.shape
    s0 = group[0]
    no_narrow = np.empty(0, dtype=np.uint16)
    f_out = _deterrence_pairs(rows, places, terms, s0, _widest(ends_out), no_narrow)
    f_in = _deterrence_pairs(cols, places, terms, s0, _widest(ends_in), no_narrow)
    self_f = np.exp(terms.self_log_f[s0]) if terms.has_self[s0] else 0.0
    a = np.zeros((n_scen, n))
    b = np.ones((n_scen, n))
    weight = np.empty((n_scen, n))
    sums = np.zeros((n_scen, n))
    into = np.zeros((n_scen, n))
    active = np.ones(n_scen, dtype=np.bool_)
    support = np.zeros((n_scen, n), dtype=np.bool_)  # towns with a pair (first round's row sums > 0)
    rounds = np.zeros(n_scen, dtype=np.int64)
    error = np.full(n_scen, np.inf)
    for it in range(IPF_MAX_ITER + 1):
        _weighted(weight, b, population)
        _pair_sums(rows, rows.neighbour, f_out, ends_out, weight, active, sums)
        for s in range(n_scen):
            if not active[s]:
                continue
            if it > 0:
                error[s] = _row_error(a[s], sums[s], weight[s], self_f, support[s])
                if error[s] < IPF_TOL or rounds[s] == IPF_MAX_ITER or not error[s] < np.inf:
                    active[s] = False  # A, B and the column sums of the last round stay
                    continue
            _factors(a[s], sums[s], weight[s], self_f)
            if it == 0:
                for i in range(n):
                    support[s, i] = a[s, i] > 0.0
            rounds[s] += 1
        if not active.any():
            break
        _weighted(weight, a, population)
        _pair_sums(cols, cols.neighbour, f_in, ends_in, weight, active, into)
        for s in range(n_scen):
            if not active[s]:
                continue
            _factors(b[s], into[s], weight[s], self_f)
    inflow = np.zeros((n_scen, n))
    for s in range(n_scen):
        for j in range(n):
            inflow[s, j] = b[s, j] * population[j] * into[s, j]
    return a, b, inflow, rounds, error
