"""Production-constrained gravity shares over a neighbourhood, for a batch of scenarios.

Notes
-----
MODEL.md, "Shares" and "Deterrence"::

    w_ij = population_j ^ gamma · f(t_ij)            j in R(i)
    w_ii = population_i ^ gamma · f(self_time_min)   (absent when self_time_min is null)
    s_ij = w_ij / (w_ii + Σ_k w_ik)
    power: f(t) = max(t, min_time_min) ^ -beta;  exponential: f(t) = exp(-beta t)

Weights are handled as logarithms shifted by a per-row reference, so that
``s_ij = exp(lw_ij - shift) / Σ exp(lw_ik - shift)``: the same ratio, without the
overflow of ``population ^ gamma`` or the underflow of ``exp(-beta t)``.

How the work is laid out (issue #4):

- A row of the neighbourhood is sorted by distance, so ``R(i)`` is a prefix of it
  (:func:`reach_end`): found by bisection on the float32 log-distances inside a
  per-row bucket, and settled with MODEL.md's float64 travel time whenever float32
  could be in doubt. Reachability is exact, never an artefact of single precision.
- A pair's log-weight, relative to the row (``lp_rel`` = log population minus the
  row's largest), is one expression in float32 of two contiguous float32 loads, in
  base 2 (``log2 e`` is folded into the per-scenario constants ``G, P, K``)::

      x = fma(G, lp, fma(P, max(ld + c0, c2), fma(K, d, -ref)))     (term = 2^x)

  with ``G = gamma·log2 e``, ``P = -beta·log2 e, K = 0`` for power and ``P = 0,
  K = -beta·log2 e·60·circuity/speed`` for exponential deterrence (``ld`` = log km,
  ``d = exp(ld)``, ``c0`` = log of the minutes per km, ``c2 = log min_time``; the
  innermost FMA only where some scenario is exponential). ``2^x`` is
  :func:`agglo.kernels.fastexp.exp2_32`, which vectorises. ``ref`` (base 2) bounds the
  row's log-weights from above (nearest town, largest population, self term); if
  every term underflows (``gamma`` far above 1), the row is redone with its exact
  maximum. Shifts leave the kernels in natural logarithms (``ref · ln 2``).
- Two loop shapes, chosen by the batch size: few scenarios vectorise over the pairs
  of a row (:func:`_pair_terms`), a batch of 8 or more vectorises over scenarios
  (the scenario loop innermost, a pair loaded once for all). Both give the same bits:
  every term is computed by the same IEEE operations (no fast-math flag here; the
  polynomial's FMAs are explicit), and every row sum adds its terms into 32 float64
  lanes by ``q mod 32`` in row order, combined pairwise in a fixed tree. So results are
  bit-identical for any batch size and any number of threads.
- The best core is taken among the row's candidate cores only, in float64 from their
  stored distances; exact ties go to the lower town index.
"""

import numpy as np

from agglo.kernels.fastexp import exp2_32, exp32, fma32
from agglo.kernels.geometry import haversine_km
from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.simd import lane_sums32

DECAY_CODES = {"power": 0, "exponential": 1}
LANES = 32  # a row sum's float64 lanes: 4 independent vector chains of 8 in the pair loop
INNER_MIN = 8  # batches at least this large loop over scenarios innermost
_UNDERFLOW = 1e-30  # a row total below this means the reference overshot: redo the row exactly
_DOUBT = 1e-6  # |log d - log limit| below which float32 cannot decide reachability
LOG2E = 1.4426950408889634  # float64: scales natural log-weights to base 2
LN2 = 0.6931471805599453


@strict
def travel_minutes(lat, lon, i, j, circuity, speed):
    """MODEL.md's t_ij, bit for bit: 60 · circuity · d_ij / speed."""
    return 60 * circuity * haversine_km(lat[i], lon[i], lat[j], lon[j]) / speed


