"""The origin pass: per origin town and scenario, its reach, the denominator of its shares
and its best core (MODEL.md, "Shares", "Cores and assignment").

Notes
-----
Per row ``i`` and scenario ``s``:

1. the reachable prefix of the row (:func:`agglo.kernels.reach.reach_end`; a scenario
   with the circuity, speed and cap of the one before reuses it) and ``|R(i)|``;
2. a reference ``ref`` (base 2) bounding the row's log-weights from above: the self term
   and, for ``gamma >= 0``, the nearest pair (:func:`agglo.kernels.terms.nearest_bound`),
   else the exact maximum;
3. the terms ``2^(x - ref)`` summed in 32 lanes, by the pair-loop shape for small
   batches, the scenario-innermost shape for batches of 8 or more
   (:mod:`agglo.kernels.batch_sums`); a row whose terms all underflow (the bound
   overshot, ``gamma`` far above 1) is redone with its exact maximum;
4. the self term added in float64, the natural shift ``ref · ln 2 + gamma · lp_max``
   kept, and the best core's weight relative to it.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.batch_sums import INNER_MIN, batch_lane_sums, batch_scratch
from agglo.kernels.cores import best_core, best_cores_all
from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.lanes import LANES, lane_sum, lanes_of
from agglo.kernels.reach import count_in_region, reach_end
from agglo.kernels.records import Origins
from agglo.kernels.terms import LN2, LOG2E, PairRow, exact_reference, mode_terms, nearest_bound, pair_terms

UNDERFLOW = 1e-30  # a row total below this means the reference overshot: redo the row exactly


class RowState(NamedTuple):
    """Per-thread, per-row values of every scenario (length S), and scratch."""

    ends: np.ndarray  # reachable prefix length
    counts: np.ndarray  # |R(i)|
    nrefs: np.ndarray  # float32 -ref (base 2)
    self_lw: np.ndarray  # float64 self log-weight relative to lp_max (-inf: none)
    bests: np.ndarray  # best core (scenario-innermost shape)
    best_lws: np.ndarray  # its log-weight
    terms: np.ndarray  # float32 terms of one row (pair-loop shape)
    lanes: np.ndarray  # 32 float64 lanes


@strict
def _row_state(n_scen, longest):
    return RowState(
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.float32),
        np.zeros(n_scen, dtype=np.float64),
        np.zeros(n_scen, dtype=np.int64),
        np.zeros(n_scen, dtype=np.float64),
        np.empty(longest, dtype=np.float32),
        np.zeros(LANES, dtype=np.float64),
    )


@strict
def longest_row(offsets):
    longest = 0
    for i in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[i + 1] - offsets[i])
    return longest


@strict
def _reach_and_reference(rows, places, mode, terms, i, row, state, out):
    """Steps 1 and 2 for every scenario of row ``i``."""
    home = places.region[i]
    ends = state.ends
    for s in range(ends.shape[0]):
        if terms.same_reach_as_previous[s]:
            end = ends[s - 1]
        else:
            end = reach_end(rows, places, i, mode.circuity[s], mode.speed_kmh[s], mode.cap_min[s])
        count = count_in_region(row.neighbour, places.region, home, end) if terms.closed[s] else end
        self_lw = -np.inf
        if terms.has_self[s]:
            self_lw = terms.gamma[s] * (places.log_pop[i] - places.lp_max[i]) + terms.self_log_f[s]
        ref = self_lw * LOG2E
        if count > 0 and terms.gamma[s] >= 0:
            ref = max(ref, nearest_bound(row, terms, s))
        elif count > 0:
            ref = exact_reference(row, end, home, terms, s, ref)
        ends[s] = end
        state.counts[s] = count
        state.nrefs[s] = -np.float32(ref)
        state.self_lw[s] = self_lw
        out.reach[s, i] = end
        out.n_reachable[s, i] = count


@strict
def _row_total(row, home, terms, s, state, total, inner):
    """Step 3's sum for scenario ``s`` (``total``: the lanes of the batch shape), redone
    with the exact maximum on underflow; returns (total, the float32 -ref used)."""
    end = state.ends[s]
    nref = state.nrefs[s]
    if not inner:
        pair_terms(row, end, home, terms, s, terms.mass2[s], nref, state.terms)
        total = lane_sum(state.terms, end, state.lanes)
    if state.counts[s] > 0 and total < UNDERFLOW:
        nref = -np.float32(exact_reference(row, end, home, terms, s, state.self_lw[s] * LOG2E))
        pair_terms(row, end, home, terms, s, terms.mass2[s], nref, state.terms)
        total = lane_sum(state.terms, end, state.lanes)
    return total, nref


@strict
def _finish_row(rows, places, i, row, is_core, terms, state, batch, out):
    """Step 4 for every scenario of row ``i``; ``batch`` holds the lane sums and best cores
    of the scenario-innermost shape (empty in the pair-loop shape)."""
    inner = batch.acc.shape[1] > 0
    home = places.region[i]
    for s in range(state.ends.shape[0]):
        if state.counts[s] == 0 and not terms.has_self[s]:
            continue
        total = lanes_of(batch.acc, s, state.lanes) if inner else 0.0
        total, nref = _row_total(row, home, terms, s, state, total, inner)
        ref_nat = -np.float64(nref) * LN2  # the terms are exp(lw - ref_nat)
        if terms.has_self[s]:
            total += np.exp(state.self_lw[s] - ref_nat)
        row_shift = ref_nat + terms.gamma[s] * places.lp_max[i]
        out.shift[s, i] = row_shift
        out.denominator[s, i] = total
        if inner:
            best, best_lw = state.bests[s], state.best_lws[s]
        else:
            best, best_lw = best_core(rows, places, i, s, state.ends[s], is_core, terms)
        out.best_core[s, i] = best
        if best >= 0:
            out.best_weight[s, i] = np.exp(best_lw - row_shift)


@strict
def empty_origins(n_scen, n_towns):
    return Origins(
        np.zeros((n_scen, n_towns), dtype=np.int32),
        np.zeros((n_scen, n_towns), dtype=np.int32),
        np.zeros((n_scen, n_towns), dtype=np.float64),
        np.zeros((n_scen, n_towns), dtype=np.float64),
        np.full((n_scen, n_towns), -1, dtype=np.int32),
        np.zeros((n_scen, n_towns), dtype=np.float64),
    )


@strict
def _origin_row(rows, places, i):
    start = rows.offsets[i]
    stop = rows.offsets[i + 1]
    return PairRow(rows.log_dist[start:stop], rows.lp_rel[start:stop], rows.neighbour[start:stop], places.region)


@strict
def origin_pass(rows, places, mode, gamma, closed, is_core):
    """:class:`agglo.kernels.records.Origins` of a batch: ``mode`` is the mode's
    :class:`~agglo.kernels.records.ModeParams` with ``gamma`` as mass exponent and
    ``self_time_min`` as given (the attraction model passes alpha and no self term),
    ``closed`` and ``is_core`` (S, N) per scenario."""
    out = empty_origins(mode.cap_min.shape[0], places.log_pop.shape[0])
    terms = mode_terms(mode, gamma, closed)
    _origin_rows(rows, places, mode, terms, is_core, np.ascontiguousarray(is_core.T), out)
    return out


@strict_parallel
def _origin_rows(rows, places, mode, terms, is_core, core_t, out):
    """Every row of ``rows``, in parallel over ``rows.chunks`` (ranges of about equal pair count)."""
    n_scen = mode.cap_min.shape[0]
    inner = n_scen >= INNER_MIN
    longest = longest_row(rows.offsets)
    no_gather = np.zeros((0, n_scen), dtype=np.float32)
    chunks = rows.chunks
    for ch in prange(chunks.shape[0] - 1):
        state = _row_state(n_scen, longest)
        batch = batch_scratch(n_scen if inner else 0)
        for i in range(chunks[ch], chunks[ch + 1]):
            row = _origin_row(rows, places, i)
            _reach_and_reference(rows, places, mode, terms, i, row, state, out)
            if inner:
                best_cores_all(rows, places, i, state.ends, core_t, terms, state.bests, state.best_lws)
                batch_lane_sums(row, no_gather, state.ends, places.region[i], terms, state.nrefs, batch)
            _finish_row(rows, places, i, row, is_core, terms, state, batch, out)
    return out
