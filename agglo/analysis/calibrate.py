"""Fitting gravity models to observed flows: Poisson regression with a log link (IRLS).

The four models of spatial-interaction practice (Wilson's family, as PySAL spint and
scikit-mobility fit them), for flows ``T_ij`` between distinct places::

    gravity (unconstrained)   log mu_ij = k + alpha log O_i + gamma log D_j + c(t_ij)
    production-constrained    log mu_ij = k + a_i + gamma log D_j + c(t_ij)
    attraction-constrained    log mu_ij = k + b_j + alpha log O_i + c(t_ij)
    doubly-constrained        log mu_ij = k + a_i + b_j + c(t_ij)

with ``a_i``/``b_j`` one indicator per origin/destination (the first dropped), masses
``O_i``/``D_j`` (the towns' populations unless given), and ``c(t) = -beta log t``
(power) or ``-beta t`` (exponential); ``t`` is the distance in km or docs/model.md's travel
time in minutes. The fit maximises the Poisson likelihood by iteratively reweighted
least squares; standard errors from the inverse Fisher information. Goodness of fit:
deviance, McFadden's pseudo-R² (1 - llf / llf of the constant-only model), SRMSE and
the common part of commuters, CPC = 2 Σ min(T, mu) / (Σ T + Σ mu).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln

FORMS = ("gravity", "production", "attraction", "doubly")  # the constraint forms fitted


@dataclass
class Fit:
    model: str
    decay: str
    names: list
    params: np.ndarray
    se: np.ndarray
    mu: np.ndarray
    deviance: float
    null_deviance: float
    llf: float
    llnull: float
    iterations: int
    stats: dict = field(default_factory=dict)

    def param(self, name: str) -> float:
        return float(self.params[self.names.index(name)])


def poisson_irls(y: np.ndarray, x: np.ndarray, tol: float = 1e-12, max_iter: int = 200):
    """Maximum-likelihood Poisson regression with log link: (beta, mu, iterations)."""
    y = np.asarray(y, dtype=np.float64)
    mu = y + y.mean()  # a start every observation agrees with (mu > 0)
    eta = np.log(mu)
    beta = np.zeros(x.shape[1])
    old = np.inf
    for it in range(1, max_iter + 1):
        z = eta + (y - mu) / mu
        w = mu
        xtw = x.T * w
        beta = np.linalg.solve(xtw @ x, xtw @ z)
        eta = x @ beta
        mu = np.exp(eta)
        dev = poisson_deviance(y, mu)
        if abs(old - dev) <= tol * (abs(dev) + 1e-300):
            return beta, mu, it
        old = dev
    return beta, mu, max_iter


def cpc(y, mu, axis=None):
    """The common part of commuters, 2 Σ min(T, mu) / (Σ T + Σ mu) (per row with ``axis=1``)."""
    out = 2.0 * np.minimum(y, mu).sum(axis=axis) / (y.sum(axis=axis) + mu.sum(axis=axis))
    return float(out) if axis is None else out


def poisson_deviance(y, mu):
    """The Poisson deviance, 2 Σ [y log(y / mu) - (y - mu)] (a zero y contributes mu)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2.0 * np.sum(term - (y - mu)))


def _llf(y, mu):
    return float(np.sum(y * np.log(mu) - mu - gammaln(y + 1.0)))


def _indicators(labels: np.ndarray, prefix: str):
    levels = sorted(set(labels.tolist()))  # sorted, the first is the reference level (as spint)
    cols = [(labels == lev).astype(np.float64) for lev in levels[1:]]
    return cols, [f"{prefix}[{lev}]" for lev in levels[1:]]


