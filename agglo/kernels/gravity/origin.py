"""The origin pass: per origin town and scenario, its reach, the denominator of its shares
and its best core (docs/model.md, "Shares", "Cores and assignment").

Notes
-----
Per row ``i`` and scenario ``s``:

1. the reachable prefix of the row (:func:`agglo.kernels.reach.reach_end`; a scenario
   with the circuity, speed and cap of the one before reuses it) and ``|R(i)|``;
2. a reference ``ref`` (base 2) bounding the row's log-weights from above: the self term
   and, for ``gamma >= 0``, the nearest pair (:func:`agglo.kernels.gravity.terms.nearest_bound`),
   else the exact maximum;
3. the terms ``2^(x - ref)`` summed in 32 lanes, by the pair-loop shape for small
   batches, the scenario-innermost shape for batches of 8 or more
   (:mod:`agglo.kernels.gravity.batch_sums`); a row whose terms all underflow (the bound
   overshot, ``gamma`` far above 1) is redone with its exact maximum;
4. the self term added in float64, the natural shift ``ref · ln 2 + gamma · lp_max``
   kept, and the best core's weight relative to it.
"""

import numpy as np

from agglo.kernels.gravity.batch_sums import INNER_MIN, batch_lane_sums, row_state
from agglo.kernels.gravity.cores import best_core, best_cores_all
from agglo.kernels.gravity.lanes import lane_sum, lanes_of
from agglo.kernels.gravity.terms import LN2, LOG2E, PairRow, exact_reference, mode_terms, nearest_bound, pair_terms
from agglo.kernels.jit import borrowed, inlined, prange, strict, strict_parallel
from agglo.kernels.reach import count_in_region, reach_end
from agglo.kernels.records import Origins

UNDERFLOW = 1e-30  # a row total below this means the reference overshot: redo the row exactly


@inlined
def _reach_and_reference(rows, places, mode, terms, i, row, state, out):
    """Steps 1 and 2 for every scenario of row ``i``."""
    home = places.region[i]
    ends, counts, nrefs, self_lws = state.ends, state.counts, state.nrefs, state.self_lw
    reach, n_reachable = out.reach, out.n_reachable
    circuity, speed_kmh, cap_min = mode.circuity, mode.speed_kmh, mode.cap_min
    same, closed, has_self = terms.same_reach_as_previous, terms.closed, terms.has_self
    gamma, self_log_f = terms.gamma, terms.self_log_f
    decay, power2, expo2, log_per_km, log_floor = (
        terms.decay,
        terms.power2,
        terms.expo2,
        terms.log_min_per_km32,
        terms.log_min_time32,
    )
    lp_home = places.log_mass[i] - places.lp_max[i]
    nearest = row.log_dist[0] if row.log_dist.shape[0] > 0 else np.float32(0.0)
    for s in range(ends.shape[0]):
        if same[s]:
            end = ends[s - 1]
        else:
            end = reach_end(rows, places, i, circuity[s], speed_kmh[s], cap_min[s])
        count = count_in_region(row.neighbour, places.region, home, end) if closed[s] else end
        self_lw = -np.inf
        if has_self[s]:
            self_lw = gamma[s] * lp_home + self_log_f[s]
        ref = self_lw * LOG2E
        if count > 0 and gamma[s] >= 0:
            ref = max(ref, nearest_bound(nearest, decay[s], power2[s], expo2[s], log_per_km[s], log_floor[s]))
        elif count > 0:
            ref = exact_reference(row, end, home, terms, s, ref)
        ends[s] = end
        counts[s] = count
        nrefs[s] = -np.float32(ref)
        self_lws[s] = self_lw
        reach[s, i] = end
        n_reachable[s, i] = count


@inlined
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


@inlined
def _finish_row(rows, places, i, row, is_core, terms, state, out):
    """Step 4 for every scenario of row ``i``; ``state.batch`` holds the lane sums of the
    scenario-innermost shape (empty in the pair-loop shape)."""
    acc = state.batch.acc
    inner = acc.shape[1] > 0
    home = places.region[i]
    lp_max = places.lp_max[i]
    counts, self_lws, bests, best_lws, lanes = state.counts, state.self_lw, state.bests, state.best_lws, state.lanes
    has_self, gamma = terms.has_self, terms.gamma
    shift, denominator, best_core_out, best_weight = out.shift, out.denominator, out.best_core, out.best_weight
    for s in range(counts.shape[0]):
        if counts[s] == 0 and not has_self[s]:
            continue
        total = lanes_of(acc, s, lanes) if inner else 0.0
        total, nref = _row_total(row, home, terms, s, state, total, inner)
        ref_nat = -np.float64(nref) * LN2  # the terms are exp(lw - ref_nat)
        if has_self[s]:
            total += np.exp(self_lws[s] - ref_nat)
        row_shift = ref_nat + gamma[s] * lp_max
        shift[s, i] = row_shift
        denominator[s, i] = total
        if inner:
            best, best_lw = bests[s], best_lws[s]
        else:
            best, best_lw = best_core(rows, places, i, s, state.ends[s], is_core, terms)
        best_core_out[s, i] = best
        if best >= 0:
            best_weight[s, i] = np.exp(best_lw - row_shift)


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


@inlined
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
    chunks = rows.chunks
    n_scen = mode.cap_min.shape[0]
    for ch in prange(chunks.shape[0] - 1):
        state = row_state(n_scen, rows.longest, n_scen >= INNER_MIN)
        _origin_chunk(rows, places, mode, terms, is_core, core_t, out, state, chunks[ch], chunks[ch + 1])


@borrowed
def _origin_chunk(rows, places, mode, terms, is_core, core_t, out, state, first, stop):
    """Rows first..stop-1 in one thread. One compiled function with every helper inlined,
    and no reference counting (it allocates nothing): reading a record's array would
    otherwise cost an atomic increment and decrement per row and helper."""
    inner = state.batch.acc.shape[1] > 0
    for i in range(first, stop):
        row = _origin_row(rows, places, i)
        _reach_and_reference(rows, places, mode, terms, i, row, state, out)
        if inner:
            best_cores_all(rows, places, i, state.ends, core_t, terms, state.bests, state.best_lws)
            batch_lane_sums(row, state.no_gather, state.ends, places.region[i], terms, state.nrefs, state.batch)
        _finish_row(rows, places, i, row, is_core, terms, state, out)
