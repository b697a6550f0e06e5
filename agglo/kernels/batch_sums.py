"""The scenario-innermost loop shape: a row's terms for every scenario of a batch at once.

A pair is loaded once for the whole batch and the term expression of
:mod:`agglo.kernels.terms` vectorises across scenarios; each term goes into lane
``q mod 32`` of a (32, S) accumulator in row order, exactly as the pair-loop shape adds
it (:func:`agglo.kernels.lanes.lane_sum`), so both shapes give the same bits.

In the origin pass the mass term is ``G_s · lp_rel[q]``; in the inflow pass it is the
origin term of the neighbour, ``gathered[neighbour[q], s] · 1`` (stored contiguous over
scenarios: no gather across scenarios). Up to the shortest reach of the batch, where no
scenario masks a pair, and when every scenario is power decay with the same ``c0`` and
``c2`` (``max(ld + c0, c2)`` is shared), four pairs share one loop over the scenarios:
four independent ``2^x`` chains per vector step. Beyond it a pair goes alone and a
scenario that does not reach it, or under closed borders does not share its region, adds
+0.0 instead of its term (a power scenario in a batch with exponential ones adds
``fma(0, d, nref) = nref`` up to the sign of a zero, which ``2^x`` does not see).
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.fastexp import exp2_32, exp32
from agglo.kernels.jit import strict
from agglo.kernels.lanes import LANES
from agglo.kernels.terms import POWER, exponent, exponential_base_km, log2_minutes

INNER_MIN = 8  # batches at least this large take the scenario-innermost shape


class BatchScratch(NamedTuple):
    """Per-thread buffers: the (32, S) lane accumulator and four float32 term rows (S)."""

    acc: np.ndarray
    buf: np.ndarray
    buf2: np.ndarray
    buf3: np.ndarray
    buf4: np.ndarray


@strict
def batch_scratch(n_scen):
    return BatchScratch(
        np.zeros((LANES, n_scen), dtype=np.float64),
        np.zeros(n_scen, dtype=np.float32),
        np.zeros(n_scen, dtype=np.float32),
        np.zeros(n_scen, dtype=np.float32),
        np.zeros(n_scen, dtype=np.float32),
    )


@strict
def _batch_shape(ends, terms):
    """(shortest reach, longest reach, whether four pairs may share a scenario loop)."""
    qmin = ends[0]
    qmax = ends[0]
    shared = True
    c0 = terms.log_min_per_km32
    c2 = terms.log_min_time32
    for s in range(ends.shape[0]):
        qmin = min(qmin, ends[s])
        qmax = max(qmax, ends[s])
        shared = shared and terms.decay[s] == POWER and c0[s] == c0[0] and c2[s] == c2[0]
        if terms.closed[s]:
            qmin = 0
    return qmin, qmax, shared


@strict
def _four_pairs(row, gathered, q, terms, nref, scratch):
    """Pairs q..q+3, every scenario takes them: four term rows, then each into its lane."""
    a = a2 = a3 = a4 = terms.mass2
    one = np.float32(1.0)
    b = b2 = b3 = b4 = one
    if gathered.shape[0] > 0:
        nb = row.neighbour
        a = gathered[nb[q]]
        a2 = gathered[nb[q + 1]]
        a3 = gathered[nb[q + 2]]
        a4 = gathered[nb[q + 3]]
    else:
        b = row.mass[q]
        b2 = row.mass[q + 1]
        b3 = row.mass[q + 2]
        b4 = row.mass[q + 3]
    c0 = terms.log_min_per_km32[0]
    c2 = terms.log_min_time32[0]
    m = log2_minutes(row.log_dist[q], c0, c2)
    m2 = log2_minutes(row.log_dist[q + 1], c0, c2)
    m3 = log2_minutes(row.log_dist[q + 2], c0, c2)
    m4 = log2_minutes(row.log_dist[q + 3], c0, c2)
    p = terms.power2
    buf, buf2, buf3, buf4 = scratch.buf, scratch.buf2, scratch.buf3, scratch.buf4
    for s in range(nref.shape[0]):
        buf[s] = exp2_32(exponent(a[s], b, p[s], m, nref[s]))
        buf2[s] = exp2_32(exponent(a2[s], b2, p[s], m2, nref[s]))
        buf3[s] = exp2_32(exponent(a3[s], b3, p[s], m3, nref[s]))
        buf4[s] = exp2_32(exponent(a4[s], b4, p[s], m4, nref[s]))
    _add_to_lane(scratch.acc, q, buf)
    _add_to_lane(scratch.acc, q + 1, buf2)
    _add_to_lane(scratch.acc, q + 2, buf3)
    _add_to_lane(scratch.acc, q + 3, buf4)


@strict
def _add_to_lane(acc, q, buf):
    lane = acc[q % LANES]
    for s in range(buf.shape[0]):
        lane[s] += np.float64(buf[s])


@strict
def _one_pair(row, gathered, q, masked, ends, home, terms, nref, buf):
    """Pair q for every scenario into ``buf``; where ``masked``, 0 for the scenarios that do
    not reach it or, under closed borders, do not share its region."""
    a = terms.mass2
    b = np.float32(1.0)
    if gathered.shape[0] > 0:
        a = gathered[row.neighbour[q]]
    else:
        b = row.mass[q]
    ld = row.log_dist[q]
    p = terms.power2
    c0 = terms.log_min_per_km32
    c2 = terms.log_min_time32
    if terms.any_exponential:
        km = exp32(ld)
        k = terms.expo2
        for s in range(nref.shape[0]):
            base = exponential_base_km(k[s], km, nref[s])
            buf[s] = exp2_32(exponent(a[s], b, p[s], log2_minutes(ld, c0[s], c2[s]), base))
    else:
        for s in range(nref.shape[0]):
            buf[s] = exp2_32(exponent(a[s], b, p[s], log2_minutes(ld, c0[s], c2[s]), nref[s]))
    if masked:
        same = row.region[row.neighbour[q]] == home
        zero = np.float32(0.0)
        opened = terms.opened
        for s in range(nref.shape[0]):
            ok = (q < ends[s]) & (same | opened[s])
            buf[s] = buf[s] if ok else zero


@strict
def batch_lane_sums(row, gathered, ends, home, terms, nref, scratch):
    """Fill ``scratch.acc`` with the lane sums of ``row`` for every scenario: scenario s adds
    the terms of its first ``ends[s]`` pairs (``gathered`` is empty in the origin pass)."""
    scratch.acc[:, :] = 0.0
    qmin, qmax, shared = _batch_shape(ends, terms)
    q = 0
    while q < qmax:
        if shared and q + 3 < qmin:
            _four_pairs(row, gathered, q, terms, nref, scratch)
            q += 4
            continue
        _one_pair(row, gathered, q, q >= qmin, ends, home, terms, nref, scratch.buf)
        _add_to_lane(scratch.acc, q, scratch.buf)
        q += 1
