"""The doubly-constrained gravity model (MODEL.md, "Other flow models", ``doubly``).

``T_ij = A_i O_i B_j D_j f(t_ij)`` over the reachable pairs (and the self pair when
``self_time_min`` is set), ``O = D = population``, balanced in float64 by the symmetric form
of iterative proportional fitting (see :func:`doubly_ipf`). Every sum gathers along a row in
row order (reachability is symmetric, so a column sum is a row sum), so the result does not
depend on the threads.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.terms import log_deterrence, log_deterrence_km

IPF_TOL = 1e-9
IPF_MAX_ITER = 1000


class Balance(NamedTuple):
    a: np.ndarray  # (N,) A_i (0 for a town with no pair)
    b: np.ndarray  # (N,) B_j
    log_a: np.ndarray  # (N,) log A_i (-inf for a town with no pair)
    log_b: np.ndarray  # (N,) log B_j
    iterations: int
    error: float  # largest relative row error; inf when no balanced table exists
    f: np.ndarray  # (P,) f(t_ij) per pair, 0 beyond reach
    self_f: float  # f(self_time_min), 0 without a self term


@strict_parallel
def _deterrence_pairs(rows, places, terms, s, ends):
    """f(t_ij) in float64 for the reachable pairs of scenario ``s`` (0 elsewhere)."""
    f = np.zeros(rows.neighbour.shape[0], dtype=np.float64)
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = rows.offsets[i]
            for q in range(ends[i]):
                if terms.closed[s] and places.region[rows.neighbour[start + q]] != places.region[i]:
                    continue
                log_km = np.float64(rows.log_dist[start + q])
                log_f = log_deterrence_km(
                    log_km,
                    np.exp(log_km),
                    terms.decay[s],
                    terms.beta[s],
                    terms.min_per_km[s],
                    terms.log_min_per_km[s],
                    terms.log_min_time[s],
                )
                f[start + q] = np.exp(log_f)
    return f


@strict_parallel
def _weighted_row_sums(rows, f, ends, weight, self_f, out):
    """out[i] = Σ_{q < ends[i]} weight[neighbour] f + weight[i] self_f (a gather per row)."""
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = rows.offsets[i]
            total = weight[i] * self_f
            for q in range(ends[i]):
                total += weight[rows.neighbour[start + q]] * f[start + q]
            out[i] = total


@strict
def _balance_error(x, r, support):
    """max_i |r_i - 1| over towns with a pair (r_i: row total / O_i); inf when a factor left the floats."""
    error = 0.0
    for i in range(x.shape[0]):
        if support[i]:
            if not (0.0 < x[i] < np.inf and 0.0 < r[i] < np.inf):
                return np.inf
            error = max(error, abs(r[i] - 1.0))
    return error


@strict
def doubly_ipf(rows, places, terms, mode, s, ends):
    """Balancing of scenario ``s`` (``ends``: each row's reachable prefix), symmetric.

    With O = D = population and f(t_ij) = f(t_ji), the balanced table is symmetric and
    A = B = x, with x_i Σ_j x_j D_j f_ij = 1 for every town with a pair (the row and the
    column constraints are the same equations). Each round is one pass over the pairs:
    r = x (M x), error = max_i |r_i - 1| (the largest relative row error, which is also the
    column error), stop when error < IPF_TOL or after IPF_MAX_ITER rounds, else the
    geometric mean of the two Furness half-steps, x = x / sqrt(r). In log terms an error
    mode e becomes (e - P e) / 2 (P the row-normalised table), so the smooth, country-wide
    modes that make plain Furness crawl at national scale vanish in a few rounds; the fixed
    point is Furness's (the products A_i B_j are unique). When a factor leaves the floats (no
    balanced table exists) balancing stops with error = inf. Returns a :class:`Balance`.
    """
    population = places.population
    n = population.shape[0]
    f = _deterrence_pairs(rows, places, terms, s, ends)
    self_f = 0.0
    if terms.has_self[s]:
        self_f = np.exp(log_deterrence(mode.self_time_min[s], terms.decay[s], terms.beta[s], mode.min_time_min[s]))
    m = np.zeros(n)
    _weighted_row_sums(rows, f, ends, population.copy(), self_f, m)
    support = m > 0
    x = np.where(support, 1.0 / np.sqrt(np.where(support, m, 1.0)), 0.0)
    iterations = 0
    error = np.inf
    for it in range(1, IPF_MAX_ITER + 1):
        _weighted_row_sums(rows, f, ends, x * population, self_f, m)
        r = x * m
        error = _balance_error(x, r, support)
        iterations = it
        if not np.isfinite(error):
            error = np.inf
            break
        if error < IPF_TOL:
            break
        x = np.where(support, x / np.sqrt(np.where(support, r, 1.0)), 0.0)
    log_x = np.where(support, np.log(np.where(support, x, 1.0)), -np.inf)
    return Balance(x, x, log_x, log_x, iterations, error, f, self_f)


@strict
def doubly_inflow(rows, places, balance, ends):
    """inflow_j = Σ_{i != j} A_i O_i B_j D_j f_ij."""
    population = places.population
    col = np.zeros(population.shape[0])
    _weighted_row_sums(rows, balance.f, ends, balance.a * population, 0.0, col)
    return balance.b * population * col
