"""The doubly-constrained gravity model (MODEL.md, "Other flow models", ``doubly``).

``T_ij = A_i O_i B_j D_j f(t_ij)`` over the reachable pairs (and the self pair when
``self_time_min`` is set), ``O = D = population``, balanced by iterative proportional
fitting (Furness) in float64. Every sum gathers along a row in row order (reachability is
symmetric, so a column sum is a row sum), so the result does not depend on the threads.
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
def _inverse(values, support):
    return np.where(support, 1.0 / np.where(support, values, 1.0), 0.0)


@strict
def _row_error(a, b, r, support):
    """max_i |A_i R_i - 1| over towns with a pair; inf when a factor left the floats."""
    error = 0.0
    for i in range(a.shape[0]):
        if support[i]:
            if not (0.0 < a[i] < np.inf and 0.0 < b[i] < np.inf and 0.0 < r[i] < np.inf):
                return np.inf
            error = max(error, abs(a[i] * r[i] - 1.0))
    return error


@strict
def doubly_ipf(rows, places, terms, mode, s, ends):
    """Furness balancing of scenario ``s`` (``ends``: each row's reachable prefix).

    Order: B = 1; A = 1/R(B); then repeat: B = 1/C(A) (columns exact), R = R(B),
    error = max_i |A_i R_i - 1| over towns with any pair; stop when error < IPF_TOL
    (A kept, so the columns stay exact) or after IPF_MAX_ITER, else A = 1/R. When a
    factor leaves the floats (no balanced table exists: a town's total exceeds what the
    towns it reaches can take) balancing stops with error = inf. Returns a :class:`Balance`.
    """
    population = places.population
    n = population.shape[0]
    f = _deterrence_pairs(rows, places, terms, s, ends)
    self_f = 0.0
    if terms.has_self[s]:
        self_f = np.exp(log_deterrence(mode.self_time_min[s], terms.decay[s], terms.beta[s], mode.min_time_min[s]))
    b = np.ones(n)
    r = np.zeros(n)
    col = np.zeros(n)
    _weighted_row_sums(rows, f, ends, b * population, self_f, r)
    support = r > 0
    a = _inverse(r, support)
    iterations = 0
    error = np.inf
    for it in range(1, IPF_MAX_ITER + 1):
        _weighted_row_sums(rows, f, ends, a * population, self_f, col)
        b = _inverse(col, support)
        _weighted_row_sums(rows, f, ends, b * population, self_f, r)
        error = _row_error(a, b, r, support)
        iterations = it
        if not np.isfinite(error):
            error = np.inf
            break
        if error < IPF_TOL:
            break
        a = _inverse(r, support)
    log_a = np.where(support, np.log(np.where(support, a, 1.0)), -np.inf)
    log_b = np.where(support, np.log(np.where(support, b, 1.0)), -np.inf)
    return Balance(a, b, log_a, log_b, iterations, error, f, self_f)


@strict
def doubly_inflow(rows, places, balance, ends):
    """inflow_j = Σ_{i != j} A_i O_i B_j D_j f_ij."""
    population = places.population
    col = np.zeros(population.shape[0])
    _weighted_row_sums(rows, balance.f, ends, balance.a * population, 0.0, col)
    return balance.b * population * col