@strict
def reach_end(i, start, stop, neighbour, log_dist, bucket, radius_km, lat, lon, circuity, speed, cap):
    """Length of the prefix of row ``i`` with t_ij <= cap, exactly as MODEL.md decides it.

    ``bucket[i, k]`` is the first row position beyond ``radius_km · sqrt(k / K)``.
    """
    n = stop - start
    if n == 0:
        return 0
    limit_km = cap * speed / (60 * circuity)
    if not limit_km > 0:
        # cap 0: only places at distance 0 (log -inf) are reachable.
        end = 0
        while end < n and log_dist[start + end] == -np.inf:
            end += 1
        return end
    limit = np.log(limit_km)
    n_buckets = bucket.shape[1] - 1
    k = n_buckets
    if limit_km < radius_km:
        k = int(n_buckets * (limit_km / radius_km) ** 2)
    lo = bucket[i, k - 1] if k > 0 else 0
    hi = bucket[i, min(k + 2, n_buckets)]
    while lo < hi:
        mid = (lo + hi) // 2
        if np.float64(log_dist[start + mid]) > limit:
            hi = mid
        else:
            lo = mid + 1
    end = lo
    doubt = _DOUBT * max(1.0, abs(limit))
    # The bucket may have missed (rounding at its edges) or float32 may be in doubt
    # near the limit: walk with the exact travel time.
    while end > 0 and (
        np.float64(log_dist[start + end - 1]) > limit + doubt
        or (
            np.float64(log_dist[start + end - 1]) > limit - doubt
            and travel_minutes(lat, lon, i, neighbour[start + end - 1], circuity, speed) > cap
        )
    ):
        end -= 1
    while end < n and (
        np.float64(log_dist[start + end]) < limit - doubt
        or (
            np.float64(log_dist[start + end]) < limit + doubt
            and travel_minutes(lat, lon, i, neighbour[start + end], circuity, speed) <= cap
        )
    ):
        end += 1
    return end


@strict
def log_deterrence(t, decay, beta, min_time):
    """log f(t) in float64."""
    if decay == 0:
        return -beta * np.log(max(t, min_time))
    return -beta * t


@strict
def lane_total(lanes):
    """The fixed combination of the lane sums: pairwise, (0+1), (2+3), ... then again."""
    width = LANES
    while width > 1:
        width //= 2
        for i in range(width):
            lanes[i] = lanes[2 * i] + lanes[2 * i + 1]
    return lanes[0]


@strict
def _terms_power(ld, lp, n, g, p, c0, c2, nref, out):
    for q in range(n):
        out[q] = exp2_32(fma32(g, lp[q], fma32(p, max(ld[q] + c0, c2), nref)))


@strict
def _terms_exponential(ld, lp, n, g, p, k, c0, c2, nref, out):
    for q in range(n):
        out[q] = exp2_32(fma32(g, lp[q], fma32(p, max(ld[q] + c0, c2), fma32(k, exp32(ld[q]), nref))))


@strict
def _keep_home(nb, region, home, n, out):
    zero = np.float32(0.0)
    for q in range(n):
        out[q] = out[q] if region[nb[q]] == home else zero


@strict
def _pair_terms(ld, lp, nb, region, home, closed, n, decay, g, p, c0, c2, k, nref, out):
    """out[q] = 2^x_q for the first n pairs of a row (0 for a foreign pair under closed
    borders), x = fma(G, lp, fma(P, max(ld + c0, c2), nref)) (power) or with
    fma(K, exp(ld), nref) in place of nref (exponential). ``lp`` is the row's lp_rel
    (origin pass) or the origin terms gathered by ``nb`` (inflow pass: then ``G`` is 1
    and ``nref`` is G_j·log population_j). Branches stay outside the loops, which LLVM
    vectorises."""
    if decay == 0:
        _terms_power(ld, lp, n, g, p, c0, c2, nref, out)
    else:
        _terms_exponential(ld, lp, n, g, p, k, c0, c2, nref, out)
    if closed:
        _keep_home(nb, region, home, n, out)


@strict
def _lane_sum(terms, n, lanes):
    """Σ terms[:n] by 32 lanes (q mod 32, in order), combined by :func:`lane_total`;
    the full blocks of 32 by four vector chains of 8 lanes (:func:`agglo.kernels.simd.lane_sums32`)."""
    full = n - n % LANES
    sums = lane_sums32(terms, full)
    for i in range(LANES):
        lanes[i] = sums[i]
    for q in range(full, n):
        lanes[q - full] += np.float64(terms[q])
    return lane_total(lanes)


@strict
def _count_same(nb, region, home, n):
    count = 0
    for q in range(n):
        count += 1 if region[nb[q]] == home else 0
    return count


