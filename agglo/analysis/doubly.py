"""The doubly-constrained gravity model at national scale: every origin's workers and every
destination's jobs kept, ``T_ij = A_i O_i B_j D_j f(c_ij)`` with the balancing factors ``A``
and ``B`` found by Furness rounds over the whole dense table, and the deterrence (beta, and
the self term's cost where it is fitted) chosen to minimise the Poisson deviance of the
observed flows of the fitted origins' rows.

With one effect per origin and one per destination the Poisson MLE reproduces both margins,
so the effects are the balancing factors and only the deterrence is searched: the same beta
as :func:`agglo.analysis.calibrate.fit` of the ``doubly`` model over all pairs
(tests/test_calibrate.py), without its 2N indicator columns. Held out, the margins are those
of every place (what a census publishes by residence and by workplace); the flows of the
scored rows are never read.

A unit (a county) is not a point: its people live in places spread over it, and the trips
between two units are trips between their places. :class:`PlaceDeterrence` is the deterrence
between units as the mean of the deterrence between their places, each weighted by its share
of its unit's people, a place's trip to itself at the self cost; fitted through it, beta and
the self time are a town's, the scale the engine runs at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agglo.analysis.calibrate import log_f_per_beta, poisson_deviance


@dataclass
class DoublyFit:
    decay: str
    beta: float
    self_cost: float | None  # the cost of a trip within a place; None: no self term
    deviance: float  # of the fitted rows
    evaluations: int

    def flows(self, cost: np.ndarray, workers: np.ndarray, jobs: np.ndarray) -> np.ndarray:
        """The model's (N, N) flows, rows summing to ``workers``, columns to ``jobs``."""
        return balanced_flows(deterrence(cost, self.decay, self.beta, self.self_cost), workers, jobs)[0]

    def log_f_against_self(self, cost) -> np.ndarray:
        """log f(cost) - log f(self cost): the deterrence against a trip within a place, on the
        scale of :attr:`FreeFit.log_f`."""
        return self.beta * (log_f_per_beta(cost, self.decay) - log_f_per_beta(self.self_cost, self.decay))


def deterrence(cost: np.ndarray, decay: str, beta: float, self_cost: float | None) -> np.ndarray:
    """f(c_ij), power ``c^-beta`` or exponential ``exp(-beta c)``; the diagonal is the self
    term at ``self_cost``, or 0 without one."""
    c = np.array(cost, dtype=np.float64)
    np.fill_diagonal(c, 1.0 if self_cost is None else self_cost)
    f = np.exp(beta * log_f_per_beta(c, decay))
    if self_cost is None:
        np.fill_diagonal(f, 0.0)
    return f


def balanced_flows(f, workers, jobs, b=None, tol: float = 1e-10, max_rounds: int = 10_000):
    """Furness rounds until every column sum is within ``tol`` (relative) of its jobs; rows are
    exact after each round. Returns the flows and the destination factors (a warm start)."""
    workers, jobs = np.asarray(workers, dtype=np.float64), np.asarray(jobs, dtype=np.float64)
    b = np.ones(f.shape[1]) if b is None else b
    for _ in range(max_rounds):
        a = workers / np.maximum(f @ (b * jobs), 1e-300)
        column = (f.T @ a) * b * jobs
        if np.max(np.abs(column - jobs) / np.maximum(jobs, 1e-300)) <= tol:
            break
        b = b * np.where(column > 0, jobs / np.maximum(column, 1e-300), 1.0)
    return a[:, None] * f * (b * jobs)[None, :], b