def design(model: str, decay: str, origin, destination, cost, o_mass=None, d_mass=None):
    """The regression's columns and their names, in spint's order."""
    origin = np.asarray(origin)
    destination = np.asarray(destination)
    cost = np.asarray(cost, dtype=np.float64)
    cols, names = [np.ones(cost.shape[0])], ["const"]
    if model in ("production", "doubly"):
        c, n = _indicators(origin, "origin")
        cols, names = cols + c, names + n
    if model in ("attraction", "doubly"):
        c, n = _indicators(destination, "destination")
        cols, names = cols + c, names + n
    if model in ("gravity", "attraction"):
        cols.append(np.log(np.asarray(o_mass, dtype=np.float64)))
        names.append("log_origin_mass")
    if model in ("gravity", "production"):
        cols.append(np.log(np.asarray(d_mass, dtype=np.float64)))
        names.append("log_destination_mass")
    cols.append(np.log(cost) if decay == "power" else cost)
    names.append("log_cost" if decay == "power" else "cost")
    return np.column_stack(cols), names


def fit(model: str, decay: str, flows, origin, destination, cost, o_mass=None, d_mass=None) -> Fit:
    """Fit one model; ``flows``, ``origin``, ``destination``, ``cost`` (and masses) per pair."""
    if model not in FORMS:
        raise ValueError(model)
    y = np.asarray(flows, dtype=np.float64)
    x, names = design(model, decay, origin, destination, cost, o_mass, d_mass)
    beta, mu, iterations = poisson_irls(y, x)
    cov = np.linalg.inv((x.T * mu) @ x)
    mu_null = np.full_like(y, y.mean())
    out = Fit(
        model=model,
        decay=decay,
        names=names,
        params=beta,
        se=np.sqrt(np.diag(cov)),
        mu=mu,
        deviance=poisson_deviance(y, mu),
        null_deviance=poisson_deviance(y, mu_null),
        llf=_llf(y, mu),
        llnull=_llf(y, mu_null),
        iterations=iterations,
    )
    out.stats = {
        "deviance": out.deviance,
        "pseudo_r2": 1.0 - out.llf / out.llnull,
        "srmse": float(np.sqrt(np.mean((y - mu) ** 2)) / np.mean(y)),
        "cpc": cpc(y, mu),
        "pairs": int(y.shape[0]),
        "iterations": iterations,
    }
    return out


@dataclass
class ProfileFit:
    """A production-constrained fit with the origin effects profiled out (see :func:`fit_production`)."""

    decay: str
    gamma: float
    beta: float
    self_cost: float | None  # the fitted (or given) cost of a trip within a place; None: no self term
    loglik: float  # the multinomial log-likelihood per origin, Σ T_ij log p_ij
    iterations: int

    def params(self) -> np.ndarray:
        out = [self.gamma, self.beta] + ([np.log(self.self_cost)] if self.self_cost is not None else [])
        return np.array(out)

    def probabilities(self, cost: np.ndarray, mass: np.ndarray, origins: np.ndarray | None = None) -> np.ndarray:
        """p_ij for the origin rows of ``cost`` (see :func:`fit_production`)."""
        origins = _origins(cost, origins)
        h = log_f_per_beta(cost, self.decay)
        return np.exp(_profile_logp(self.params(), h, np.log(mass), self.decay, self.self_cost is not None, origins))


def _origins(cost, origins):
    return np.arange(cost.shape[0]) if origins is None else np.asarray(origins)


def log_f_per_beta(cost, decay: str):
    """log f(c) / beta: -log c (power) or -c (exponential); the one column beta multiplies."""
    return -np.log(cost) if decay == "power" else -cost


def _self_h(theta, decay):
    return log_f_per_beta(np.exp(theta[2]), decay)


def _profile_logp(theta, h, log_mass, decay, with_self, origins):
    """log p_ij, p_ij = w_ij / Σ_k w_ik, log w_ij = gamma log mass_j + beta h_ij with ``h``
    :func:`log_f_per_beta` of the costs, for the origins' rows; an origin's own column is the self
    term at cost exp(theta[2]) (with_self), else p = 0."""
    gamma, beta = theta[0], theta[1]
    lw = gamma * log_mass[None, :] + beta * h
    own = (np.arange(origins.shape[0]), origins)
    lw[own] = gamma * log_mass[origins] + beta * _self_h(theta, decay) if with_self else -np.inf
    lw -= lw.max(axis=1, keepdims=True)
    return lw - np.log(np.exp(lw).sum(axis=1, keepdims=True))  # log p, which far pairs need (p underflows)


