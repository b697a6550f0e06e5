"""A batch of scenarios in, docs/model.md's cube variables out: the one function every executor calls.

Per mode, the scenarios are grouped by flow model and each group goes through its model's
passes (:mod:`agglo.kernels`); every pass is independent of the other scenarios of its
group, so results never depend on how scenarios are batched. Then the assignment. A
mode's scenarios that repeat one another, or one computed earlier in the run
(:class:`ModeMemo`), are computed once.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.network.build import Network
from agglo.engine.planning.scenarios import MODEL_CODES, ScenarioBatch, core_mask, reach_radius_km
from agglo.kernels import ModeParams, Rows, assign_batch, inflow_pass, origin_pass
from agglo.kernels.cores import best_core_by_destination
from agglo.kernels.doubly import balance_group, furness_group, log_factors
from agglo.kernels.radiation import batch_inflow, radiation_batch
from agglo.kernels.reach import reach_ends
from agglo.kernels.records import take
from agglo.kernels.terms import mode_terms


def incoming(network: Network, rows: Rows) -> Rows:
    """The incoming rows of the mode whose rows are ``rows`` (themselves unless the mode's
    travel-time table is asymmetric: then row j lists the towns i with a pair i -> j)."""
    for mode, own in network.rows.items():
        if own is rows:
            return network.cols[mode]
    return rows


def _gravity(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    origins = origin_pass(rows, network.places, mode, mode.gamma, closed, is_core)
    cols = incoming(network, rows)
    if cols is rows:  # reach is symmetric: town j gathers from its own row's prefix
        inflow = inflow_pass(rows, network.places, mode, closed, origins)
    else:  # from its incoming row's prefix: the towns i with t_ij <= cap
        into = origins._replace(reach=reach_ends(cols, network.places, mode))
        inflow = inflow_pass(cols, network.places, mode, closed, into)
    return {
        "n_reachable": origins.n_reachable,
        "best_core": origins.best_core,
        "best_weight": origins.best_weight,
        "denominator": origins.denominator,
        "inflow": inflow,
    }


def attraction_log_a(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray):
    """(origins, log A_j): A_j = Σ_{i reaching j} population_i^alpha f(t_ij) is the gravity
    row sum with alpha as the mass exponent and no self term (-inf where nothing reaches j)."""
    no_self = mode._replace(self_time_min=np.full_like(mode.self_time_min, np.nan))
    origins = origin_pass(rows, network.places, no_self, mode.alpha, closed, is_core)
    with np.errstate(divide="ignore"):
        log_a = np.where(origins.denominator > 0, origins.shift + np.log(origins.denominator), -np.inf)
    return origins, log_a


def _by_destination(origins, best_core, best_share, inflow, **extra) -> dict:
    """The results of a model whose shares come whole (not as weight / denominator)."""
    return {
        "n_reachable": origins.n_reachable,
        "best_core": best_core,
        "best_weight": best_share,
        "denominator": np.ones_like(best_share),
        "inflow": inflow,
        **extra,
    }


def _attraction(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    cols = incoming(network, rows)
    origins, log_a = attraction_log_a(network, cols, mode, closed, is_core)
    reached = origins.denominator > 0
    if cols is not rows:  # A_j came from j's incoming row; reach and cores from the outgoing
        origins = reach_of(network, rows, mode, closed, is_core)
    origin_term = (mode.alpha[:, None] - 1.0) * network.places.log_pop[None, :]
    terms = mode_terms(mode, mode.gamma, closed)
    best_core, best_share = best_core_by_destination(
        rows, network.places, origins.reach, is_core, terms, -log_a, origin_term
    )
    inflow = np.where(reached, network.population[None, :], 0.0)
    return _by_destination(origins, best_core, best_share, inflow)


def reach_of(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray):
    """The origin pass for n_reachable and each row's reachable prefix (models that need only those)."""
    return origin_pass(rows, network.places, mode, mode.gamma, closed, is_core)


def scenario_groups(keys) -> list[np.ndarray]:
    """The scenarios (indices) with equal keys, one array per key in order of first appearance."""
    groups: dict = {}
    for s, key in enumerate(keys):
        groups.setdefault(key, []).append(s)
    return [np.array(g, dtype=np.int64) for g in groups.values()]


