"""Plain NumPy twin of the kernels, written from docs/model.md alone.

Dense rows (all N destinations of a block of origins), float64, no neighbourhood,
no log-space: the formulas as the model states them. Slow on purpose; the kernels
must agree with it.
"""

import numpy as np

R_KM = 6371.0088


def haversine_rows(lat, lon, rows):
    """d_ij for origins ``rows`` and every destination j (km)."""
    phi = np.radians(lat)
    lam = np.radians(lon)
    dphi = phi[None, :] - phi[rows, None]
    dlam = lam[None, :] - lam[rows, None]
    h = np.sin(dphi / 2) ** 2 + np.cos(phi[rows])[:, None] * np.cos(phi)[None, :] * np.sin(dlam / 2) ** 2
    return 2 * R_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def travel(lat, lon, rows, mode: dict, minutes=None):
    """t_ij for origins ``rows``: docs/model.md's straight line, or with ``minutes`` (a dense
    N x N travel-time table, inf where it lists no pair) the table's minutes times time_factor."""
    if minutes is not None:
        return mode.get("time_factor", 1.0) * minutes[rows]
    return 60 * mode["circuity"] * haversine_rows(lat, lon, rows) / mode["speed_kmh"]


def furness(k, pop, tol, max_iter):
    """Plain iterative proportional fitting of T = A O k B D (O = D = pop), dense: each round
    checks the largest relative row error max |A m - 1| (m = k (B D), towns with m > 0) at
    the current B, stops below tol or after max_iter rounds, else sets A = 1 / m and
    B = 1 / k^T (A O); a factor or row sum of a town with a pair that leaves the floats (or falls
    to 0) means no balanced table: error inf. Returns (A, B, rounds, error)."""
    a = np.zeros(len(pop))
    b = np.ones(len(pop))
    rounds, error = 0, np.inf
    support = (k @ pop) > 0  # towns with a pair
    for it in range(max_iter + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            m = k @ (b * pop)
        if it > 0:
            s_m, s_a = m[support], a[support]
            ok = np.all((s_m > 0) & (s_m < np.inf) & (s_a > 0) & (s_a < np.inf))
            error = float(np.max(np.abs(s_a * s_m - 1.0), initial=0.0)) if ok else np.inf
            if error < tol or rounds == max_iter or not error < np.inf:
                break
        a = np.where(m > 0, 1.0 / np.where(m > 0, m, 1.0), 0.0)
        rounds += 1
        with np.errstate(over="ignore", invalid="ignore"):
            c = k.T @ (a * pop)
        b = np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 0.0)
    return a, b, rounds, error


def deterrence(t, decay, beta, min_time):
    t = np.asarray(t, dtype=np.float64)
    if decay == "power":
        return np.maximum(t, min_time) ** (-beta)
    return np.exp(-beta * t)


def _assign_rows(rows, reach, s, is_core, threshold, core, share, second):
    """docs/model.md's assignment for origins ``rows`` (their rows of ``reach`` and ``s``):
    a core keeps itself; another town joins its best reachable core (ties: lower index)
    when the share reaches the threshold. Fills core, share and the runner-up share."""
    for k, i in enumerate(rows):
        if is_core[i]:
            core[i] = i
            share[i] = 1.0
            continue
        candidates = np.flatnonzero(reach[k] & is_core)
        if candidates.size == 0:
            continue
        order = np.argsort(-s[k, candidates], kind="stable")  # ties: lower index first
        best = candidates[order[0]]
        share[i] = s[k, best]
        if candidates.size > 1:
            second[i] = s[k, candidates[order[1]]]
        if s[k, best] >= threshold:
            core[i] = best


def _summaries(population, is_core, core):
    """agglo_population, coverage and n_agglomerations of an assignment."""
    agglo = np.zeros(len(population))
    members = (core >= 0) & ~is_core
    for c in np.flatnonzero(is_core):
        agglo[c] = population[c] + population[members & (core == c)].sum()
    small = ~is_core
    coverage = population[members].sum() / population[small].sum() if small.any() else np.nan
    n_agg = sum(1 for c in np.flatnonzero(is_core) if (members & (core == c)).any())
    return agglo, coverage, n_agg