@strict
def _exact_ref(ld, lp, nb, region, home, closed, n, decay, g, p, c0, c2, k, self2):
    """The largest base-2 log-weight of the row, computed as the terms are (float32)."""
    top = self2
    zero = np.float32(0.0)
    for q in range(n):
        if closed and region[nb[q]] != home:
            continue
        if decay == 0:
            x = fma32(g, lp[q], fma32(p, max(ld[q] + c0, c2), zero))
        else:
            x = fma32(g, lp[q], fma32(p, max(ld[q] + c0, c2), fma32(k, exp32(ld[q]), zero)))
        top = max(top, np.float64(x))
    return top


@strict
def mode_arrays(circuity, speed, decay, beta, gamma, min_time):
    """Per-scenario constants: float32 G, P, K (base 2), c0, c2 of the term expression,
    and float64 minutes per km, its log and log min_time."""
    n = circuity.shape[0]
    g = np.empty(n, dtype=np.float32)
    p = np.empty(n, dtype=np.float32)
    k = np.empty(n, dtype=np.float32)
    c0 = np.empty(n, dtype=np.float32)
    c2 = np.empty(n, dtype=np.float32)
    scale = np.empty(n, dtype=np.float64)
    log_scale = np.empty(n, dtype=np.float64)
    log_min = np.empty(n, dtype=np.float64)
    for s in range(n):
        scale[s] = 60 * circuity[s] / speed[s]
        log_scale[s] = np.log(scale[s])
        log_min[s] = np.log(min_time[s])
        g[s] = np.float32(gamma[s] * LOG2E)
        p[s] = np.float32(-beta[s] * LOG2E) if decay[s] == 0 else np.float32(0.0)
        k[s] = np.float32(-beta[s] * LOG2E * scale[s]) if decay[s] == 1 else np.float32(0.0)
        c0[s] = np.float32(log_scale[s])
        c2[s] = np.float32(log_min[s])
    return g, p, k, c0, c2, scale, log_scale, log_min


@strict
def _any_exponential(decay):
    for s in range(decay.shape[0]):
        if decay[s] == 1:
            return True
    return False


@strict
def _longest_row(offsets):
    longest = 0
    for i in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[i + 1] - offsets[i])
    return longest


@strict
def candidate_log_f(c, cand_logd, cand_d, decay, beta, scale, log_scale, log_min):
    """log f(t) of candidate core ``c`` in float64 from its stored distance:
    -beta · max(log d + log scale, log min_time) (power) or -beta · scale · d."""
    if decay == 0:
        return -beta * max(cand_logd[c] + log_scale, log_min)
    return -beta * (scale * cand_d[c])


@strict
def _best_core(
    i,
    s,
    end,
    cand_offsets,
    cand_pos,
    cand_town,
    cand_logd,
    cand_d,
    is_core,
    region,
    closed,
    decay,
    beta,
    gamma,
    log_pop,
    scale,
    log_scale,
    log_min,
):
    """argmax over the reachable candidate cores of their float64 log-weight (ties:
    lower index); returns (-1, -inf) when none is reachable. Branch-free body: which
    candidate wins is data, not a branch to mispredict."""
    n_towns = log_pop.shape[0]
    best = n_towns
    best_lw = -np.inf
    home = region[i]
    opened = not closed
    for c in range(cand_offsets[i], cand_offsets[i + 1]):
        if cand_pos[c] >= end:
            break
        j = cand_town[c]
        lw = gamma * log_pop[j] + candidate_log_f(c, cand_logd, cand_d, decay, beta, scale, log_scale, log_min)
        ok = is_core[s, j] & (opened | (region[j] == home))
        take = ok & ((lw > best_lw) | ((lw == best_lw) & (j < best)))
        best = j if take else best
        best_lw = lw if take else best_lw
    if best == n_towns:
        return -1, -np.inf
    return best, best_lw


