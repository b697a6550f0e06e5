"""The doubly-constrained gravity model (docs/model.md, "Other flow models", ``doubly``).

``T_ij = A_i O_i B_j D_j f(t_ij)`` over the reachable pairs (and the self pair when
``self_time_min`` is set), ``O = D = population``, balanced in float64 by the symmetric form
of iterative proportional fitting (see :func:`doubly_ipf`). Every sum gathers along a row in
row order (reachability is symmetric, so a column sum is a row sum), so the result does not
depend on the threads.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.anderson import _forget, _mixing_state, _next_iterate
from agglo.kernels.gravity.terms import POWER, log_deterrence_km
from agglo.kernels.jit import inlined, prange, strict, strict_parallel

IPF_TOL = 1e-9
IPF_MAX_ITER = 1000
STALL_ROUNDS = 16  # rounds without a new lowest error after which the mixing history is dropped


class Balance(NamedTuple):
    a: np.ndarray  # (N,) A_i (0 for a town with no pair)
    b: np.ndarray  # (N,) B_j
    iterations: int
    error: float  # largest relative row error; inf when no balanced table exists
    f: np.ndarray  # (P,) f(t_ij) per pair in float32, 0 beyond reach
    self_f: float  # f(self_time_min), 0 without a self term


@strict_parallel
def _deterrence_pairs(rows, places, terms, s, ends, narrow):
    """f(t_ij), computed in float64 and held in float32, for the reachable pairs of scenario ``s``
    (0 elsewhere); and ``narrow`` (uint16, or empty) filled with those pairs' neighbours."""
    f = np.zeros(rows.neighbour.shape[0], dtype=np.float32)
    power = terms.decay[s] == POWER  # power decay needs log km only
    chunks = rows.chunks
    fill = narrow.shape[0] > 0
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = rows.offsets[i]
            if fill:
                for q in range(ends[i]):
                    narrow[start + q] = np.uint16(rows.neighbour[start + q])
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


NARROW_TOWNS = 1 << 16  # fewer towns than this: the balance reads its neighbours as uint16


@strict_parallel
def _pair_sums(rows, neighbour, f, ends, weight, active, out):
    """out[s, i] = Σ_{q < ends[s, i]} f_q weight[s, neighbour_q] for the ``active`` scenarios,
    in row order (``neighbour``: the rows' neighbours, or their uint16 copy, the same values;
    the gather of ``weight`` bounds a pass, and 2 bytes a pair instead of 4 take a fifth off
    it). The scenarios of a row follow one another while its pairs are still in cache, so the
    pairs come from memory once for all of them (f is the same for all); each scenario's sums
    are the same bits whichever others run beside it."""
    n_scen = ends.shape[0]
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        for i in range(chunks[ch], chunks[ch + 1]):
            start = rows.offsets[i]
            for s in range(n_scen):
                if not active[s]:
                    continue
                total = 0.0
                for q in range(ends[s, i]):
                    total += weight[s, neighbour[start + q]] * f[start + q]
                out[s, i] = total


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


@inlined
def _judged(s, error, rounds, best, stalled, active, u, mix):
    """Scenario ``s``'s round judged by its error: True when it goes on to a next iterate.
    A mixed iterate that left the floats is dropped (back to the last good one, plain step);
    a plain one that did means no balanced table (it stops); so does a converged or last round."""
    if not error[s] < np.inf:
        if not mix[6][s]:
            active[s] = False  # a plain step left the floats
            return False
        for i in range(u.shape[1]):  # drop the mixed iterate: plain step from the last good one
            u[s, i] = mix[7][s, i]
        _forget(s, mix)
        mix[6][s] = False
        return False
    if error[s] < IPF_TOL or rounds[s] == IPF_MAX_ITER:
        active[s] = False
        return False
    if error[s] < best[s]:
        best[s] = error[s]
        stalled[s] = 0
    else:
        stalled[s] += 1
    if stalled[s] >= STALL_ROUNDS:  # the mixing stalls: plain steps from here, a new history
        _forget(s, mix)
        stalled[s] = 0
    return True