def scenario(
    lat,
    lon,
    population,
    region,
    is_core,
    mode: dict,
    closed: bool,
    block: int = 512,
    keep_pairs: bool = False,
    minutes=None,
    origins: int | None = None,
    mass=None,
):
    """One mode of one scenario. ``mode`` holds docs/model.md's keys (speed_kmh, cap_min, ...).
    ``origins``: only the first that many origin rows (the benchmarks time a national case
    on a sample of rows; the other towns' results stay unset). ``mass``: the destination
    mass (a town table's ``mass`` column); None: the population.

    Returns docs/model.md's per-town results plus, for checks, ``s_home``, the runner-up core
    share ``second`` and the smallest ``|t_ij - cap|`` per origin ``cap_gap``.
    """
    n = len(population)
    core = np.full(n, -1, dtype=np.int64)
    share = np.full(n, np.nan)
    second = np.full(n, np.nan)
    n_reachable = np.zeros(n, dtype=np.int64)
    inflow = np.zeros(n)
    s_home = np.full(n, np.nan)
    cap_gap = np.full(n, np.inf)
    pairs = []
    dest = population if mass is None else mass
    last = n if origins is None else min(origins, n)
    for start in range(0, last, block):
        rows = np.arange(start, min(start + block, last))
        t = travel(lat, lon, rows, mode, minutes)
        reach = t <= mode["cap_min"]
        reach[np.arange(len(rows)), rows] = False
        if closed:
            reach &= region[rows, None] == region[None, :]
        gap = np.abs(t - mode["cap_min"])
        gap[np.arange(len(rows)), rows] = np.inf
        cap_gap[rows] = gap.min(axis=1)
        w = np.where(
            reach,
            dest[None, :] ** mode["gamma"] * deterrence(t, mode["decay"], mode["beta"], mode["min_time_min"]),
            0.0,
        )
        if mode["self_time_min"] is None:
            w_self = np.zeros(len(rows))
        else:
            w_self = dest[rows] ** mode["gamma"] * deterrence(
                mode["self_time_min"], mode["decay"], mode["beta"], mode["min_time_min"]
            )
        denom = w_self + w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(reach, w / denom[:, None], 0.0)
            s_home[rows] = np.where(denom > 0, w_self / denom, np.nan)
        inflow += (population[rows, None] * s).sum(axis=0)
        n_reachable[rows] = reach.sum(axis=1)
        if keep_pairs:
            pairs.append((rows, t, s, reach))
        _assign_rows(rows, reach, s, is_core, mode["threshold"], core, share, second)
    agglo, coverage, n_agg = _summaries(population, is_core, core)
    out = {
        "core": core,
        "share": share,
        "n_reachable": n_reachable,
        "inflow": inflow,
        "agglo_population": agglo,
        "coverage": coverage,
        "n_agglomerations": n_agg,
        "s_home": s_home,
        "second": second,
        "cap_gap": cap_gap,
    }
    if keep_pairs:
        out["pairs"] = pairs
    return out


ANDERSON_MEMORY = 8
STALL_ROUNDS = 16


def anderson_balance(k, pop, support, tol, max_iter):
    """The symmetric balance x_i sum_j k_ij pop_j x_j = 1, dense: plain step g = u - log(r)/2
    (u = log x), mixed by Anderson type II with the last ANDERSON_MEMORY residual differences
    (least squares by the normal equations, ridge 1e-10 of their largest diagonal). A mixed
    iterate that leaves the floats is dropped for a plain step from the last finite one; a
    plain step that does means no balanced table: error inf. When STALL_ROUNDS rounds bring no
    new lowest error, the history is dropped (plain steps until it fills again). Returns
    (x, rounds, error)."""
    m0 = k @ pop
    u = np.where(support, np.log(np.where(support, 1.0 / np.sqrt(np.where(support, m0, 1.0)), 1.0)), 0.0)
    d_f, d_g, prev, good, mixed = [], [], None, u, False
    error, rounds, x = np.inf, 0, np.where(support, np.exp(u), 0.0)
    best, stalled = np.inf, 0
    for it in range(1, max_iter + 1):
        rounds = it
        x = np.where(support, np.exp(u), 0.0)
        r = x * (k @ (x * pop))
        ok = np.all((x[support] > 0) & (x[support] < np.inf) & (r[support] > 0) & (r[support] < np.inf))
        if not ok:
            error = np.inf
            if not mixed:
                break
            u, d_f, d_g, prev, mixed = good, [], [], None, False
            continue
        error = float(np.max(np.abs(r - 1.0)[support], initial=0.0))
        if error < tol:
            break
        best, stalled = (error, 0) if error < best else (best, stalled + 1)
        if stalled >= STALL_ROUNDS:  # the mixing stalls: plain steps, a new history
            d_f, d_g, prev, stalled = [], [], None, 0
        good = u
        fk = np.where(support, -0.5 * np.log(np.where(support, r, 1.0)), 0.0)
        g = u + fk
        if prev is not None:
            d_f.append(fk - prev[0])
            d_g.append(g - prev[1])
            d_f, d_g = d_f[-ANDERSON_MEMORY:], d_g[-ANDERSON_MEMORY:]
        prev = (fk, g)
        u, mixed = g, False
        if d_f:
            df = np.array(d_f)
            h = df @ df.T
            h[np.diag_indices_from(h)] += 1e-10 * np.max(np.diag(h))
            try:
                gamma = np.linalg.solve(h, df @ fk)
            except np.linalg.LinAlgError:
                gamma = None
            if gamma is not None and np.all(np.isfinite(gamma)):
                u = g - gamma @ np.array(d_g)
            mixed = True
    return x, rounds, error  # x of the last round evaluated


