"""The scenario-innermost loop shape: a row's terms for every scenario of a batch at once.

A pair is loaded once for the whole batch and the term expression of
:mod:`agglo.kernels.gravity.terms` vectorises across scenarios; each term goes into lane
``q mod 32`` of a (32, S) accumulator in row order, exactly as the pair-loop shape adds
it (:func:`agglo.kernels.gravity.lanes.lane_sum`), so both shapes give the same bits.

In the origin pass the mass term is ``G_s · lp_rel[q]``; in the inflow pass it is the
origin term of the neighbour, ``gathered[neighbour[q], s] · 1`` (stored contiguous over
scenarios: no gather across scenarios).

A scenario pays for its own reach: pair q is computed for the scenarios ``0..n-1`` only,
``n`` shrinking as the trailing scenarios' reaches end, and the engine orders each batch
by reach, widest first (:func:`agglo.engine.compute.batch.reach_order`), so the trailing ones
are those that end first. Up to the shortest reach among the active scenarios, where
none masks a pair, and when every scenario is power decay with the same ``log_per_km`` and
``log_floor`` (``max(ld + log_per_km, log_floor)`` is shared), four pairs share one loop over the scenarios:
four independent ``2^x`` chains per vector step. Beyond it a pair goes alone and an
active scenario that does not reach it, or under closed borders does not share its
region, adds +0.0 instead of its term (a power scenario in a batch with exponential ones
adds ``fma(0, d, nref) = nref`` up to the sign of a zero, which ``2^x`` does not see).
Any order gives the same bits; the order only decides the cost.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.gravity.fastexp import exp2_32, exp32
from agglo.kernels.gravity.lanes import LANES
from agglo.kernels.gravity.terms import POWER, exponent, exponential_base_km, log2_minutes
from agglo.kernels.jit import inlined, strict

INNER_MIN = 8  # batches at least this large take the scenario-innermost shape


class BatchScratch(NamedTuple):
    """Per-thread buffers: the (32, S) lane accumulator and four float32 term rows (S)."""

    acc: np.ndarray
    terms_q: np.ndarray
    terms_q1: np.ndarray
    terms_q2: np.ndarray
    terms_q3: np.ndarray
    low: np.ndarray  # int64 (S): the shortest reach among scenarios 0..s


class RowState(NamedTuple):
    """Per-thread values of one row for every scenario (length S) and the buffers of a pass
    (the origin pass uses all but ``gathered``, the inflow pass ``ends``, ``nrefs``,
    ``terms``, ``gathered``, ``lanes`` and ``batch``)."""

    ends: np.ndarray  # int64 reachable prefix length
    counts: np.ndarray  # int64 |R(i)|
    nrefs: np.ndarray  # float32 -ref (base 2)
    self_lw: np.ndarray  # float64 self log-weight relative to lp_max (-inf: none)
    bests: np.ndarray  # int64 best core (scenario-innermost shape)
    best_lws: np.ndarray  # float64 its log-weight
    terms: np.ndarray  # float32 terms of one row (pair-loop shape)
    gathered: np.ndarray  # float32 origin terms gathered for one row (inflow, pair-loop shape)
    lanes: np.ndarray  # 32 float64 lanes
    no_gather: np.ndarray  # (0, S): the origin pass gathers no mass term
    batch: BatchScratch  # the scenario-innermost shape's buffers (empty in the pair-loop shape)


@strict
def row_state(n_scen, longest, inner):
    """A :class:`RowState` for ``n_scen`` scenarios and rows up to ``longest`` pairs."""
    n_batch = n_scen if inner else 0
    batch = BatchScratch(
        np.zeros((LANES, n_batch), dtype=np.float64),
        np.zeros(n_batch, dtype=np.float32),
        np.zeros(n_batch, dtype=np.float32),
        np.zeros(n_batch, dtype=np.float32),
        np.zeros(n_batch, dtype=np.float32),
        np.zeros(n_batch, dtype=np.int64),
    )
    return RowState(
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.float32),
        np.zeros(n_scen, dtype=np.float64),
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.float64),
        np.empty(longest, dtype=np.float32),
        np.empty(longest, dtype=np.float32),
        np.zeros(LANES, dtype=np.float64),
        np.zeros((0, n_scen), dtype=np.float32),
        batch,
    )


@inlined
def _batch_shape(ends, terms, low):
    """(longest reach, whether four pairs may share a scenario loop); ``low[s]`` is the
    shortest reach among scenarios 0..s (0 where borders are closed: those mask every pair)."""
    qmax = 0
    shared = True
    log_per_km = terms.log_min_per_km32
    log_floor = terms.log_min_time32
    running = ends[0]
    for s in range(ends.shape[0]):
        qmax = max(qmax, ends[s])
        shared = shared and terms.decay[s] == POWER and log_per_km[s] == log_per_km[0] and log_floor[s] == log_floor[0]
        running = min(running, 0 if terms.closed[s] else ends[s])
        low[s] = running
    return qmax, shared


@inlined
def _add_to_lane(acc, q, terms_q, n_active):
    lane = acc[q % LANES]
    for s in range(n_active):
        lane[s] += np.float64(terms_q[s])


@inlined
def _four_pairs(q, n_active, src, p, log_per_km, log_floor, nref, scratch):
    """Pairs q..q+3 for the active scenarios, all of power decay with one (log_per_km, log_floor): four
    independent 2^x chains per scenario step, each pair into its own lane."""
    acc, terms_q, terms_q1, terms_q2, terms_q3, _ = scratch
    inflow, gathered, neighbour, mass, log_dist, g = src
    one = np.float32(1.0)
    a = a2 = a3 = a4 = g
    b = b2 = b3 = b4 = one
    if inflow:
        a = gathered[neighbour[q]]
        a2 = gathered[neighbour[q + 1]]
        a3 = gathered[neighbour[q + 2]]
        a4 = gathered[neighbour[q + 3]]
    else:
        b = mass[q]
        b2 = mass[q + 1]
        b3 = mass[q + 2]
        b4 = mass[q + 3]
    m = log2_minutes(log_dist[q], log_per_km, log_floor)
    m2 = log2_minutes(log_dist[q + 1], log_per_km, log_floor)
    m3 = log2_minutes(log_dist[q + 2], log_per_km, log_floor)
    m4 = log2_minutes(log_dist[q + 3], log_per_km, log_floor)
    for s in range(n_active):
        terms_q[s] = exp2_32(exponent(a[s], b, p[s], m, nref[s]))
        terms_q1[s] = exp2_32(exponent(a2[s], b2, p[s], m2, nref[s]))
        terms_q2[s] = exp2_32(exponent(a3[s], b3, p[s], m3, nref[s]))
        terms_q3[s] = exp2_32(exponent(a4[s], b4, p[s], m4, nref[s]))
    _add_to_lane(acc, q, terms_q, n_active)
    _add_to_lane(acc, q + 1, terms_q1, n_active)
    _add_to_lane(acc, q + 2, terms_q2, n_active)
    _add_to_lane(acc, q + 3, terms_q3, n_active)


@inlined
def _one_pair(q, n_active, src, pk, log_per_km, log_floor, any_exponential, nref, terms_q):
    """Pair q's term for each active scenario into ``terms_q``, each with its own log_per_km, log_floor (and its
    exponential base K where some scenario of the batch decays exponentially); ``pk``: the
    power and exponential coefficients (terms.power2, terms.expo2)."""
    p, k = pk
    inflow, gathered, neighbour, mass, log_dist, g = src
    a = g
    b = np.float32(1.0)
    ld = log_dist[q]
    if inflow:
        a = gathered[neighbour[q]]
    else:
        b = mass[q]
    if any_exponential:
        km = exp32(ld)
        for s in range(n_active):
            base = exponential_base_km(k[s], km, nref[s])
            terms_q[s] = exp2_32(exponent(a[s], b, p[s], log2_minutes(ld, log_per_km[s], log_floor[s]), base))
    else:
        for s in range(n_active):
            terms_q[s] = exp2_32(exponent(a[s], b, p[s], log2_minutes(ld, log_per_km[s], log_floor[s]), nref[s]))


@inlined
def batch_lane_sums(row, gathered, ends, home, terms, nref, scratch):
    """Fill ``scratch.acc`` with the lane sums of ``row`` for every scenario: scenario s adds
    the terms of its first ``ends[s]`` pairs (``gathered`` is empty in the origin pass).

    Pair q is computed only for the active scenarios ``0..n_active-1``: the trailing ones
    whose reach ends at or before q leave the loop (the engine orders a batch by reach,
    widest first, so a batch costs about the sum of its scenarios' reaches). An active
    scenario that does not reach q adds +0.0, which leaves its lane as it is: the sums are
    the same bits whatever the other scenarios of the batch and their order.

    The records are unpacked once here: inside the pair loop every array is a local."""
    acc, terms_q, _, _, _, low = scratch
    acc[:, :] = 0.0
    log_dist, mass, neighbour, region = row.log_dist, row.mass, row.neighbour, row.region
    g, p = terms.mass2, terms.power2
    pk = (p, terms.expo2)
    log_per_km, log_floor = terms.log_min_per_km32, terms.log_min_time32
    opened = terms.opened
    any_exponential = terms.any_exponential
    inflow = gathered.shape[0] > 0
    src = (inflow, gathered, neighbour, mass, log_dist, g)  # where a pair's masses come from
    n_active = nref.shape[0]
    zero = np.float32(0.0)
    qmax, shared = _batch_shape(ends, terms, low)
    q = 0
    while q < qmax:
        while ends[n_active - 1] <= q:  # the widest reach is > q, so this stops at 1
            n_active -= 1
        taken = low[n_active - 1]  # every active scenario takes the pairs before this
        if shared and q + 3 < taken:  # four pairs every active scenario takes, one max(ld + log_per_km, log_floor)
            _four_pairs(q, n_active, src, p, log_per_km[0], log_floor[0], nref, scratch)
            q += 4
            continue
        # One pair, each scenario with its own log_per_km, log_floor (and K where some scenario is exponential).
        _one_pair(q, n_active, src, pk, log_per_km, log_floor, any_exponential, nref, terms_q)
        if q >= taken:
            same = region[neighbour[q]] == home
            for s in range(n_active):
                ok = (q < ends[s]) & (same | opened[s])
                terms_q[s] = terms_q[s] if ok else zero
        _add_to_lane(acc, q, terms_q, n_active)
        q += 1
