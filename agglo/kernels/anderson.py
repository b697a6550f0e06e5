"""Anderson mixing for the symmetric balance (:func:`agglo.kernels.doubly.balance_rounds`): the
next iterate mixes the plain step with the last ANDERSON_MEMORY step differences, by a
small least-squares solve over their Gram matrix. Per scenario, in float64."""

import numpy as np

from agglo.kernels.jit import inlined, strict

ANDERSON_MEMORY = 8  # steps mixed; measured on all of Mexico at the default caps in docs/performance.md


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
def _mixing_state(n_scen, n):
    """Per scenario, what Anderson mixing keeps between rounds: the ring of the last
    ANDERSON_MEMORY step differences (d_f, d_g) with their Gram matrix, the ring row of the
    oldest (head) and how many it holds (history), whether a previous step exists, whether u
    came from a mix, the last good iterate; then the previous step (f, g), this step's (f, g)
    and the ring's rows in age order (work arrays)."""
    mem = ANDERSON_MEMORY
    return (
        np.zeros((n_scen, mem, n)),  # 0 d_f
        np.zeros((n_scen, mem, n)),  # 1 d_g
        np.zeros((n_scen, mem, mem)),  # 2 gram: dF_p · dF_q by ring row
        np.zeros(n_scen, dtype=np.int64),  # 3 head
        np.zeros(n_scen, dtype=np.int64),  # 4 history
        np.zeros(n_scen, dtype=np.bool_),  # 5 has_prev
        np.zeros(n_scen, dtype=np.bool_),  # 6 mixed
        np.zeros((n_scen, n)),  # 7 good_u
        np.zeros((n_scen, n)),  # 8 f_prev
        np.zeros((n_scen, n)),  # 9 g_prev
        np.zeros(n),  # 10 fk
        np.zeros(n),  # 11 g
        np.zeros(mem, dtype=np.int64),  # 12 slots
    )


@inlined
def _forget(s, mix):
    """Scenario ``s`` drops its mixing history: plain steps until a new one builds up."""
    mix[4][s] = 0
    mix[3][s] = 0
    mix[5][s] = False


@inlined
def _next_iterate(s, u, r, support, mix):
    """After an accepted round of scenario ``s`` (r = x (M x) at u): u is kept as the last good
    iterate; the plain step g = u - log(r) / 2 and its residual join the ring of the last
    ANDERSON_MEMORY differences; the next u is g mixed with them (:func:`anderson_mix`), or g."""
    d_f, d_g, gram, head, history, has_prev, mixed, good_u, f_prev, g_prev, fk, g, slots = mix
    n = u.shape[1]
    mem = d_f.shape[1]
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
