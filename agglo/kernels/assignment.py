"""Assignment of towns to cores and the per-scenario summaries.

Notes
-----
docs/model.md, "Cores and assignment": a core belongs to itself; a non-core town joins
its best reachable core ``j*`` when ``s_ij* >= threshold``, else -1. A core's
``agglo_population`` is its population plus its members'; ``coverage`` is the
population of non-core towns in an agglomeration over that of all non-core towns
(NaN when there is no non-core town); ``n_agglomerations`` counts cores with at least
one member.
"""

import numpy as np

from agglo.kernels.jit import parallel, prange


@parallel
def assign_batch(population, is_core, best_core, best_weight, denominator, threshold):
    """Returns core (S,N) int32, share (S,N) float32, agglo_population (S,N) float64,
    coverage (S,) float64, n_agglomerations (S,) int32."""
    n_scen, n_towns = best_core.shape
    core = np.empty((n_scen, n_towns), dtype=np.int32)
    share = np.empty((n_scen, n_towns), dtype=np.float32)
    agglo_population = np.zeros((n_scen, n_towns), dtype=np.float64)
    coverage = np.empty(n_scen, dtype=np.float64)
    n_agglomerations = np.zeros(n_scen, dtype=np.int32)
    for s in prange(n_scen):
        members = np.zeros(n_towns, dtype=np.int32)
        covered = 0.0
        small = 0.0
        for i in range(n_towns):
            if is_core[s, i]:
                core[s, i] = i
                share[s, i] = 1.0
                continue
            small += population[i]
            best = best_core[s, i]
            if best < 0:
                core[s, i] = -1
                share[s, i] = np.nan
                continue
            value = best_weight[s, i] / denominator[s, i]
            share[s, i] = value
            if value >= threshold[s]:
                core[s, i] = best
                members[best] += 1
                covered += population[i]
            else:
                core[s, i] = -1
        for i in range(n_towns):
            if is_core[s, i]:
                agglo_population[s, i] = population[i]
        for i in range(n_towns):
            if not is_core[s, i] and core[s, i] >= 0:
                agglo_population[s, core[s, i]] += population[i]
        for i in range(n_towns):
            if members[i] > 0:
                n_agglomerations[s] += 1
        coverage[s] = covered / small if small > 0 else np.nan
    return core, share, agglo_population, coverage, n_agglomerations
