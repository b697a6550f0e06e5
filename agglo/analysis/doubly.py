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
"""

from __future__ import annotations

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
) -> DoublyFit:
    """Fit beta (and the self term's cost) of the doubly-constrained model. ``flows`` (K, N):
    the observed rows of ``origins`` (default all N); ``cost`` (N, N) every pair's cost;
    ``workers`` and ``jobs`` (N,) every place's margins (without the diagonal's trips when
    there is no self term; their totals equal). Nelder-Mead on (beta, log self cost), each step
    one balance to ``tol`` warm-started from the last."""
    from scipy.optimize import minimize

    rows = np.arange(cost.shape[0]) if origins is None else np.asarray(origins)
    y = np.array(flows, dtype=np.float64)
    if not self_term:
        y[np.arange(rows.size), rows] = 0.0
    warm, total = [None], y.sum()

    def deviance(theta):
        self_cost = float(np.exp(theta[1])) if self_term else None
        mu, warm[0] = balanced_flows(deterrence(cost, decay, theta[0], self_cost), workers, jobs, warm[0], tol)
        return poisson_deviance(y, mu[rows]) / total

    start = [2.0 if decay == "power" else 0.03] + ([np.log(10.0)] if self_term else [])
    res = minimize(deviance, np.array(start), method="Nelder-Mead", options={"xatol": xatol, "fatol": 1e-12})
    return DoublyFit(
        decay=decay,
        beta=float(res.x[0]),
        self_cost=float(np.exp(res.x[1])) if self_term else None,
        deviance=float(res.fun * total),
        evaluations=int(res.nfev),
    )
