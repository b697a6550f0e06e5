"""The doubly-constrained gravity model (docs/model.md, "Other flow models", ``doubly``).

``T_ij = A_i O_i B_j D_j f(t_ij)`` over the reachable pairs (and the self pair when
``self_time_min`` is set), ``O = D = population``, balanced in float64 by the symmetric form
of iterative proportional fitting (see :func:`doubly_ipf`). Every sum gathers along a row in
row order (reachability is symmetric, so a column sum is a row sum), so the result does not
depend on the threads.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.terms import POWER, log_deterrence_km

IPF_TOL = 1e-9
IPF_MAX_ITER = 1000
STALL_ROUNDS = 16  # rounds without a new lowest error after which the mixing history is dropped
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
def _dot(a, b):
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@strict
def anderson_mix(g, fk, d_f, d_g, gram, slots, used, u):
    """Anderson's type-II mixing (Walker & Ni 2011) into ``u``: u = g - dG gamma with gamma the
    least-squares fit of fk by the ``used`` residual differences dF (normal equations, a
    1e-10 relative ridge). The plain step u = g when the fit fails. Sums in a fixed order.

    Difference ``a`` (oldest first) lies in row ``slots[a]`` of ``d_f``/``d_g`` (a ring), and
    ``gram`` holds dF_p · dF_q by row: each dot is taken once, when its newer difference
    arrives, and is the same value a recomputation would give."""
    h = np.zeros((used, used))
    rhs = np.zeros(used)
    for a in range(used):
        for b in range(used):
            h[a, b] = gram[slots[a], slots[b]]
        rhs[a] = _dot(d_f[slots[a]], fk)
    scale = 0.0
    for a in range(used):
        scale = max(scale, h[a, a])
    for a in range(used):
        h[a, a] += 1e-10 * scale
    gamma = _solve_small(h, rhs)
    ok = True
    for a in range(used):
        ok = ok and np.isfinite(gamma[a])
    for i in range(g.shape[0]):
        u[i] = g[i]
        if ok:
            for a in range(used):
                u[i] -= gamma[a] * d_g[slots[a], i]


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
    mem = ANDERSON_MEMORY
    d_f = np.zeros((n_scen, mem, n))
    d_g = np.zeros((n_scen, mem, n))
    gram = np.zeros((n_scen, mem, mem))  # dF_p · dF_q by ring row
    head = np.zeros(n_scen, dtype=np.int64)  # the ring row of the oldest difference
    slots = np.zeros(mem, dtype=np.int64)
    f_prev = np.zeros((n_scen, n))
    g_prev = np.zeros((n_scen, n))
    fk = np.zeros(n)
    g = np.zeros(n)
    r = np.zeros(n)
    pairs = np.zeros((n_scen, n))
    weight = np.zeros((n_scen, n))
    good_u = np.zeros((n_scen, n))
    u = np.zeros((n_scen, n))
    x = x0.copy()
    for s in range(n_scen):
        for i in range(n):
            u[s, i] = np.log(x[s, i]) if support[s, i] else 0.0
    history = np.zeros(n_scen, dtype=np.int64)  # residual differences held
    has_prev = np.zeros(n_scen, dtype=np.bool_)
    mixed = np.zeros(n_scen, dtype=np.bool_)  # whether u came from a mix (not a plain step)
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
            if not error[s] < np.inf:
                if not mixed[s]:
                    active[s] = False  # a plain step left the floats
                    continue
                for i in range(n):  # drop the mixed iterate: plain step from the last good one
                    u[s, i] = good_u[s, i]
                history[s] = 0
                head[s] = 0
                has_prev[s] = False
                mixed[s] = False
                continue
            if error[s] < IPF_TOL or rounds[s] == IPF_MAX_ITER:
                active[s] = False
                continue
            if error[s] < best[s]:
                best[s] = error[s]
                stalled[s] = 0
            else:
                stalled[s] += 1
            if stalled[s] >= STALL_ROUNDS:  # the mixing stalls: plain steps from here, a new history
                history[s] = 0
                head[s] = 0
                has_prev[s] = False
                stalled[s] = 0
            for i in range(n):
                good_u[s, i] = u[s, i]
                fk[i] = -0.5 * np.log(r[i]) if support[s, i] else 0.0
                g[i] = u[s, i] + fk[i]
            if has_prev[s]:
                if history[s] < mem:
                    slot = (head[s] + history[s]) % mem
                    history[s] += 1
                else:  # the newest difference takes the oldest one's row
                    slot = head[s]
                    head[s] = (head[s] + 1) % mem
                for i in range(n):
                    d_f[s, slot, i] = fk[i] - f_prev[s, i]
                    d_g[s, slot, i] = g[i] - g_prev[s, i]
                for a in range(history[s]):
                    other = (head[s] + a) % mem
                    gram[s, slot, other] = gram[s, other, slot] = _dot(d_f[s, slot], d_f[s, other])
            for i in range(n):
                f_prev[s, i] = fk[i]
                g_prev[s, i] = g[i]
            has_prev[s] = True
            if history[s] > 0:
                for a in range(history[s]):
                    slots[a] = (head[s] + a) % mem
                anderson_mix(g, fk, d_f[s], d_g[s], gram[s], slots, history[s], u[s])
                mixed[s] = True
            else:
                for i in range(n):
                    u[s, i] = g[i]
                mixed[s] = False
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
    log_x = log_factors(x)
    return Balance(x, x, log_x, log_x, int(rounds[0]), float(error[0]), f, self_f)


@strict
def furness_group(rows, cols, places, terms, group, ends_out, ends_in):
    """Plain iterative proportional fitting (Furness) for an asymmetric travel-time table,
    whose balanced table is not symmetric: the scenarios ``group`` of ``terms`` (they share
    f, as for :func:`balance_group`), ``ends_out`` / ``ends_in`` (S, N) the reachable
    prefixes of the outgoing ``rows`` and the incoming ``cols``.

    Each round: the row sums m_i = Σ_j f_ij B_j D_j (+ the self pair) at the current B give
    the largest relative row error max_i |A_i m_i - 1| (towns with a pair; the column
    constraints hold exactly after every round); below IPF_TOL, or after IPF_MAX_ITER
    rounds, it stops; a factor or row sum of a town with a pair that leaves the floats (or
    falls to 0) means no balanced table exists: error inf, and it stops; else A = 1 / m, and B = 1 / Σ_i f_ij A_i O_i (+ the self pair).
    Every sum gathers along a row in row order. Returns (A, B, inflow, rounds, error):
    inflow_j = B_j D_j Σ_{i != j} A_i O_i f_ij."""
    population = places.population
    n_scen, n = ends_out.shape
    s0 = group[0]
    widest_out = np.zeros(n, dtype=np.int64)
    widest_in = np.zeros(n, dtype=np.int64)
    for s in range(n_scen):
        for i in range(n):
            widest_out[i] = max(widest_out[i], ends_out[s, i])
            widest_in[i] = max(widest_in[i], ends_in[s, i])
    no_narrow = np.empty(0, dtype=np.uint16)
    f_out = _deterrence_pairs(rows, places, terms, s0, widest_out, no_narrow)
    f_in = _deterrence_pairs(cols, places, terms, s0, widest_in, no_narrow)
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
        for s in range(n_scen):
            for i in range(n):
                weight[s, i] = b[s, i] * population[i]
        _pair_sums(rows, rows.neighbour, f_out, ends_out, weight, active, sums)
        for s in range(n_scen):
            if not active[s]:
                continue
            if it > 0:
                worst = 0.0
                for i in range(n):
                    if not support[s, i]:
                        continue
                    m = sums[s, i] + weight[s, i] * self_f
                    if not (0.0 < m < np.inf and 0.0 < a[s, i] < np.inf):
                        worst = np.inf  # a factor left the floats: no balanced table
                        break
                    worst = max(worst, abs(a[s, i] * m - 1.0))
                error[s] = worst if np.isfinite(worst) else np.inf
                if error[s] < IPF_TOL or rounds[s] == IPF_MAX_ITER or not error[s] < np.inf:
                    active[s] = False  # A, B and the column sums of the last round stay
                    continue
            for i in range(n):
                m = sums[s, i] + weight[s, i] * self_f
                a[s, i] = 1.0 / m if m > 0.0 else 0.0
                if it == 0:
                    support[s, i] = m > 0.0
            rounds[s] += 1
        if not active.any():
            break
        for s in range(n_scen):
            for i in range(n):
                weight[s, i] = a[s, i] * population[i]
        _pair_sums(cols, cols.neighbour, f_in, ends_in, weight, active, into)
        for s in range(n_scen):
            if not active[s]:
                continue
            for j in range(n):
                m = into[s, j] + weight[s, j] * self_f
                b[s, j] = 1.0 / m if m > 0.0 else 0.0
    inflow = np.zeros((n_scen, n))
    for s in range(n_scen):
        for j in range(n):
            inflow[s, j] = b[s, j] * population[j] * into[s, j]
    return a, b, inflow, rounds, error
