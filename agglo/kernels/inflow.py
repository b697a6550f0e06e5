"""The inflow pass: inflow_j = Σ_{i: j in R(i)} population_i · s_ij (MODEL.md, "Shares").

Notes
-----
With the origin term ``o_i = log population_i - shift_i - log denominator_i`` of the
origin pass (-inf for a town with nothing), ``population_i · s_ij = exp(o_i + log f(t_ij)
+ gamma · log population_j)``: the same term expression as the origin pass, with the
origin term as mass and ``gamma · log population_j`` as the (negated) reference.
Reachability is symmetric (t_ij = t_ji, same region), so town j gathers from the
reachable prefix of its own row instead of every origin scattering into it: no write is
shared by threads, and each sum is the same whatever the order the towns are taken in.

The origin terms are stored in a spatial order of the towns (``Rows.order``; each pair's
neighbour by its position there is ``Rows.neighbour_rank``). Batches of 8 or more take the
towns in that order too (``Rows.order_chunks``), so that nearby towns read nearby, mostly
cached origin terms, stored (town, scenario); smaller batches stream their rows in index
order (``Rows.chunks``) with the terms stored (scenario, town).
"""

import numpy as np

from agglo.kernels.batch_sums import INNER_MIN, batch_lane_sums, batch_scratch
from agglo.kernels.jit import prange, strict, strict_parallel
from agglo.kernels.lanes import LANES, lane_sum, lanes_of
from agglo.kernels.origin import longest_row
from agglo.kernels.terms import LOG2E, PairRow, mode_terms, pair_terms


@strict_parallel
def _origin_terms(places, order, origins, by_town):
    """float32 ``o_i · log2 e`` at the town's position in ``order``: (N, S) if ``by_town``,
    else (S, N); and the region by position."""
    n_scen, n_towns = origins.shift.shape
    by_scenario = np.empty((0 if by_town else n_scen, n_towns), dtype=np.float32)
    by_position = np.empty((n_towns if by_town else 0, n_scen), dtype=np.float32)
    region = np.empty(n_towns, dtype=places.region.dtype)
    for r in prange(n_towns):
        i = order[r]
        region[r] = places.region[i]
        for s in range(n_scen):
            o = np.float32((places.log_pop[i] - origins.shift[s, i] - np.log(origins.denominator[s, i])) * LOG2E)
            if by_town:
                by_position[r, s] = o
            else:
                by_scenario[s, r] = o
    return by_scenario, by_position, region


@strict
def _gather(row_term, neighbour, end, out):
    for q in range(end):
        out[q] = row_term[np.uint32(neighbour[q])]


@strict
def _inflow_row(rows, j, mass, region_r):
    start = rows.offsets[j]
    stop = rows.offsets[j + 1]
    return PairRow(rows.log_dist[start:stop], mass, rows.neighbour_rank[start:stop], region_r)


@strict
def inflow_pass(rows, places, mode, closed, origins):
    """(S, N) float64 inflow of every town, from :func:`agglo.kernels.origin.origin_pass`'s
    ``origins`` for the same rows, mode and borders."""
    n_scen, n_towns = origins.shift.shape
    inflow = np.zeros((n_scen, n_towns), dtype=np.float64)
    terms = mode_terms(mode, mode.gamma, closed)
    inner = n_scen >= INNER_MIN
    by_scenario, by_position, region_r = _origin_terms(places, rows.order, origins, inner)
    _inflow_rows(rows, places, mode, terms, by_scenario, by_position, region_r, origins.reach, inflow)
    return inflow


@strict_parallel
def _inflow_rows(rows, places, mode, terms, by_scenario, by_position, region_r, reach, inflow):
    """Every town's inflow, in parallel over ranges of towns of about equal pair count."""
    n_scen = reach.shape[0]
    inner = n_scen >= INNER_MIN
    longest = longest_row(rows.offsets)
    one = np.float32(1.0)
    ranges = rows.order_chunks if inner else rows.chunks
    for ch in prange(ranges.shape[0] - 1):
        terms_row = np.empty(longest, dtype=np.float32)
        gathered = np.empty(longest, dtype=np.float32)
        lanes = np.zeros(LANES, dtype=np.float64)
        nref = np.zeros(n_scen, dtype=np.float32)
        ends = np.zeros(n_scen, dtype=np.int64)
        batch = batch_scratch(n_scen if inner else 0)
        for at in range(ranges[ch], ranges[ch + 1]):
            j = rows.order[at] if inner else at
            home = places.region[j]
            for s in range(n_scen):
                ends[s] = reach[s, j]
                nref[s] = np.float32(mode.gamma[s] * LOG2E * places.log_pop[j])
            row = _inflow_row(rows, j, gathered, region_r)
            if inner:
                batch_lane_sums(row, by_position, ends, home, terms, nref, batch)
                for s in range(n_scen):
                    inflow[s, j] = lanes_of(batch.acc, s, lanes)
                continue
            for s in range(n_scen):
                end = ends[s]
                if end == 0:
                    continue
                _gather(by_scenario[s], row.neighbour, end, gathered)
                pair_terms(row, end, home, terms, s, one, nref[s], terms_row)
                inflow[s, j] = lane_sum(terms_row, end, lanes)
    return inflow