def scenario_dense(
    lat, lon, population, region, is_core, mode: dict, closed: bool, tol=1e-9, max_iter=1000, minutes=None
):
    """docs/model.md's other flow models ("attraction", "doubly", "radiation"), dense N x N.

    Same results as :func:`scenario`, plus ``ipf_iterations`` and ``ipf_error`` (doubly).
    ``minutes``: a dense travel-time table (see :func:`travel`); the doubly model balances an
    asymmetric one by plain :func:`furness`.
    """
    n = len(population)
    idx = np.arange(n)
    t = travel(lat, lon, idx, mode, minutes)
    reach = t <= mode["cap_min"]
    reach[idx, idx] = False
    if closed:
        reach &= region[:, None] == region[None, :]
    gap = np.abs(t - mode["cap_min"])
    gap[idx, idx] = np.inf
    f = np.where(reach, deterrence(t, mode["decay"], mode["beta"], mode["min_time_min"]), 0.0)
    pop = population.astype(np.float64)
    iterations, error, margin_error = 0, np.nan, np.nan
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if mode["model"] == "attraction":
            w = pop[:, None] ** mode["alpha"] * f  # w'_ij over the i that reach j
            a = w.sum(axis=0)
            big_t = np.where(reach, pop[None, :] * w / np.where(a > 0, a, 1.0)[None, :], 0.0)
            s = big_t / pop[:, None]
            inflow = big_t.sum(axis=0)
        elif mode["model"] == "doubly":
            k = f.copy()
            if mode["self_time_min"] is not None:
                k[idx, idx] = deterrence(mode["self_time_min"], mode["decay"], mode["beta"], mode["min_time_min"])
            support = k.sum(axis=1) > 0
            if minutes is not None and not np.array_equal(minutes, minutes.T):
                a, b, iterations, error = furness(k, pop, tol, max_iter)
            else:
                # Symmetric balancing: A = B = x with x_i sum_j k_ij x_j pop_j = 1 (rows = columns),
                # plain step u = u - log(r) / 2 in u = log x, Anderson-mixed with the last 8 steps.
                x, iterations, error = anderson_balance(k, pop, support, tol, max_iter)
                a = b = x
            big_t = a[:, None] * pop[:, None] * k * b[None, :] * pop[None, :]
            if np.isfinite(error):  # both margins of the whole table, self pair included
                keep = support & (pop > 0)
                rows_err = np.abs(big_t.sum(axis=1) / pop - 1.0)[keep]
                cols_err = np.abs(big_t.sum(axis=0) / pop - 1.0)[keep]
                margin_error = float(max(rows_err.max(initial=0.0), cols_err.max(initial=0.0)))
            big_t[idx, idx] = 0.0
            s = np.where(reach, big_t / pop[:, None], 0.0)
            inflow = big_t.sum(axis=0)
        else:  # radiation
            s = np.zeros((n, n))
            for i in range(n):
                js = np.flatnonzero(reach[i])
                closer = np.array([pop[js][t[i, js] < t[i, j]].sum() for j in js])
                w = pop[i] * pop[js] / ((pop[i] + closer) * (pop[i] + pop[js] + closer))
                if w.sum() > 0:
                    s[i, js] = w / w.sum()
            inflow = (pop[:, None] * s).sum(axis=0)
    core = np.full(n, -1, dtype=np.int64)
    share = np.full(n, np.nan)
    second = np.full(n, np.nan)
    _assign_rows(idx, reach, s, is_core, mode["threshold"], core, share, second)
    agglo, coverage, n_agg = _summaries(pop, is_core, core)
    return {
        "core": core,
        "share": share,
        "second": second,
        "n_reachable": reach.sum(axis=1),
        "inflow": inflow,
        "agglo_population": agglo,
        "coverage": coverage,
        "n_agglomerations": n_agg,
        "cap_gap": gap.min(axis=1),
        "ipf_iterations": iterations,
        "ipf_error": error,
        "margin_error": margin_error,
    }
