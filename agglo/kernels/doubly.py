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
from agglo.kernels.terms import POWER, log_deterrence, log_deterrence_km

IPF_TOL = 1e-9
IPF_MAX_ITER = 1000
ANDERSON_MEMORY = 8  # steps mixed (all of Mexico, default caps: 4: 74 + 24 rounds, 6: 56 + 23, 8: 55 + 21, 10: 51 + 22)


class Balance(NamedTuple):
    a: np.ndarray  # (N,) A_i (0 for a town with no pair)
    b: np.ndarray  # (N,) B_j
    log_a: np.ndarray  # (N,) log A_i (-inf for a town with no pair)
    log_b: np.ndarray  # (N,) log B_j
    iterations: int
    error: float  # largest relative row error; inf when no balanced table exists
    f: np.ndarray  # (P,) f(t_ij) per pair in float32, 0 beyond reach
    self_f: float  # f(self_time_min), 0 without a self term


@strict_parallel
def _deterrence_pairs(rows, places, terms, s, ends):
    """f(t_ij), computed in float64 and held in float32, for the reachable pairs of scenario ``s`` (0 elsewhere)."""
    f = np.zeros(rows.neighbour.shape[0], dtype=np.float32)
    power = terms.decay[s] == POWER  # power decay needs log km only
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
                    0.0 if power else np.exp(log_km),
                    terms.decay[s],
                    terms.beta[s],
                    terms.min_per_km[s],
                    terms.log_min_per_km[s],
                    terms.log_min_time[s],
                )
                f[start + q] = np.float32(np.exp(log_f))
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
def _solve_small(h, rhs):
    """h gamma = rhs for a small symmetric h (Gaussian elimination, partial pivoting, in a
    fixed order); all-NaN when h is singular."""
    k = rhs.shape[0]
    a = h.copy()
    b = rhs.copy()
    for c in range(k):
        p = c
        for r in range(c + 1, k):
            if abs(a[r, c]) > abs(a[p, c]):
                p = r
        if not abs(a[p, c]) > 0.0:
            return np.full(k, np.nan)
        if p != c:
            for q in range(k):
                a[c, q], a[p, q] = a[p, q], a[c, q]
            b[c], b[p] = b[p], b[c]
        for r in range(c + 1, k):
            m = a[r, c] / a[c, c]
            for q in range(c, k):
                a[r, q] -= m * a[c, q]
            b[r] -= m * b[c]
    out = np.empty(k)
    for c in range(k - 1, -1, -1):
        total = b[c]
        for q in range(c + 1, k):
            total -= a[c, q] * out[q]
        out[c] = total / a[c, c]
    return out


@strict
def anderson_mix(g, fk, d_f, d_g, used, u):
    """Anderson's type-II mixing (Walker & Ni 2011) into ``u``: u = g - dG gamma with gamma the
    least-squares fit of fk by the ``used`` residual differences dF (normal equations, a
    1e-10 relative ridge). The plain step u = g when the fit fails. Sums in a fixed order."""
    n = g.shape[0]
    h = np.zeros((used, used))
    rhs = np.zeros(used)
    for a in range(used):
        for b in range(a, used):
            total = 0.0
            for i in range(n):
                total += d_f[a, i] * d_f[b, i]
            h[a, b] = total
            h[b, a] = total
        total = 0.0
        for i in range(n):
            total += d_f[a, i] * fk[i]
        rhs[a] = total
    scale = 0.0
    for a in range(used):
        scale = max(scale, h[a, a])
    for a in range(used):
        h[a, a] += 1e-10 * scale
    gamma = _solve_small(h, rhs)
    ok = True
    for a in range(used):
        ok = ok and np.isfinite(gamma[a])
    for i in range(n):
        u[i] = g[i]
        if ok:
            for a in range(used):
                u[i] -= gamma[a] * d_g[a, i]