@strict
def balance_rounds(rows, neighbour, ends, population, f, self_f, support, x0):
    """The symmetric balance of :func:`doubly_ipf` for scenarios that share f, from ``x0``
    (S, N), Anderson-accelerated, in lockstep: each round is one pass over the pairs for all
    scenarios still balancing (:func:`_pair_sums`), and everything else is per scenario.

    Round k of a scenario evaluates r = x (M x) at u = log x, error = max_i |r_i - 1|, and
    stops when error < IPF_TOL or after IPF_MAX_ITER rounds. Its plain step is
    g = u - log(r) / 2, the geometric mean of the two Furness half-steps; the next u mixes g
    with the last ANDERSON_MEMORY steps (:func:`anderson_mix`). A mixed iterate whose factors
    leave the floats is dropped: back to the last finite one, history cleared, plain step;
    so is the history when STALL_ROUNDS rounds bring no new lowest error (mixing can stall).
    When a plain step leaves the floats, no balanced table exists: error = inf. Returns
    (x, the pair sums Σ_j f_ij x_j O_j of the last round, rounds, error), per scenario."""
    n_scen, n = x0.shape
    mix = _mixing_state(n_scen, n)
    r = np.zeros(n)
    pairs = np.zeros((n_scen, n))
    weight = np.zeros((n_scen, n))
    u = np.zeros((n_scen, n))
    x = x0.copy()
    for s in range(n_scen):
        for i in range(n):
            u[s, i] = np.log(x[s, i]) if support[s, i] else 0.0
    active = np.ones(n_scen, dtype=np.bool_)
    error = np.full(n_scen, np.inf)
    best = np.full(n_scen, np.inf)  # the lowest error so far
    stalled = np.zeros(n_scen, dtype=np.int64)  # rounds since it
    rounds = np.zeros(n_scen, dtype=np.int64)
    for _ in range(IPF_MAX_ITER):
        if not active.any():
            break
        for s in range(n_scen):
            if active[s]:
                rounds[s] += 1
                for i in range(n):
                    x[s, i] = np.exp(u[s, i]) if support[s, i] else 0.0
                    weight[s, i] = x[s, i] * population[i]
        _pair_sums(rows, neighbour, f, ends, weight, active, pairs)
        for s in range(n_scen):
            if not active[s]:
                continue
            for i in range(n):
                r[i] = x[s, i] * (pairs[s, i] + weight[s, i] * self_f)
            error[s] = _balance_error(x[s], r, support[s])
            if _judged(s, error, rounds, best, stalled, active, u, mix):
                _next_iterate(s, u, r, support, mix)
    for s in range(n_scen):
        if not error[s] < np.inf:
            error[s] = np.inf
    return x, pairs, rounds, error


@strict
def balance_group(rows, places, terms, group, ends):
    """:func:`balance_rounds` for the scenarios ``group`` of ``terms`` (they share
    decay, beta, minimum and self times, circuity, speed and borders, so f; their caps may
    differ), ``ends`` (S, N) their reachable prefixes. Returns (x, inflow, rounds, error, f,
    self_f): inflow_j = x_j O_j Σ_{i != j} x_i O_i f_ij from the last round's sums."""
    population = places.population
    n_scen, n = ends.shape
    s0 = group[0]
    widest = np.zeros(n, dtype=np.int64)
    for s in range(n_scen):
        for i in range(n):
            widest[i] = max(widest[i], ends[s, i])
    narrow = np.empty(rows.neighbour.shape[0] if n < NARROW_TOWNS else 0, dtype=np.uint16)
    f = _deterrence_pairs(rows, places, terms, s0, widest, narrow)
    self_f = np.exp(terms.self_log_f[s0]) if terms.has_self[s0] else 0.0
    if n < NARROW_TOWNS:
        return _balance_from(rows, narrow, population, ends, f, self_f)
    return _balance_from(rows, rows.neighbour, population, ends, f, self_f)


@strict
def _balance_from(rows, neighbour, population, ends, f, self_f):
    """:func:`balance_group` once f is known (``neighbour``: the rows' or their uint16 copy)."""
    n_scen, n = ends.shape
    first = np.zeros((n_scen, n))
    weight = np.empty((n_scen, n))
    for s in range(n_scen):
        for i in range(n):
            weight[s, i] = population[i]
    _pair_sums(rows, neighbour, f, ends, weight, np.ones(n_scen, dtype=np.bool_), first)
    support = np.zeros((n_scen, n), dtype=np.bool_)
    x0 = np.zeros((n_scen, n))
    for s in range(n_scen):
        for i in range(n):
            m = first[s, i] + population[i] * self_f
            support[s, i] = m > 0
            x0[s, i] = 1.0 / np.sqrt(m) if m > 0 else 0.0
    x, pairs, rounds, error = balance_rounds(rows, neighbour, ends, population, f, self_f, support, x0)
    inflow = np.zeros((n_scen, n))
    for s in range(n_scen):
        for i in range(n):
            inflow[s, i] = x[s, i] * population[i] * pairs[s, i]
    return x, inflow, rounds, error, f, self_f


@strict
def log_factors(x):
    """log x where x > 0, -inf elsewhere (a town with no pair, or a factor that left the floats low)."""
    return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), -np.inf)


@strict
def doubly_ipf(rows, places, terms, s, ends):
    """Balancing of scenario ``s`` (``ends``: each row's reachable prefix), symmetric.

    With O = D = population and f(t_ij) = f(t_ji), the balanced table is symmetric and
    A = B = x, with x_i Σ_j x_j D_j f_ij = 1 for every town with a pair (the row and the
    column constraints are the same equations). The plain round, x = x / sqrt(r) with
    r = x (M x), is the geometric mean of the two Furness half-steps: in log terms an error
    mode e becomes (e - P e) / 2 (P the row-normalised table), so the smooth, country-wide
    modes that make plain Furness crawl at national scale vanish in a few rounds; what is
    left (towns that mostly reach one another, little else) is the slow part, which Anderson
    mixing of the last steps removes (:func:`balance_rounds`; :func:`balance_group` balances
    scenarios that share f in lockstep, one pass over the pairs a round for all). The fixed point is Furness's
    (the products A_i B_j are unique); error is the largest relative row error, which is
    also the column error. f is held in float32 (the distances it comes from are float32);
    every sum and factor is float64. Returns a :class:`Balance`.
    """
    group = np.array([s], dtype=np.int64)
    x2, _, rounds, error, f, self_f = balance_group(rows, places, terms, group, ends.reshape(1, -1))
    x = x2[0]
    return Balance(x, x, int(rounds[0]), float(error[0]), f, self_f)
