"""The inflow pass: inflow_j = Σ_{i: j in R(i)} population_i · s_ij (docs/model.md, "Shares").

Notes
-----
With the origin term ``o_i = log population_i - shift_i - log denominator_i`` of the
origin pass (-inf for a town with nothing), ``population_i · s_ij = exp(o_i + log f(t_ij)
+ gamma · log mass_j)`` (mass: the destination mass, the population unless the table gives
one): the same term expression as the origin pass, with the origin term as mass and
``gamma · log mass_j`` as the (negated) reference.
Reachability is symmetric (t_ij = t_ji, same region), so town j gathers from the
reachable prefix of its own row instead of every origin scattering into it: no write is
shared by threads, and each sum is the same whatever the order the towns are taken in.

Batches of 8 or more store the origin terms (town, scenario) in a spatial order of the
towns (``Rows.order``; each pair's neighbour by its position there is
``Rows.neighbour_rank``) and take the towns in that order too (``Rows.order_chunks``), so
that nearby towns read nearby, mostly cached origin terms. Smaller batches stream their
rows in index order (``Rows.chunks``) and gather the terms, stored (scenario, town), by
town index.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.gravity.batch_sums import INNER_MIN, batch_lane_sums, row_state
from agglo.kernels.gravity.lanes import lane_sum, lanes_of
from agglo.kernels.gravity.terms import LOG2E, PairRow, mode_terms, pair_terms
from agglo.kernels.jit import borrowed, inlined, prange, strict, strict_parallel


@strict_parallel
def _origin_terms(places, order, origins, by_town):
    """float32 ``o_i · log2 e``: (N, S) at the town's position in ``order`` if ``by_town``,
    else (S, N) by town index; and the region by position in ``order``."""
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
                by_scenario[s, i] = o
    return by_scenario, by_position, region


@inlined
def _gather(row_term, neighbour, end, out):
    for q in range(end):
        out[q] = row_term[np.uint32(neighbour[q])]


@inlined
def _inflow_row(rows, j, mass, neighbour, region):
    start = rows.offsets[j]
    stop = rows.offsets[j + 1]
    return PairRow(rows.log_dist[start:stop], mass, neighbour[start:stop], region)


@strict
def inflow_pass(rows, places, mode, closed, origins):
    """(S, N) float64 inflow of every town, from :func:`agglo.kernels.gravity.origin.origin_pass`'s
    ``origins`` for the same rows, mode and borders."""
    n_scen, n_towns = origins.shift.shape
    inflow = np.zeros((n_scen, n_towns), dtype=np.float64)
    terms = mode_terms(mode, mode.gamma, closed)
    inner = n_scen >= INNER_MIN
    by_scenario, by_position, region_r = _origin_terms(places, rows.order, origins, inner)
    tables = OriginTerms(by_scenario, by_position, region_r)
    ranges = rows.order_chunks if inner else rows.chunks
    _inflow_rows(rows, places, mode, terms, tables, origins.reach, ranges, inflow)
    return inflow


class OriginTerms(NamedTuple):
    by_scenario: np.ndarray  # (S, N) float32 by town index (pair-loop shape), else empty
    by_position: np.ndarray  # (N, S) float32 by position in Rows.order (scenario-innermost shape), else empty
    region: np.ndarray  # (N,) region by position in Rows.order


@strict_parallel
def _inflow_rows(rows, places, mode, terms, tables, reach, ranges, inflow):
    """Every town's inflow, in parallel over ``ranges`` of towns of about equal pair count."""
    n_scen = reach.shape[0]
    for ch in prange(ranges.shape[0] - 1):
        scratch = row_state(n_scen, rows.longest, n_scen >= INNER_MIN)
        _inflow_chunk(rows, places, mode, terms, tables, reach, inflow, scratch, ranges[ch], ranges[ch + 1])


@borrowed
def _inflow_chunk(rows, places, mode, terms, tables, reach, inflow, scratch, first, stop):
    """Towns first..stop-1 (positions in Rows.order for batches of 8 or more) in one thread,
    with every helper inlined and no reference counting (see the origin pass)."""
    n_scen = reach.shape[0]
    batch = scratch.batch
    inner = batch.acc.shape[1] > 0
    one = np.float32(1.0)
    terms_row, gathered, lanes, nref, ends = scratch.terms, scratch.gathered, scratch.lanes, scratch.nrefs, scratch.ends
    for at in range(first, stop):
        j = rows.order[at] if inner else at
        home = places.region[j]
        for s in range(n_scen):
            ends[s] = reach[s, j]
            nref[s] = np.float32(mode.gamma[s] * LOG2E * places.log_mass[j])
        if inner:
            row = _inflow_row(rows, j, gathered, rows.neighbour_rank, tables.region)
            batch_lane_sums(row, tables.by_position, ends, home, terms, nref, batch)
            for s in range(n_scen):
                inflow[s, j] = lanes_of(batch.acc, s, lanes)
            continue
        row = _inflow_row(rows, j, gathered, rows.neighbour, places.region)
        for s in range(n_scen):
            end = ends[s]
            if end == 0:
                continue
            _gather(tables.by_scenario[s], row.neighbour, end, gathered)
            pair_terms(row, end, home, terms, s, one, nref[s], terms_row)
            inflow[s, j] = lane_sum(terms_row, end, lanes)
