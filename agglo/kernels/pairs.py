"""The kernel-shaped reference: one scenario's gravity shares for every neighbourhood pair,
written plainly in float64 from docs/model.md, looping over the rows as the fast passes do.

It serves the flow export (``agglo flows``) and the tests, which compare every fast pass
with it scenario by scenario. No log-space tricks beyond one shift by the row's largest
log-weight (so that ``population ^ gamma`` cannot overflow), no float32, exact travel times.
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
    log_pop, region = places.log_pop, places.region
    chunks = rows.chunks
    for c in prange(chunks.shape[0] - 1):
        for i in range(chunks[c], chunks[c + 1]):
            start = rows.offsets[i]
            stop = rows.offsets[i + 1]
            top = -np.inf
            self_lw = -np.inf
            if has_self:
                self_lw = gamma * log_pop[i] + log_deterrence(self_time, decay, beta, min_time)
                top = self_lw
            for q in range(start, stop):
                j = rows.neighbour[q]
                t = pair_minutes(rows, places, i, q, circuity, speed_kmh)
                travel[q] = t
                if t <= cap_min and (not closed or region[j] == region[i]):
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