@strict
def _best_cores_all(
    i,
    ends,
    cand_offsets,
    cand_pos,
    cand_town,
    cand_logd,
    cand_d,
    core_t,
    region,
    opened,
    decay,
    beta,
    gamma,
    log_pop,
    scale,
    log_scale,
    log_min,
    best,
    best_lw,
):
    """:func:`_best_core` for every scenario at once, the scenario loop innermost: the
    same float64 operations, the same candidates in the same order, the same rule."""
    n_scen = ends.shape[0]
    n_towns = log_pop.shape[0]
    qmax = 0
    for s in range(n_scen):
        best[s] = n_towns
        best_lw[s] = -np.inf
        qmax = max(qmax, ends[s])
    home = region[i]
    for c in range(cand_offsets[i], cand_offsets[i + 1]):
        q = cand_pos[c]
        if q >= qmax:
            break
        j = cand_town[c]
        lp = log_pop[j]
        ld = cand_logd[c]
        d = cand_d[c]
        same = region[j] == home
        is_core = core_t[j]
        for s in range(n_scen):
            power = gamma[s] * lp - beta[s] * max(ld + log_scale[s], log_min[s])
            exponential = gamma[s] * lp - beta[s] * (scale[s] * d)
            lw = power if decay[s] == 0 else exponential
            ok = (q < ends[s]) & is_core[s] & (opened[s] | same)
            take = ok & ((lw > best_lw[s]) | ((lw == best_lw[s]) & (j < best[s])))
            best[s] = j if take else best[s]
            best_lw[s] = lw if take else best_lw[s]
    for s in range(n_scen):
        if best[s] == n_towns:
            best[s] = -1


@strict
def _batch_shape(ends, closed, decay, c0, c2):
    """(qmin, qmax, shape of the unmasked part: 0 or 1) of a row for :func:`_scenario_terms`."""
    qmin = ends[0]
    qmax = ends[0]
    uniform = True
    for s in range(ends.shape[0]):
        qmin = min(qmin, ends[s])
        qmax = max(qmax, ends[s])
        uniform = uniform and decay[s] == 0 and c0[s] == c0[0] and c2[s] == c2[0]
        if closed[s]:
            qmin = 0
    return qmin, qmax, 0 if uniform else 1


@strict
def _inner_sums(
    ld,
    lp,
    term_t,
    nb,
    ends,
    region,
    home,
    closed,
    opened,
    decay,
    use_k,
    g,
    p,
    k,
    c0,
    c2,
    nref,
    acc,
    buf,
    buf2,
    buf3,
    buf4,
):
    """Lane sums of a row for every scenario, the scenario loop innermost (vectorised).

    ``acc[q mod 32, s] += 2^x`` with ``x = fma(a_s, b, fma(P_s, max(ld + c0_s, c2_s),
    fma(K_s, d, nref_s)))`` (the innermost FMA only when some scenario is exponential):
    for the origin pass ``a = G`` and ``b = lp_rel[q]`` (``term_t`` is empty); for the
    inflow pass ``a = term_t[nb[q]]`` (origin terms, contiguous over scenarios: no
    gather) and ``b = 1``. The same terms, in the same order, as :func:`_pair_terms` +
    :func:`_lane_sum` (for a power scenario in a batch with exponential ones,
    fma(0, d, nref) is nref up to the sign of a zero, which 2^x does not see). The forms
    of the scenario loop give the same bits. Where every scenario takes the pair, with
    the same c0, c2 and none exponential (max(ld + c0, c2) is shared), four pairs share
    one loop over the scenarios (four independent exp chains per vector step; measured
    0.9 ms of 9.2 less per scenario on Mexico than one pair per loop), each into its own
    float32 buffer (rows of one 2-D buffer were slower), then each buffer into its lane
    in pair order. The other pairs go one at a time, each scenario with its own c0, c2;
    from the shortest reach on, only scenarios with q < ends[s] and, under closed
    borders, a same-region pair keep the term (the others add +0.0).
    """
    acc[:, :] = 0.0
    n_scen = ends.shape[0]
    qmin, qmax, shape = _batch_shape(ends, closed, decay, c0, c2)
    inflow = term_t.shape[0] > 0
    one = np.float32(1.0)
    zero = np.float32(0.0)
    a = g
    b = one
    a2 = a3 = a4 = g
    b2 = b3 = b4 = one
    q = 0
    while q < qmax:
        if q + 3 < qmin and shape == 0:
            if inflow:
                a = term_t[nb[q]]
                a2 = term_t[nb[q + 1]]
                a3 = term_t[nb[q + 2]]
                a4 = term_t[nb[q + 3]]
            else:
                b = lp[q]
                b2 = lp[q + 1]
                b3 = lp[q + 2]
                b4 = lp[q + 3]
            m = max(ld[q] + c0[0], c2[0])
            m2 = max(ld[q + 1] + c0[0], c2[0])
            m3 = max(ld[q + 2] + c0[0], c2[0])
            m4 = max(ld[q + 3] + c0[0], c2[0])
            for s in range(n_scen):
                buf[s] = exp2_32(fma32(a[s], b, fma32(p[s], m, nref[s])))
                buf2[s] = exp2_32(fma32(a2[s], b2, fma32(p[s], m2, nref[s])))
                buf3[s] = exp2_32(fma32(a3[s], b3, fma32(p[s], m3, nref[s])))
                buf4[s] = exp2_32(fma32(a4[s], b4, fma32(p[s], m4, nref[s])))
            row = acc[q % LANES]
            for s in range(n_scen):
                row[s] += np.float64(buf[s])
            row = acc[(q + 1) % LANES]
            for s in range(n_scen):
                row[s] += np.float64(buf2[s])
            row = acc[(q + 2) % LANES]
            for s in range(n_scen):
                row[s] += np.float64(buf3[s])
            row = acc[(q + 3) % LANES]
            for s in range(n_scen):
                row[s] += np.float64(buf4[s])
            q += 4
            continue
        ldq = ld[q]
        if inflow:
            a = term_t[nb[q]]
        else:
            b = lp[q]
        row = acc[q % LANES]
        # One pair: terms into a float32 buffer first (a vector loop), then into its lane.
        if use_k:
            dq = exp32(ldq)
            for s in range(n_scen):
                buf[s] = exp2_32(fma32(a[s], b, fma32(p[s], max(ldq + c0[s], c2[s]), fma32(k[s], dq, nref[s]))))
        else:
            for s in range(n_scen):
                buf[s] = exp2_32(fma32(a[s], b, fma32(p[s], max(ldq + c0[s], c2[s]), nref[s])))
        if q >= qmin:
            same = region[nb[q]] == home
            for s in range(n_scen):
                ok = (q < ends[s]) & (same | opened[s])
                buf[s] = buf[s] if ok else zero
        for s in range(n_scen):
            row[s] += np.float64(buf[s])
        q += 1