def doubly_groups(mode: ModeParams, closed: np.ndarray) -> list[np.ndarray]:
    """The scenarios (indices) that share f(t) and the self term, so one
    :func:`~agglo.kernels.doubly.balance_group` balances them in lockstep (caps may differ).
    Keyed by the bytes of each value, so that NaN (no self term) equals NaN."""
    fields = (mode.decay, mode.beta, mode.min_time_min, mode.self_time_min, mode.circuity, mode.speed_kmh)
    return scenario_groups(
        (bool(closed[s]), *(np.float64(field[s]).tobytes() for field in fields)) for s in range(closed.shape[0])
    )


def _doubly(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    origins = reach_of(network, rows, mode, closed, is_core)
    terms = mode_terms(mode, mode.gamma, closed)
    n_scen, n = origins.reach.shape
    log_x = np.empty((n_scen, n))
    inflow = np.empty((n_scen, n))
    iterations = np.zeros(n_scen, dtype=np.int32)
    error = np.zeros(n_scen)
    cols = incoming(network, rows)
    if cols is not rows:  # an asymmetric travel-time table: the plain balance
        return _doubly_asymmetric(network, rows, cols, mode, closed, is_core, origins, terms)
    for group in doubly_groups(mode, closed):
        ends = np.ascontiguousarray(origins.reach[group], dtype=np.int64)
        x, inflow[group], rounds, error[group], _, _ = balance_group(rows, network.places, terms, group, ends)
        iterations[group] = rounds
        log_x[group] = log_factors(x)
    best_core, best_share = best_core_by_destination(rows, network.places, origins.reach, is_core, terms, log_x, log_x)
    return _by_destination(origins, best_core, best_share, inflow, ipf_iterations=iterations, ipf_error=error)


def _doubly_asymmetric(network, rows, cols, mode, closed, is_core, origins, terms) -> dict:
    """The doubly model on an asymmetric table: :func:`~agglo.kernels.doubly.furness_group`
    per group of scenarios that share f; s_ij = A_i B_j D_j f_ij."""
    n_scen, n = origins.reach.shape
    log_a, log_b, inflow = np.empty((n_scen, n)), np.empty((n_scen, n)), np.empty((n_scen, n))
    iterations = np.zeros(n_scen, dtype=np.int32)
    error = np.zeros(n_scen)
    ends_in = reach_ends(cols, network.places, mode)
    for group in doubly_groups(mode, closed):
        ends_out = np.ascontiguousarray(origins.reach[group], dtype=np.int64)
        ends_into = np.ascontiguousarray(ends_in[group], dtype=np.int64)
        a, b, inflow[group], iterations[group], error[group] = furness_group(
            rows, cols, network.places, terms, group, ends_out, ends_into
        )
        log_a[group], log_b[group] = log_factors(a), log_factors(b)
    best_core, best_share = best_core_by_destination(rows, network.places, origins.reach, is_core, terms, log_b, log_a)
    return _by_destination(origins, best_core, best_share, inflow, ipf_iterations=iterations, ipf_error=error)


def radiate(network: Network, rows: Rows, mode: ModeParams, s: int, closed: bool, ends, is_core) -> np.ndarray:
    """s_ij per pair of scenario ``s`` (0 beyond its reach), from
    :func:`agglo.kernels.radiation.radiation_batch`."""
    ends = np.ascontiguousarray(ends, dtype=np.int64)[None, :]
    weight, total, _, _ = radiation_batch(
        rows, network.places, closed, ends, is_core, float(mode.circuity[s]), float(mode.speed_kmh[s])
    )
    per_pair = np.repeat(total[0], np.diff(rows.offsets))
    return np.divide(weight, per_pair, out=np.zeros_like(weight), where=per_pair > 0)


def radiation_twins(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> np.ndarray:
    """For each scenario, the first scenario of the batch with the same radiation results.

    The radiation model is parameter-free: its shares depend only on the reach (cap, circuity,
    speed, borders) and on which towns are cores, so scenarios that differ only in beta,
    gamma, alpha, threshold, ... share one pass (the same bits, copied)."""
    return first_of(zip(mode.cap_min, mode.circuity, mode.speed_kmh, closed, (row.tobytes() for row in is_core)))


def first_of(keys) -> np.ndarray:
    """For each scenario, the first scenario with an equal key."""
    first: dict = {}
    return np.array([first.setdefault(key, s) for s, key in enumerate(keys)], dtype=np.int64)


def mode_keys(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> list:
    """Per scenario, what its results in this mode depend on besides the network: the mode's
    parameters, the borders and the cores. Scenarios with equal keys have the same results,
    bit for bit (every pass is independent of the other scenarios of its batch). The bytes of
    each value, so that NaN (no self term) equals NaN."""
    fields = tuple(np.ascontiguousarray(field) for field in mode)
    return [
        (bool(closed[s]), is_core[s].tobytes(), *(field[s].tobytes() for field in fields))
        for s in range(closed.shape[0])
    ]


def radiation_groups(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> list[np.ndarray]:
    """The scenarios (indices) that one :func:`~agglo.kernels.radiation.radiation_batch` pass
    serves: the same circuity, speed, borders and cores (their caps may differ)."""
    return scenario_groups(zip(mode.circuity, mode.speed_kmh, closed, (row.tobytes() for row in is_core)))


def _radiation(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    twin = radiation_twins(mode, closed, is_core)
    unique = np.flatnonzero(twin == np.arange(twin.shape[0]))  # the scenarios computed
    mode_u, closed_u, core_u = take(mode, unique), closed[unique], np.ascontiguousarray(is_core[unique])
    origins = reach_of(network, rows, mode_u, closed_u, core_u)
    n_unique, n = origins.reach.shape
    best_core = np.empty((n_unique, n), dtype=np.int32)
    best_share = np.empty((n_unique, n))
    inflow = np.empty((n_unique, n))
    for k in radiation_groups(mode_u, closed_u, core_u):
        s = int(k[0])
        ends = np.ascontiguousarray(origins.reach[k], dtype=np.int64)
        args = (bool(closed_u[s]), ends, core_u[s], float(mode_u.circuity[s]), float(mode_u.speed_kmh[s]))
        weight, total, best_core[k], best_share[k] = radiation_batch(rows, network.places, *args)
        inflow[k] = batch_inflow(rows, network.places, ends, weight, total)
    back = np.searchsorted(unique, twin)  # each scenario's row among the computed ones
    origins = origins._replace(n_reachable=origins.n_reachable[back])
    return _by_destination(origins, best_core[back], best_share[back], inflow[back])


def _gravity_cuda(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    """The gravity passes on the GPU (:mod:`agglo.kernels.cuda`); ``near``: the towns
    whose core the CPU passes might choose otherwise (counted by :func:`_mode_batch`)."""
    import numba

    from agglo.kernels.cuda import BLOCK, gravity_passes

    # Numba's CUDA simulator runs each thread as a Python thread: there, two a block
    block = 2 if numba.config.ENABLE_CUDASIM else BLOCK
    return gravity_passes(rows, network.places, mode, closed, is_core, block=block)


NEAR_TIES = [0, 0]  # this process's (towns near a tie or the threshold, towns) on the GPU
_NEAR_LOCK = threading.Lock()

MODEL_PASSES = {
    MODEL_CODES["gravity"]: _gravity,
    MODEL_CODES["attraction"]: _attraction,
    MODEL_CODES["doubly"]: _doubly,
    MODEL_CODES["radiation"]: _radiation,
}

# The GPU front's passes: the gravity model only (other models are refused before a run
# on cuda starts: engine/run.py)
CUDA_PASSES = {MODEL_CODES["gravity"]: _gravity_cuda}

MERGED_TYPES = {
    "n_reachable": np.int32,
    "best_core": np.int32,
    "best_weight": np.float64,
    "denominator": np.float64,
    "inflow": np.float64,
    "ipf_iterations": np.int32,
    "ipf_error": np.float64,
}


def reach_order(mode: ModeParams) -> np.ndarray | None:
    """The scenarios by reach radius (:func:`~agglo.engine.planning.scenarios.reach_radius_km`), widest first
    (ties in batch order), or None when they already are: the batched kernels drop a
    scenario from their inner loop once its reach has ended, so that in this order a batch
    costs about the sum of its scenarios' reaches, not its size times the widest."""
    order = np.argsort(-reach_radius_km(mode), kind="stable")
    if np.array_equal(order, np.arange(order.shape[0])):
        return None
    return order


def _mode_results(
    network: Network, mode: ModeParams, rows: Rows, closed: np.ndarray, is_core: np.ndarray, device: str = "cpu"
) -> dict:
    """The model passes of one mode, run with the scenarios in :func:`reach_order` and
    returned in batch order (each scenario's results are the same bits in any order)."""
    order = reach_order(mode)
    if order is None:
        return _model_groups(network, mode, rows, closed, is_core, device)
    got = _model_groups(network, take(mode, order), rows, closed[order], np.ascontiguousarray(is_core[order]), device)
    back = np.empty_like(order)
    back[order] = np.arange(order.shape[0])
    return {name: value[back] for name, value in got.items()}


def _model_groups(
    network: Network, mode: ModeParams, rows: Rows, closed: np.ndarray, is_core: np.ndarray, device: str = "cpu"
) -> dict:
    """The model passes of one mode, scenarios grouped by model, merged back in order;
    ``device`` chooses the passes (:data:`MODEL_PASSES` or :data:`CUDA_PASSES`)."""
    passes = CUDA_PASSES if device == "cuda" else MODEL_PASSES
    n_scen, n = is_core.shape
    merged = {"ipf_iterations": np.zeros(n_scen, dtype=np.int32), "ipf_error": np.full(n_scen, np.nan)}
    codes = np.unique(mode.model)
    if len(codes) == 1:  # the usual case: the model's arrays as they come, no copy
        merged.update(passes[int(codes[0])](network, rows, mode, closed, is_core))
    else:
        merged.update(
            n_reachable=np.zeros((n_scen, n), dtype=np.int32),
            best_core=np.full((n_scen, n), -1, dtype=np.int32),
            best_weight=np.zeros((n_scen, n)),
            denominator=np.zeros((n_scen, n)),
            inflow=np.zeros((n_scen, n)),
        )
        for code in codes:
            idx = np.flatnonzero(mode.model == code)
            got = passes[int(code)](network, rows, take(mode, idx), closed[idx], np.ascontiguousarray(is_core[idx]))
            for name, value in got.items():
                merged[name][idx] = value
    for name, dtype in MERGED_TYPES.items():
        merged[name] = np.asarray(merged[name], dtype=dtype)  # no copy when already so
    return merged


def _count_near(merged: dict, threshold: np.ndarray, is_core: np.ndarray) -> None:
    """Add to NEAR_TIES the towns whose core the CPU might choose otherwise: two best
    candidates within the contract's tolerance (``near``), or a share that close to the
    threshold."""
    from agglo.kernels.cuda import SHARE_RTOL

    with np.errstate(invalid="ignore", divide="ignore"):
        share = merged["best_weight"] / merged["denominator"]
        at_threshold = np.abs(share - threshold[:, None]) <= SHARE_RTOL * np.maximum(threshold[:, None], 1e-300)
    near = (merged["near"] | at_threshold) & (merged["best_core"] >= 0) & ~is_core
    with _NEAR_LOCK:
        NEAR_TIES[0] += int(near.sum())
        NEAR_TIES[1] += int(near.size)


def _mode_batch(
    network: Network, name: str, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray, device: str = "cpu"
) -> dict:
    """One mode's cube variables for the scenarios given, scenario first."""
    merged = _mode_results(network, mode, network.rows[name], closed, is_core, device)
    if device == "cuda":
        _count_near(merged, mode.threshold, is_core)
    core, share, agglo_population, coverage, n_agglomerations = assign_batch(
        network.population,
        is_core,
        merged["best_core"],
        merged["best_weight"],
        merged["denominator"],
        mode.threshold,
    )
    return {
        "core": core,
        "share": share,
        "n_reachable": merged["n_reachable"],
        "inflow": merged["inflow"].astype(np.float32),
        "agglo_population": agglo_population,
        "coverage": coverage,
        "n_agglomerations": n_agglomerations,
        "ipf_iterations": merged["ipf_iterations"],
        "ipf_error": merged["ipf_error"],
    }


MEMO_BYTES = 256 * 2**20


class ModeMemo:
    """The per-scenario results of one mode already computed on a network in this process,
    by :func:`mode_keys` key, up to ``budget`` bytes (the oldest dropped first).

    A scenario found here is copied instead of computed again: the same bits, since a
    scenario's results depend only on its key and the network. A sweep that crosses
    commuting and freight values (``commute.cap_min=30,...,100 freight.cap_min=120,...,330``)
    repeats each freight scenario in every commuting batch; each is computed once."""

    def __init__(self, budget: int = MEMO_BYTES):
        self.budget = int(budget)
        self.rows: dict = {}  # key -> {variable: one scenario's value}, oldest first
        self.nbytes = 0
        self.hits = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            got = self.rows.get(key)
            self.hits += got is not None
            return got

    def put(self, key, row: dict) -> None:
        size = sum(np.asarray(v).nbytes for v in row.values())
        if size > self.budget:
            return
        with self._lock:
            if key in self.rows:
                return
            while self.nbytes + size > self.budget:
                oldest = next(iter(self.rows))
                self.nbytes -= sum(np.asarray(v).nbytes for v in self.rows.pop(oldest).values())
            self.rows[key] = row
            self.nbytes += size


_MEMO: list = [None, None]  # (a weak reference to a network, its ModeMemo): one network per process
_MEMO_LOCK = threading.Lock()


def memo_of(network: Network) -> ModeMemo:
    """The :class:`ModeMemo` of ``network`` in this process (a new one for a new network)."""
    with _MEMO_LOCK:
        ref, memo = _MEMO
        if ref is None or ref() is not network:
            memo = ModeMemo()
            _MEMO[:] = [weakref.ref(network), memo]
        return memo


def compute_batch(
    network: Network, batch: ScenarioBatch, memo: ModeMemo | None = None, once: bool = True, device: str = "cpu"
) -> dict:
    """Both modes for a batch of S scenarios: docs/model.md's cube variables, scenario first.

    Returns arrays of shape (S, 2, N) for the town variables and (S, 2) for the others.
    Per mode, scenarios with equal :func:`mode_keys` are computed once (``once=False``:
    every one, as the kernel benchmark measures the kernels), and with a ``memo``
    (:class:`ModeMemo`, of this network) those already computed are copied from it.
    ``device``: ``cpu`` (the reference) or ``cuda`` (the gravity passes on the GPU).
    """
    is_core = core_mask(network.population, network.forced_core, batch.core_min_population)
    n_scen = batch.n_scenarios
    out: dict = {}

    def put(key, value, at, m):
        """Mode ``m``'s ``value`` of every scenario (``at`` None) or of scenario ``at``."""
        if key not in out:
            out[key] = np.empty(
                (n_scen, len(MODES), *np.shape(value)[1 if at is None else 0 :]), np.asarray(value).dtype
            )
        out[key][(slice(None) if at is None else at, m)] = value

    for m, name in enumerate(MODES):
        mode = batch.mode(name)
        keys = mode_keys(mode, batch.closed, is_core)
        twin = first_of(keys) if once else np.arange(n_scen)
        unique = np.flatnonzero(twin == np.arange(n_scen))  # one scenario per key
        known = [memo.get((name, keys[s])) if memo is not None else None for s in unique]
        todo = np.array([s for s, row in zip(unique, known) if row is None], dtype=np.int64)
        if todo.shape[0] == n_scen:  # nothing repeated nor known: as computed
            for key, value in _mode_batch(network, name, mode, batch.closed, is_core, device).items():
                put(key, value, None, m)
            continue
        if todo.shape[0] > 0:
            got = _mode_batch(
                network, name, take(mode, todo), batch.closed[todo], np.ascontiguousarray(is_core[todo]), device
            )
            rows = iter([{key: value[k].copy() for key, value in got.items()} for k in range(todo.shape[0])])
            known = [row if row is not None else next(rows) for row in known]
            if memo is not None:
                for s, row in zip(unique, known):
                    memo.put((name, keys[s]), row)
        for s, u in enumerate(np.searchsorted(unique, twin)):  # each scenario's row among the unique ones
            for key, value in known[u].items():
                put(key, value, s, m)
    return out


def mode_piece(network: Network, batch: ScenarioBatch, name: str, scenarios: np.ndarray, device: str = "cpu") -> dict:
    """Mode ``name``'s cube variables for the ``scenarios`` (indices) of ``batch``, scenario
    first: a piece of a batch that a Dask worker computes on its own (the same bits as in
    :func:`compute_batch`, since no pass depends on the other scenarios of its batch)."""
    part = batch.take(np.asarray(scenarios, dtype=np.int64))
    is_core = core_mask(network.population, network.forced_core, part.core_min_population)
    return _mode_batch(network, name, part.mode(name), part.closed, is_core, device)


def scenario_digests(network: Network, batch: ScenarioBatch) -> list[list[bytes]]:
    """Per mode, per scenario of ``batch``, a SHA-256 of its :func:`mode_keys` key (32 bytes
    instead of a key that holds the whole core mask)."""
    import hashlib

    is_core = core_mask(network.population, network.forced_core, batch.core_min_population)
    return [
        [
            hashlib.sha256(b"".join([bytes([k[0]]), *k[1:]])).digest()
            for k in mode_keys(batch.mode(name), batch.closed, is_core)
        ]
        for name in MODES
    ]


def assemble(rows: list) -> dict:
    """A batch's cube variables, shaped as :func:`compute_batch` returns them, from its
    scenarios' rows: ``rows[s][m]`` is ``(piece, k)``, row ``k`` of a :func:`mode_piece` result."""
    out: dict = {}
    for s, per_mode in enumerate(rows):
        for m, (piece, k) in enumerate(per_mode):
            for key, value in piece.items():
                if key not in out:
                    out[key] = np.empty((len(rows), len(MODES), *np.shape(value)[1:]), np.asarray(value).dtype)
                out[key][s, m] = value[k]
    return out