def fit_doubly(
    flows: np.ndarray,
    cost: np.ndarray,
    workers: np.ndarray,
    jobs: np.ndarray,
    decay: str,
    self_term: bool = False,
    origins: np.ndarray | None = None,
    xatol: float = 1e-6,
    tol: float = 1e-10,
    deterrence_of: Callable[[float, float | None], np.ndarray] | None = None,
    start: tuple[float, float] | None = None,
    fatol: float = 1e-12,
) -> DoublyFit:
    """Fit beta (and the self term's cost) of the doubly-constrained model. ``flows`` (K, N):
    the observed rows of ``origins`` (default all N); ``cost`` (N, N) every pair's cost;
    ``workers`` and ``jobs`` (N,) every place's margins (without the diagonal's trips when
    there is no self term; their totals equal). Nelder-Mead on (beta, log self cost), each step
    one balance to ``tol`` warm-started from the last. ``deterrence_of(beta, self_cost)``, when
    given, makes the (N, N) deterrence instead of :func:`deterrence` of ``cost`` (a
    :class:`PlaceDeterrence`); ``start``: (beta, self cost), else (2, 10) or (0.03, 10); ``fatol``:
    the change of the deviance per observed trip that stops the search (with ``xatol``)."""
    from scipy.optimize import minimize

    rows = np.arange(len(workers)) if origins is None else np.asarray(origins)
    y = np.array(flows, dtype=np.float64)
    if not self_term:
        y[np.arange(rows.size), rows] = 0.0
    warm, total = [None], y.sum()

    def deviance(theta):
        self_cost = float(np.exp(theta[1])) if self_term else None
        f = (
            deterrence(cost, decay, theta[0], self_cost)
            if deterrence_of is None
            else deterrence_of(theta[0], self_cost)
        )
        mu, warm[0] = balanced_flows(f, workers, jobs, warm[0], tol)
        return poisson_deviance(y, mu[rows]) / total

    start = start or (2.0 if decay == "power" else 0.03, 10.0)
    theta0 = [start[0]] + ([np.log(start[1])] if self_term else [])
    res = minimize(deviance, np.array(theta0), method="Nelder-Mead", options={"xatol": xatol, "fatol": fatol})
    return DoublyFit(
        decay=decay,
        beta=float(res.x[0]),
        self_cost=float(np.exp(res.x[1])) if self_term else None,
        deviance=float(res.fun * total),
        evaluations=int(res.nfev),
    )


@dataclass
class FreeFit:
    """A free deterrence: one value per bin of travel time between ``edges`` and one for the
    self term (a trip within a place), ``log_f`` relative to the self term's (its last entry, 0)."""

    edges: np.ndarray  # (B + 1,) bin k: the off-diagonal costs in [edges[k], edges[k + 1])
    log_f: np.ndarray  # (B + 1,) per bin, then the self term; -inf: a bin without observed trips
    rounds: int
    error: float  # at the end: the largest relative gap of a bin's trips or of a margin

    def flows(self, weights: BinWeights, workers: np.ndarray, jobs: np.ndarray) -> np.ndarray:
        return balanced_flows(weights.table(np.exp(self.log_f)), workers, jobs)[0]


class BinWeights:
    """Each pair's deterrence as a mix of bins, ``F_ij = Σ_k f_k W_ijk``: a pair of points
    lies in one bin (``bins`` (N, N): k for an off-diagonal cost in [edges[k], edges[k + 1]),
    costs beyond the ends in the end bins, B = len(edges) - 1 on the diagonal); the pairs
    ``cell`` (flat indices) instead spread over the bins by ``weight`` (C, B + 1), as a pair of
    counties spreads over the pairs of their places (:meth:`PlaceDeterrence.bin_weights`)."""

    def __init__(self, edges, bins: np.ndarray, cell: np.ndarray | None = None, weight: np.ndarray | None = None):
        self.edges = np.asarray(edges, dtype=np.float64)
        self.n_bins = self.edges.size
        self.bins = np.array(bins, dtype=np.int64)
        self.cell = np.zeros(0, dtype=np.int64) if cell is None else np.asarray(cell, dtype=np.int64)
        self.weight = np.zeros((0, self.n_bins)) if weight is None else np.asarray(weight, dtype=np.float64)
        self.bins.ravel()[self.cell] = self.n_bins  # a slot of its own: no single bin

    @classmethod
    def points(cls, cost: np.ndarray, edges) -> BinWeights:
        """Pairs of points: each in the bin of its cost, the diagonal in the self term's."""
        bins = free_bin(cost, edges)
        np.fill_diagonal(bins, len(edges) - 1)
        return cls(edges, bins)

    def table(self, f: np.ndarray) -> np.ndarray:
        """F (N, N) for the bin values ``f`` (B + 1,)."""
        out = np.append(f, 0.0)[self.bins]
        out.ravel()[self.cell] = self.weight @ f
        return out

    def trips(self, ratio: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Per bin, Σ_ij ratio_ij f_k W_ijk: the trips of ``ratio`` = T / F in bin k."""
        far = np.bincount(self.bins.ravel(), ratio.ravel(), minlength=self.n_bins + 1)[: self.n_bins]
        return f * (far + ratio.ravel()[self.cell] @ self.weight)


def bin_middles(edges) -> np.ndarray:
    """Each bin's middle, the lower edge for an open last bin."""
    lo, hi = np.asarray(edges[:-1], dtype=np.float64), np.asarray(edges[1:], dtype=np.float64)
    return np.where(np.isfinite(hi), (lo + hi) / 2, lo)


def free_bin(cost, edges) -> np.ndarray:
    """k for a cost in [edges[k], edges[k + 1]), costs beyond the ends in the end bins."""
    edges = np.asarray(edges, dtype=np.float64)
    return np.clip(np.searchsorted(edges, cost, side="right") - 1, 0, edges.size - 2)


def _gap(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)))