@strict
def _lanes_of(acc, s, lanes):
    for q in range(LANES):
        lanes[q] = acc[q, s]
    return lane_total(lanes)


@strict_parallel
def origin_pass(
    chunks,
    offsets,
    neighbour,
    log_dist,
    lp_rel,
    lp_max,
    bucket,
    radius_km,
    log_pop,
    lat,
    lon,
    region,
    cand_offsets,
    cand_pos,
    cand_town,
    cand_logd,
    cand_d,
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
    """Per origin town and scenario: reach, log-shift, denominator, best core.

    Parameters are per scenario (length S) except the town and neighbourhood arrays;
    ``chunks`` splits the towns into ranges of about equal pair count;
    ``cand_*[cand_offsets[i]:cand_offsets[i+1]]`` are the row positions (ascending),
    towns, log-distances and distances of the neighbours that may be cores in some scenario.

    Returns ``n_reachable`` (S, N) int32, ``reach`` (S, N) int32 (length of the
    reachable prefix of the row; differs from ``n_reachable`` under closed borders),
    ``shift`` (S, N) float64, ``denominator`` (S, N) float64 (Σ exp(lw - shift), self
    term included; 0 when there is nothing), ``best_core`` (S, N) int32 (-1: no core
    reachable) and ``best_weight`` (S, N) float64 (exp(lw - shift) of that core).
    """
    n_scen = cap.shape[0]
    n_towns = log_pop.shape[0]
    n_reachable = np.zeros((n_scen, n_towns), dtype=np.int32)
    reach = np.zeros((n_scen, n_towns), dtype=np.int32)
    shift = np.zeros((n_scen, n_towns), dtype=np.float64)
    denominator = np.zeros((n_scen, n_towns), dtype=np.float64)
    best_core = np.full((n_scen, n_towns), -1, dtype=np.int32)
    best_weight = np.zeros((n_scen, n_towns), dtype=np.float64)
    g, p, k, c0, c2, scale, log_scale, log_min = mode_arrays(circuity, speed, decay, beta, gamma, min_time)
    has_self = ~np.isnan(self_time)
    self_det = np.zeros(n_scen, dtype=np.float64)
    for s in range(n_scen):
        if has_self[s]:
            self_det[s] = log_deterrence(self_time[s], decay[s], beta[s], min_time[s])
    inner = n_scen >= INNER_MIN
    use_k = _any_exponential(decay)
    opened = ~closed
    longest = _longest_row(offsets)
    no_terms = np.zeros((0, n_scen), dtype=np.float32)
    core_t = np.ascontiguousarray(is_core.T)
    for ch in prange(chunks.shape[0] - 1):
        terms = np.empty(longest, dtype=np.float32)
        lanes = np.zeros(LANES, dtype=np.float64)
        counts = np.zeros(n_scen, dtype=np.int64)
        nrefs = np.zeros(n_scen, dtype=np.float32)
        selfs = np.zeros(n_scen, dtype=np.float64)
        ends = np.zeros(n_scen, dtype=np.int64)
        acc = np.zeros((LANES, n_scen), dtype=np.float64)
        buf = np.zeros(n_scen, dtype=np.float32)
        buf2 = np.zeros(n_scen, dtype=np.float32)
        buf3 = np.zeros(n_scen, dtype=np.float32)
        buf4 = np.zeros(n_scen, dtype=np.float32)
        bests = np.zeros(n_scen, dtype=np.int64)
        best_lws = np.zeros(n_scen, dtype=np.float64)
        for i in range(chunks[ch], chunks[ch + 1]):
            start = offsets[i]
            stop = offsets[i + 1]
            ld = log_dist[start:stop]
            lp = lp_rel[start:stop]
            nb = neighbour[start:stop]
            home = region[i]
            for s in range(n_scen):
                if s > 0 and circuity[s] == circuity[s - 1] and speed[s] == speed[s - 1] and cap[s] == cap[s - 1]:
                    end = ends[s - 1]
                else:
                    end = reach_end(
                        i, start, stop, neighbour, log_dist, bucket, radius_km, lat, lon, circuity[s], speed[s], cap[s]
                    )
                count = _count_same(nb, region, home, end) if closed[s] else end
                self_rel = -np.inf
                if has_self[s]:
                    self_rel = gamma[s] * (log_pop[i] - lp_max[i]) + self_det[s]
                ref = self_rel * LOG2E  # base 2 from here to the shift
                if count > 0 and gamma[s] >= 0:
                    # lp_rel <= 0 and f falls with t: the nearest town's deterrence bounds the row.
                    if decay[s] == 0:
                        ref = max(ref, np.float64(p[s] * max(ld[0] + c0[s], c2[s])))
                    else:
                        ref = max(ref, np.float64(k[s] * exp32(ld[0])))
                elif count > 0:
                    ref = _exact_ref(
                        ld, lp, nb, region, home, closed[s], end, decay[s], g[s], p[s], c0[s], c2[s], k[s], ref
                    )
                ends[s] = end
                counts[s] = count
                nrefs[s] = -np.float32(ref)
                selfs[s] = self_rel
                reach[s, i] = end
                n_reachable[s, i] = count
            if inner:
                _best_cores_all(
                    i,
                    ends,
                    cand_offsets,
                    cand_pos,
                    cand_town,
                    cand_logd,
                    cand_d,
                    core_t,
                    region,
                    opened,
                    decay,
                    beta,
                    gamma,
                    log_pop,
                    scale,
                    log_scale,
                    log_min,
                    bests,
                    best_lws,
                )
                _inner_sums(
                    ld,
                    lp,
                    no_terms,
                    nb,
                    ends,
                    region,
                    home,
                    closed,
                    opened,
                    decay,
                    use_k,
                    g,
                    p,
                    k,
                    c0,
                    c2,
                    nrefs,
                    acc,
                    buf,
                    buf2,
                    buf3,
                    buf4,
                )
            for s in range(n_scen):
                if counts[s] == 0 and not has_self[s]:
                    continue
                end = ends[s]
                nref = nrefs[s]
                if inner:
                    total = _lanes_of(acc, s, lanes)
                else:
                    _pair_terms(
                        ld, lp, nb, region, home, closed[s], end, decay[s], g[s], p[s], c0[s], c2[s], k[s], nref, terms
                    )
                    total = _lane_sum(terms, end, lanes)
                if counts[s] > 0 and total < _UNDERFLOW:
                    nref = -np.float32(
                        _exact_ref(
                            ld,
                            lp,
                            nb,
                            region,
                            home,
                            closed[s],
                            end,
                            decay[s],
                            g[s],
                            p[s],
                            c0[s],
                            c2[s],
                            k[s],
                            selfs[s] * LOG2E,
                        )
                    )
                    _pair_terms(
                        ld, lp, nb, region, home, closed[s], end, decay[s], g[s], p[s], c0[s], c2[s], k[s], nref, terms
                    )
                    total = _lane_sum(terms, end, lanes)
                ref_nat = -np.float64(nref) * LN2  # the terms are exp(lw - ref_nat)
                if has_self[s]:
                    total += np.exp(selfs[s] - ref_nat)
                row_shift = ref_nat + gamma[s] * lp_max[i]
                shift[s, i] = row_shift
                denominator[s, i] = total
                if inner:
                    best, best_lw = bests[s], best_lws[s]
                else:
                    best, best_lw = _best_core(
                        i,
                        s,
                        end,
                        cand_offsets,
                        cand_pos,
                        cand_town,
                        cand_logd,
                        cand_d,
                        is_core,
                        region,
                        closed[s],
                        decay[s],
                        beta[s],
                        gamma[s],
                        log_pop,
                        scale[s],
                        log_scale[s],
                        log_min[s],
                    )
                best_core[s, i] = best
                if best >= 0:
                    best_weight[s, i] = np.exp(best_lw - row_shift)
    return n_reachable, reach, shift, denominator, best_core, best_weight


@strict_parallel
def inflow_pass(
    chunks,
    order_chunks,
    order,
    offsets,
    neighbour_rank,
    log_dist,
    log_pop,
    region,
    closed,
    reach,
    shift,
    denominator,
    circuity,
    speed,
    decay,
    beta,
    gamma,
    min_time,
):
    """inflow_j = Σ_{i: j in R(i)} population_i · s_ij, per scenario (S, N) float64.

    ``shift`` and ``denominator`` are :func:`origin_pass`'s; with the origin term
    ``o_i = log(population_i) - shift_i - log(denominator_i)`` (-inf for a town with
    nothing), ``population_i · s_ij = exp(o_i + log f(t_ij) + gamma · log(population_j))``;
    the kernel keeps ``o_i · log2 e`` in float32, per (scenario, town) and per (town,
    scenario).
    Reachability is symmetric (t_ij = t_ji, same region), so town j gathers from the
    reachable prefix of its own row instead of every origin scattering into it: no
    write is shared by threads. The origin terms are stored in a spatial order, town
    ``order[r]`` at position ``r`` (``neighbour_rank`` holds each pair's neighbour by
    that position); batches of 8 or more also take the towns in that order
    (``order_chunks`` are ranges of it), so that nearby towns read nearby, mostly
    cached origin terms; smaller batches, bound by streaming the rows, take them in
    index order (``chunks``). Each town's sum is the same whatever the order.
    """
    n_scen = circuity.shape[0]
    n_towns = log_pop.shape[0]
    inflow = np.zeros((n_scen, n_towns), dtype=np.float64)
    g, p, k, c0, c2, scale, log_scale, log_min = mode_arrays(circuity, speed, decay, beta, gamma, min_time)
    inner = n_scen >= INNER_MIN
    use_k = _any_exponential(decay)
    opened = ~closed
    # The origin terms in the layout the loop shape reads: (town, scenario) rows when the
    # scenario loop is innermost, (scenario, town) rows for the pair loop.
    origin_term = np.empty((0 if inner else n_scen, n_towns), dtype=np.float32)
    term_t = np.empty((n_towns if inner else 0, n_scen), dtype=np.float32)
    region_r = np.empty(n_towns, dtype=region.dtype)  # region by position in the order
    for r in prange(n_towns):
        i = order[r]
        region_r[r] = region[i]
        for s in range(n_scen):
            o = np.float32((log_pop[i] - shift[s, i] - np.log(denominator[s, i])) * LOG2E)
            if inner:
                term_t[r, s] = o
            else:
                origin_term[s, r] = o
    longest = _longest_row(offsets)
    one = np.float32(1.0)
    ranges = order_chunks if inner else chunks
    for ch in prange(ranges.shape[0] - 1):
        terms = np.empty(longest, dtype=np.float32)
        gathered = np.empty(longest, dtype=np.float32)
        lanes = np.zeros(LANES, dtype=np.float64)
        nref = np.zeros(n_scen, dtype=np.float32)
        ends = np.zeros(n_scen, dtype=np.int64)
        acc = np.zeros((LANES, n_scen), dtype=np.float64)
        buf = np.zeros(n_scen, dtype=np.float32)
        buf2 = np.zeros(n_scen, dtype=np.float32)
        buf3 = np.zeros(n_scen, dtype=np.float32)
        buf4 = np.zeros(n_scen, dtype=np.float32)
        for at in range(ranges[ch], ranges[ch + 1]):
            j = order[at] if inner else at
            start = offsets[j]
            stop = offsets[j + 1]
            ld = log_dist[start:stop]
            nb = neighbour_rank[start:stop]
            home = region[j]
            for s in range(n_scen):
                ends[s] = reach[s, j]
                nref[s] = np.float32(gamma[s] * LOG2E * log_pop[j])
            if inner:
                _inner_sums(
                    ld,
                    ld,
                    term_t,
                    nb,
                    ends,
                    region_r,
                    home,
                    closed,
                    opened,
                    decay,
                    use_k,
                    g,
                    p,
                    k,
                    c0,
                    c2,
                    nref,
                    acc,
                    buf,
                    buf2,
                    buf3,
                    buf4,
                )
                for s in range(n_scen):
                    inflow[s, j] = _lanes_of(acc, s, lanes)
                continue
            for s in range(n_scen):
                end = ends[s]
                if end == 0:
                    continue
                row_term = origin_term[s]
                for q in range(end):
                    gathered[q] = row_term[np.uint32(nb[q])]
                _pair_terms(
                    ld,
                    gathered,
                    nb,
                    region_r,
                    home,
                    closed[s],
                    end,
                    decay[s],
                    one,
                    p[s],
                    c0[s],
                    c2[s],
                    k[s],
                    nref[s],
                    terms,
                )
                inflow[s, j] = _lane_sum(terms, end, lanes)
    return inflow


@strict_parallel
def pair_shares(
    chunks,
    offsets,
    neighbour,
    lat,
    lon,
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
):
    """One scenario's shares ``s_ij`` for every neighbourhood pair (0 where j is not in
    R(i)), travel times, and the home shares ``s_ii`` (0 without a self term, NaN for a
    town with no reach and no self term), all in float64 from the exact travel times.
    For flow export and checks; scalars are this scenario's parameters."""
    n_towns = log_pop.shape[0]
    share = np.zeros(neighbour.shape[0], dtype=np.float64)
    travel = np.empty(neighbour.shape[0], dtype=np.float64)
    home = np.zeros(n_towns, dtype=np.float64)
    has_self = not np.isnan(self_time)
    for c in prange(chunks.shape[0] - 1):
        for i in range(chunks[c], chunks[c + 1]):
            start = offsets[i]
            stop = offsets[i + 1]
            top = -np.inf
            self_lw = -np.inf
            if has_self:
                self_lw = gamma * log_pop[i] + log_deterrence(self_time, decay, beta, min_time)
                top = self_lw
            for q in range(start, stop):
                j = neighbour[q]
                t = travel_minutes(lat, lon, i, j, circuity, speed)
                travel[q] = t
                if t <= cap and (not closed or region[j] == region[i]):
                    lw = gamma * log_pop[j] + log_deterrence(t, decay, beta, min_time)
                    share[q] = lw
                    top = max(top, lw)
                else:
                    share[q] = -np.inf
            total = np.exp(self_lw - top) if has_self else 0.0
            for q in range(start, stop):
                if share[q] > -np.inf:
                    share[q] = np.exp(share[q] - top)
                    total += share[q]
                else:
                    share[q] = 0.0
            if total == 0.0:
                home[i] = np.nan
                continue
            for q in range(start, stop):
                share[q] /= total
            if has_self:
                home[i] = np.exp(self_lw - top) / total
    return share, travel, home
