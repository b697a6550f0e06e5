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

from agglo.engine.compute.keys import first_of, mode_keys
from agglo.engine.compute.models import CUDA_PASSES, MODEL_PASSES
from agglo.engine.config.names import MODES
from agglo.engine.network.build import Network
from agglo.engine.planning.scenarios import ScenarioBatch, core_mask, reach_radius_km
from agglo.kernels import ModeParams, Rows, assign_batch
from agglo.kernels.records import take

NEAR_TIES = [0, 0]  # this process's (towns near a tie or the threshold, towns) on the GPU
_NEAR_LOCK = threading.Lock()

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
    network: Network,
    batch: ScenarioBatch,
    memo: ModeMemo | None = None,
    share_repeats: bool = True,
    device: str = "cpu",
) -> dict:
    """Both modes for a batch of S scenarios: docs/model.md's cube variables, scenario first.

    Returns arrays of shape (S, 2, N) for the town variables and (S, 2) for the others.
    Per mode, scenarios with equal :func:`mode_keys` are computed once (``share_repeats=False``:
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
        first = first_of(keys) if share_repeats else np.arange(n_scen)
        unique = np.flatnonzero(first == np.arange(n_scen))  # one scenario per key
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
        for s, u in enumerate(np.searchsorted(unique, first)):  # each scenario's row among the unique ones
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