def fit_free(
    flows: np.ndarray,
    weights: BinWeights,
    workers: np.ndarray,
    jobs: np.ndarray,
    origins: np.ndarray | None = None,
    tol: float = 1e-7,
    max_rounds: int = 20_000,
) -> FreeFit:
    """The doubly-constrained model with a free deterrence: ``f`` constant on each bin of
    travel time between ``weights.edges``, the diagonal (a trip within a place) a value of its own;
    ``weights`` says how each pair spreads over the bins (:class:`BinWeights`). Rounds of Furness
    steps towards every place's ``workers`` and ``jobs`` (totals equal), then each bin's value
    scaled by the ratio of the fitted ``origins``' observed to model trips in it (the Poisson
    likelihood's equation for a bin's effect; with one bin per pair, Evans's tri-proportional
    method), until every bin and every margin is within ``tol`` (relative). ``flows`` (K, N):
    the observed rows of ``origins`` (default all N), the diagonal included. The measured shape
    of the deterrence, where a power or an exponential law is a guess."""
    rows = np.arange(len(workers)) if origins is None else np.asarray(origins)
    jobs = np.asarray(jobs, dtype=np.float64)
    seen, in_rows = np.zeros(weights.bins.shape), np.zeros(len(workers), dtype=bool)
    seen[rows], in_rows[rows] = flows, True
    ones = np.ones(weights.n_bins)
    observed = weights.trips(np.divide(seen, weights.table(ones), out=np.zeros_like(seen), where=seen > 0), ones)
    if observed[-1] <= 0:
        raise ValueError("no trip within a place among the fitted rows: the self term's value has no scale")
    f = np.where(observed > 0, 1.0, 0.0)
    b, error, rounds = None, np.inf, 0
    while rounds < max_rounds:
        rounds += 1
        table = weights.table(f)
        model, b = balanced_flows(table, workers, jobs, b, tol=0.0, max_rounds=5)
        margins = max(_gap(model.sum(axis=1), workers), _gap(model.sum(axis=0), jobs))
        inverse = np.divide(1.0, table, out=np.zeros_like(table), where=table > 0)
        want, got = weights.trips(seen * inverse, f), weights.trips(model * inverse * in_rows[:, None], f)
        ratio = np.divide(want, got, out=np.ones(f.size), where=want > 0)
        error = float(max(np.max(np.abs(ratio - 1.0)), margins))
        if error <= tol:
            break
        f = f * ratio
        f = f / f[-1]
    with np.errstate(divide="ignore"):
        return FreeFit(weights.edges, np.log(f), rounds, error)


def minutes_between(lat_i, lon_i, lat_j, lon_j, circuity: float, speed_kmh: float, min_time_min: float):
    """docs/model.md's travel time between points (degrees, broadcast), at least ``min_time_min``."""
    phi_i, phi_j = np.radians(lat_i), np.radians(lat_j)
    h = np.sin((phi_j - phi_i) / 2) ** 2
    h = h + np.cos(phi_i) * np.cos(phi_j) * np.sin((np.radians(lon_j) - np.radians(lon_i)) / 2) ** 2
    km = 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return np.maximum(60 * circuity * km / speed_kmh, min_time_min)


