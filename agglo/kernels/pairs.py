"""The kernel-shaped reference: one scenario's gravity shares for every neighbourhood pair,
written plainly in float64 from docs/model.md, looping over the rows as the fast passes do.

It serves the flow export (``agglo flows``) and the tests, which compare every fast pass
with it scenario by scenario. No log-space tricks beyond one shift by the row's largest
log-weight (so that ``mass ^ gamma`` cannot overflow; mass: the destination mass), no float32,
exact travel times.
"""

import numpy as np

from agglo.kernels.gravity.terms import log_deterrence
from agglo.kernels.jit import prange, strict_parallel
from agglo.kernels.reach import pair_minutes


@strict_parallel
def pair_shares(rows, places, mode, s, closed):
    """Scenario ``s`` of ``mode`` (a :class:`~agglo.kernels.records.ModeParams`), borders
    ``closed``: s_ij per pair (0 where j is not in R(i)), t_ij per pair, and the home share
    s_ii per town (0 without a self term, NaN for a town with no reach and no self term)."""
    n_towns = places.population.shape[0]
    share = np.zeros(rows.neighbour.shape[0], dtype=np.float64)
    travel = np.empty(rows.neighbour.shape[0], dtype=np.float64)
    home = np.zeros(n_towns, dtype=np.float64)
    decay, beta, gamma = mode.decay[s], mode.beta[s], mode.gamma[s]
    circuity, speed_kmh, cap_min = mode.circuity[s], mode.speed_kmh[s], mode.cap_min[s]
    self_time, min_time = mode.self_time_min[s], mode.min_time_min[s]
    has_self = not np.isnan(self_time)
    log_mass, region = places.log_mass, places.region
    chunks = rows.chunks
    for c in prange(chunks.shape[0] - 1):
        for i in range(chunks[c], chunks[c + 1]):
            start = rows.offsets[i]
            stop = rows.offsets[i + 1]
            top = -np.inf
            self_lw = -np.inf
            if has_self:
                self_lw = gamma * log_mass[i] + log_deterrence(self_time, decay, beta, min_time)
                top = self_lw
            for q in range(start, stop):
                j = rows.neighbour[q]
                t = pair_minutes(rows, places, i, q, circuity, speed_kmh)
                travel[q] = t
                if t <= cap_min and (not closed or region[j] == region[i]):
                    lw = gamma * log_mass[j] + log_deterrence(t, decay, beta, min_time)
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


@strict_parallel
def factor_pair_shares(rows, places, mode, s, closed, log_row, log_col, origin_exponent, self_log_f):
    """The shares of the models whose table is balanced by factors (docs/model.md, "Other
    flow models"), scenario ``s`` in float64 from exact travel times:

        s_ij = exp(log_row_i + log_col_j + log population_j + origin_exponent · log population_i
                   + log f(t_ij))                for j in R(i), 0 elsewhere;
        s_ii = exp(log_row_i + log_col_i + log population_i + self_log_f)  (the home share).

    ``attraction``: log_row = 0, log_col = -log A_j, origin_exponent = alpha - 1, no self
    term (self_log_f = -inf); ``doubly``: log_row = log A_i, log_col = log B_j,
    origin_exponent = 0, self_log_f = log f(self_time_min) (-inf without a self term).
    Returns (s_ij per pair, s_ii per town)."""
    share = np.zeros(rows.neighbour.shape[0], dtype=np.float64)
    home = np.zeros(places.population.shape[0], dtype=np.float64)
    decay, beta, min_time = mode.decay[s], mode.beta[s], mode.min_time_min[s]
    circuity, speed_kmh, cap_min = mode.circuity[s], mode.speed_kmh[s], mode.cap_min[s]
    log_pop, region = places.log_pop, places.region
    chunks = rows.chunks
    for c in prange(chunks.shape[0] - 1):
        for i in range(chunks[c], chunks[c + 1]):
            origin = log_row[i] + origin_exponent * log_pop[i]
            for q in range(rows.offsets[i], rows.offsets[i + 1]):
                j = rows.neighbour[q]
                t = pair_minutes(rows, places, i, q, circuity, speed_kmh)
                if t <= cap_min and (not closed or region[j] == region[i]):
                    share[q] = np.exp(origin + log_col[j] + log_pop[j] + log_deterrence(t, decay, beta, min_time))
            if self_log_f > -np.inf:
                home[i] = np.exp(log_row[i] + log_col[i] + log_pop[i] + self_log_f)
    return share, home