@strict
def balance_rounds(rows, ends, population, f, self_f, support, x0):
    """The symmetric balance of :func:`doubly_ipf` from ``x0``, Anderson-accelerated.

    Round k evaluates r = x (M x) at u = log x (one pass over the pairs), error =
    max_i |r_i - 1|, and stops when error < IPF_TOL or after IPF_MAX_ITER rounds. Its plain
    step is g = u - log(r) / 2, the geometric mean of the two Furness half-steps; the next u
    mixes g with the last ANDERSON_MEMORY steps (:func:`anderson_mix`). A mixed iterate whose
    factors leave the floats is dropped: back to the last finite one, history cleared, plain
    step. When a plain step leaves the floats, no balanced table exists: error = inf.
    Returns (x, rounds, error)."""
    n = population.shape[0]
    mem = ANDERSON_MEMORY
    d_f = np.zeros((mem, n))
    d_g = np.zeros((mem, n))
    f_prev = np.zeros(n)
    g_prev = np.zeros(n)
    fk = np.zeros(n)
    g = np.zeros(n)
    m = np.zeros(n)
    weight = np.zeros(n)
    good_u = np.zeros(n)
    u = np.zeros(n)
    x = x0.copy()
    for i in range(n):
        u[i] = np.log(x[i]) if support[i] else 0.0
    history = 0  # residual differences held
    has_prev = False
    mixed = False  # whether u came from a mix (not a plain step)
    error = np.inf
    rounds = 0
    for it in range(1, IPF_MAX_ITER + 1):
        rounds = it
        for i in range(n):
            x[i] = np.exp(u[i]) if support[i] else 0.0
            weight[i] = x[i] * population[i]
        _weighted_row_sums(rows, f, ends, weight, self_f, m)
        for i in range(n):
            m[i] *= x[i]  # r
        error = _balance_error(x, m, support)
        if not error < np.inf:
            if not mixed:
                break  # a plain step left the floats
            for i in range(n):  # drop the mixed iterate: plain step from the last good one
                u[i] = good_u[i]
            history = 0
            has_prev = False
            mixed = False
            continue
        if error < IPF_TOL:
            break
        for i in range(n):
            good_u[i] = u[i]
            fk[i] = -0.5 * np.log(m[i]) if support[i] else 0.0
            g[i] = u[i] + fk[i]
        if has_prev:
            slot = min(history, mem - 1)
            if history >= mem:  # drop the oldest difference, keep the order oldest first
                for a in range(mem - 1):
                    for i in range(n):
                        d_f[a, i] = d_f[a + 1, i]
                        d_g[a, i] = d_g[a + 1, i]
            for i in range(n):
                d_f[slot, i] = fk[i] - f_prev[i]
                d_g[slot, i] = g[i] - g_prev[i]
            history = min(history + 1, mem)
        for i in range(n):
            f_prev[i] = fk[i]
            g_prev[i] = g[i]
        has_prev = True
        if history > 0:
            anderson_mix(g, fk, d_f, d_g, history, u)
            mixed = True
        else:
            for i in range(n):
                u[i] = g[i]
            mixed = False
    if not error < np.inf:
        error = np.inf
    return x, rounds, error


@strict
def doubly_ipf(rows, places, terms, mode, s, ends):
    """Balancing of scenario ``s`` (``ends``: each row's reachable prefix), symmetric.

    With O = D = population and f(t_ij) = f(t_ji), the balanced table is symmetric and
    A = B = x, with x_i Σ_j x_j D_j f_ij = 1 for every town with a pair (the row and the
    column constraints are the same equations). The plain round, x = x / sqrt(r) with
    r = x (M x), is the geometric mean of the two Furness half-steps: in log terms an error
    mode e becomes (e - P e) / 2 (P the row-normalised table), so the smooth, country-wide
    modes that make plain Furness crawl at national scale vanish in a few rounds; what is
    left (towns that mostly reach one another, little else) is the slow part, which Anderson
    mixing of the last steps removes (:func:`balance_rounds`). The fixed point is Furness's
    (the products A_i B_j are unique); error is the largest relative row error, which is
    also the column error. f is held in float32 (the distances it comes from are float32);
    every sum and factor is float64. Returns a :class:`Balance`.
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
    x0 = np.where(support, 1.0 / np.sqrt(np.where(support, m, 1.0)), 0.0)
    x, iterations, error = balance_rounds(rows, ends, population, f, self_f, support, x0)
    log_x = np.where(support, np.log(np.where(support, x, 1.0)), -np.inf)
    return Balance(x, x, log_x, log_x, iterations, error, f, self_f)


@strict
def doubly_inflow(rows, places, balance, ends):
    """inflow_j = Σ_{i != j} A_i O_i B_j D_j f_ij."""
    population = places.population
    col = np.zeros(population.shape[0])
    _weighted_row_sums(rows, balance.f, ends, balance.a * population, 0.0, col)
    return balance.b * population * col