def fit_production(
    flows: np.ndarray,
    cost: np.ndarray,
    mass: np.ndarray,
    decay: str,
    self_term: bool = False,
    origins: np.ndarray | None = None,
) -> ProfileFit:
    """The production-constrained gravity model at any scale: with one effect per origin, the
    Poisson MLE reproduces each origin's total, so the effects profile out and what remains
    is a multinomial per origin, ``T_ij ~ O_i p_ij`` with ``p_ij = D_j^gamma f(c_ij) /
    Σ_k D_k^gamma f(c_ik)``: two parameters (three with the self term's cost), fitted by
    BFGS with the exact gradient. ``flows`` and ``cost`` (K, N): the rows of the origins
    ``origins`` (default: all N, in order) to every place; an origin's own column holds
    the trips within it (used only with ``self_term``); ``mass`` (N,) the places' masses.
    The same gamma and beta as :func:`fit` of the ``production`` model over all pairs
    (tests/test_calibrate.py), without its N indicator columns."""
    from scipy.optimize import minimize

    origins = _origins(cost, origins)
    own = (np.arange(origins.shape[0]), origins)
    flows = np.array(flows, dtype=np.float64)
    if not self_term:
        flows[own] = 0.0
    safe = np.where(cost > 0, cost, 1.0)
    log_mass = np.log(np.asarray(mass, dtype=np.float64))
    h = log_f_per_beta(safe, decay)  # once: every round of the fit reads it
    total = flows.sum()
    out_tot = flows.sum(axis=1)

    def objective(theta):
        logp = _profile_logp(theta, h, log_mass, decay, self_term, origins)
        p = np.exp(logp)
        ll = float(np.sum(flows * np.where(flows > 0, logp, 0.0)))
        hx = h.copy()  # the log-weight's beta column, the self term's cost on the own column
        if self_term:
            hx[own] = _self_h(theta, decay)
        grad = [  # Σ_ij T_ij (x_ij - E_p[x]_i) for each parameter's column x
            float(np.sum(flows @ log_mass) - np.sum(out_tot * (p @ log_mass))),
            float(np.sum(flows * hx) - np.sum(out_tot * np.sum(p * hx, axis=1))),
        ]
        if self_term:
            d_self = -theta[1] if decay == "power" else -theta[1] * np.exp(theta[2])  # d log w_ii / d log tau
            grad.append(float((flows[own].sum() - np.sum(out_tot * p[own])) * d_self))
        return -ll / total, -np.array(grad) / total

    start = [1.0, 1.0 if decay == "power" else 0.01] + ([np.log(10.0)] if self_term else [])
    res = minimize(objective, np.array(start), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 500})
    theta = res.x
    return ProfileFit(
        decay=decay,
        gamma=float(theta[0]),
        beta=float(theta[1]),
        self_cost=float(np.exp(theta[2])) if self_term else None,
        loglik=float(-res.fun * total),
        iterations=int(res.nit),
    )