class PlaceDeterrence:
    """The deterrence between units (counties) from the places their people live in:

        F_IJ = Σ_{p in I} Σ_{q in J} w_p w_q f(t_pq),    w_p = people of p / people of I,

    ``f`` of docs/model.md's travel time between the places, a place's trip to itself (p = q,
    only within a unit) at the self cost. Unit pairs whose internal points lie more than
    ``near_km`` apart take ``f`` between the internal points instead: at that range a unit's
    spread changes a trip's time by little, and the pairs of places stay few (about 9 M for
    the 3 233 US counties and their 23 000 places at 150 km, not 500 M). Call it with (beta,
    self cost) for the (N, N) table, as :func:`fit_doubly` does."""

    def __init__(
        self,
        units: dict,
        places: dict,
        decay: str,
        circuity: float,
        speed_kmh: float,
        min_time_min: float,
        near_km: float = 150.0,
    ):
        """``units``: ``lat``, ``lon`` (N,) internal points; ``places``: ``unit`` (P,) the index
        of each place's unit, ``lat``, ``lon``, ``people`` (every unit needs one place at least)."""
        unit = np.asarray(places["unit"], dtype=np.int64)
        n = len(units["lat"])
        people = np.asarray(places["people"], dtype=np.float64)
        total = np.bincount(unit, people, minlength=n)
        if np.any(total <= 0):
            raise ValueError(f"units without people in any place: {np.flatnonzero(total <= 0)[:5].tolist()}")
        self.decay, self.n = decay, n
        ulat, ulon = np.asarray(units["lat"], dtype=np.float64), np.asarray(units["lon"], dtype=np.float64)
        self.unit_minutes = minutes_between(
            ulat[:, None], ulon[:, None], ulat[None, :], ulon[None, :], circuity, speed_kmh, min_time_min
        )
        self.h_units = log_f_per_beta(self.unit_minutes, decay)
        km_units = minutes_between(ulat[:, None], ulon[:, None], ulat[None, :], ulon[None, :], 1.0, 60.0, 0.0)
        ui, uj = np.nonzero(km_units <= near_km)
        self.cell = ui * n + uj
        order = np.argsort(unit, kind="stable")
        first = np.searchsorted(unit[order], np.arange(n + 1))
        size_i, size_j = np.diff(first)[ui], np.diff(first)[uj]
        count = size_i * size_j
        self.pair = np.repeat(np.arange(ui.size), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        p = order[first[ui][self.pair] + k // size_j[self.pair]]
        q = order[first[uj][self.pair] + k % size_j[self.pair]]
        lat, lon = np.asarray(places["lat"], dtype=np.float64), np.asarray(places["lon"], dtype=np.float64)
        w = people / total[unit]
        self.weight = w[p] * w[q]
        self.same = p == q
        self.minutes = minutes_between(lat[p], lon[p], lat[q], lon[q], circuity, speed_kmh, min_time_min)
        self.h = log_f_per_beta(self.minutes, decay)

    def __call__(self, beta: float, self_cost: float | None) -> np.ndarray:
        """The (N, N) table; without a self cost the diagonal is 0 (no trip within a unit, as
        :func:`deterrence` has it)."""
        h = np.where(self.same, log_f_per_beta(1.0 if self_cost is None else self_cost, self.decay), self.h)
        f = np.exp(beta * self.h_units)
        f.ravel()[self.cell] = np.bincount(self.pair, self.weight * np.exp(beta * h), minlength=self.cell.size)
        if self_cost is None:
            np.fill_diagonal(f, 0.0)
        return f

    def bin_weights(self, edges) -> BinWeights:
        """The same mean over pairs of places for a free deterrence (:func:`fit_free`): each
        near unit pair spreads over the bins of its place pairs' times, weighted ``w_p w_q``, a
        place's trip to itself in the self term's bin; a far pair lies in its points' bin."""
        n_bins = len(edges)
        bins = free_bin(self.unit_minutes, edges)
        place_bin = np.where(self.same, n_bins - 1, free_bin(self.minutes, edges))
        weight = np.bincount(self.pair * n_bins + place_bin, self.weight, minlength=self.cell.size * n_bins)
        return BinWeights(edges, bins, self.cell, weight.reshape(self.cell.size, n_bins))