def scores(flows: np.ndarray, p: np.ndarray, self_term: bool, origins: np.ndarray | None = None) -> dict:
    """How well ``p`` (the origins' rows, as :meth:`ProfileFit.probabilities` makes them)
    reproduces observed ``flows``, every origin's total kept: CPC, McFadden's pseudo-R² of
    the Poisson model against the constant mean, the share of origins whose largest flow to
    another place goes where the model's largest does, and the CPC origin by origin (its
    median and 10th percentile)."""
    origins = _origins(flows, origins)
    own = (np.arange(origins.shape[0]), origins)
    y = np.array(flows, dtype=np.float64)
    if not self_term:
        y[own] = 0.0
    keep = y.sum(axis=1) > 0
    mu = y.sum(axis=1, keepdims=True) * p
    y, m = y[keep], mu[keep]
    common = cpc(y, m)
    llf = float(np.sum(y * np.log(np.where(y > 0, m, 1.0)) - m - gammaln(y + 1.0)))
    null = np.full_like(y, y.mean())
    llnull = float(np.sum(y * np.log(null) - null - gammaln(y + 1.0)))
    off, pm = np.array(flows, dtype=np.float64), p.copy()
    off[own] = -1.0
    pm[own] = -1.0
    has = keep & (off.max(axis=1) > 0)
    right = np.argmax(off[has], axis=1) == np.argmax(pm[has], axis=1)
    per_origin = cpc(y, m, axis=1)  # county by county
    return {
        "cpc": common,
        "pseudo_r2": 1.0 - llf / llnull,
        "dominant_right": float(right.mean()),
        "cpc_median": float(np.median(per_origin)),
        "cpc_p10": float(np.quantile(per_origin, 0.1)),
        "origins": int(has.sum()),
    }


def engine_values(f: Fit) -> dict:
    """The fitted values as docs/model.md keys of one mode: decay, beta, and gamma / alpha."""
    key = "log_cost" if f.decay == "power" else "cost"
    values = {"decay": f.decay, "beta": -f.param(key)}
    if "log_destination_mass" in f.names:
        values["gamma"] = f.param("log_destination_mass")
    if "log_origin_mass" in f.names:
        values["alpha"] = f.param("log_origin_mass")
    return values


def format_fit(f: Fit, show_indicators: bool = False) -> str:
    lines = [
        f"{f.model}-constrained gravity, {f.decay} deterrence"
        if f.model != "gravity"
        else f"unconstrained gravity, {f.decay} deterrence"
    ]
    lines.append(f"{'parameter':28} {'estimate':>14} {'std. error':>12} {'z':>9}")
    for name, p, s in zip(f.names, f.params, f.se):
        if not show_indicators and name.startswith(("origin[", "destination[")):
            continue
        lines.append(f"{name:28} {p:>14.6g} {s:>12.4g} {p / s if s > 0 else np.nan:>9.2f}")
    hidden = sum(n.startswith(("origin[", "destination[")) for n in f.names)
    if hidden and not show_indicators:
        lines.append(f"({hidden} origin/destination indicators not shown)")
    st = f.stats
    lines.append(
        f"pairs {st['pairs']}, deviance {st['deviance']:.6g}, pseudo-R² {st['pseudo_r2']:.4f}, "
        f"SRMSE {st['srmse']:.4f}, CPC {st['cpc']:.4f}, IRLS iterations {st['iterations']}"
    )
    return "\n".join(lines)


def report(f: Fit, mode: str) -> str:
    """The fit and the docs/model.md keys it gives for ``mode``."""
    values = engine_values(f)
    keys = ", ".join(f"{mode}.{k} = {v if isinstance(v, str) else f'{v:.6g}'}" for k, v in values.items())
    return format_fit(f) + "\ndocs/model.md keys: " + keys


def to_yaml(f: Fit, mode: str, cost: str, source: str) -> str:
    """An override file for ``agglo run --params``: the fitted keys of one mode."""
    values = engine_values(f)
    lines = [
        f"# agglo calibrate: {f.model} model, {f.decay} deterrence on {cost}, fitted to {source}",
        f"# pairs {f.stats['pairs']}, deviance {f.stats['deviance']:.6g}, pseudo-R2 {f.stats['pseudo_r2']:.4f}, "
        f"SRMSE {f.stats['srmse']:.4f}, CPC {f.stats['cpc']:.4f}",
    ]
    if f.decay == "exponential" and cost == "km":
        lines.append("# beta is per km here; docs/model.md's exponential beta is per minute: fit on minutes to use it")
    lines.append(f"{mode}:")
    for key, value in values.items():
        lines.append(f"  {key}: {value if isinstance(value, str) else repr(float(value))}")
    return "\n".join(lines) + "\n"
