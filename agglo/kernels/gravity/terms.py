"""The one home of the deterrence and gravity-term maths (docs/model.md, "Deterrence", "Shares").

Notes
-----
::

    power:        f(t) = max(t, min_time_min) ^ -beta
    exponential:  f(t) = exp(-beta t)
    w_ij = mass_j ^ gamma · f(t_ij),   s_ij = w_ij / (w_ii + Σ_k w_ik)

The float64 forms (:func:`log_deterrence` from a time, :func:`log_deterrence_km` from a
distance) serve the best-core choice, the self term and the other flow models.

The gravity passes compute a row's terms in float32, in base 2 and relative to a
reference ``ref`` that bounds the row's log-weights from above, so that
``population ^ gamma`` cannot overflow nor ``exp(-beta t)`` underflow::

    x = fma(G, lp, fma(P, max(ld + log_per_km, log_floor), fma(K, d, -ref)))      term = 2^x

with ``lp`` the neighbour's log population relative to the row's largest, ``ld`` its
float32 log km and ``d = exp(ld)``, and per scenario (:func:`mode_terms`)
``G = gamma · log2 e``, ``log_per_km = log(minutes per km)``, ``log_floor = log(min_time_min)``,
``P = -beta · log2 e`` and ``K = 0`` for power decay, ``P = 0`` and
``K = -beta · log2 e · minutes per km`` for exponential decay (the innermost FMA only
where some scenario is exponential). Every operation is an explicit float32 FMA or
``max``, and ``2^x`` is :func:`agglo.kernels.gravity.fastexp.exp2_32`: the same bits in scalar
and vector code, whichever loop shape computes the term.
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.gravity.fastexp import exp2_32, exp32, fma32
from agglo.kernels.jit import inlined, strict

DECAY_CODES = {"power": 0, "exponential": 1}
POWER = 0
EXPONENTIAL = 1
LOG2E = 1.4426950408889634  # float64: natural log-weights to base 2
LN2 = 0.6931471805599453


class ModeTerms(NamedTuple):
    """Per-scenario constants of one mode (length S each), derived once per pass."""

    decay: np.ndarray  # int8, DECAY_CODES
    beta: np.ndarray  # float64
    gamma: np.ndarray  # float64, the destination-mass exponent of this pass
    mass2: np.ndarray  # float32 G = gamma · log2 e
    power2: np.ndarray  # float32 P = -beta · log2 e (power), else 0
    expo2: np.ndarray  # float32 K = -beta · log2 e · min_per_km (exponential), else 0
    log_min_per_km32: np.ndarray  # float32 log_per_km
    log_min_time32: np.ndarray  # float32 log_floor
    min_per_km: np.ndarray  # float64 60 · circuity / speed_kmh
    log_min_per_km: np.ndarray  # float64
    log_min_time: np.ndarray  # float64 log min_time_min
    has_self: np.ndarray  # bool: self_time_min is set
    self_log_f: np.ndarray  # float64 log f(self_time_min) (0 where there is no self term)
    closed: np.ndarray  # bool: borders closed
    opened: np.ndarray  # bool: not closed
    same_reach_as_previous: np.ndarray  # bool: circuity, speed and cap equal those of scenario s - 1
    any_exponential: bool


@strict
def log_deterrence(t, decay, beta, min_time_min):
    """log f(t) in float64 from a travel time in minutes."""
    if decay == POWER:
        return -beta * np.log(max(t, min_time_min))
    return -beta * t


@inlined
def log_deterrence_km(log_km, km, decay, beta, min_per_km, log_min_per_km, log_min_time):
    """log f(t) in float64 from a distance (its log for power decay, km for exponential):
    -beta · max(log km + log min_per_km, log min_time_min), or -beta · min_per_km · km.
    Both are computed and one selected: in a loop over scenarios that is a select, not a
    branch, and the loop vectorises."""
    power = -beta * max(log_km + log_min_per_km, log_min_time)
    exponential = -beta * (min_per_km * km)
    return power if decay == POWER else exponential


@strict
def mode_terms(mode, gamma, closed):
    """:class:`ModeTerms` of a :class:`agglo.kernels.records.ModeParams` with ``gamma`` as
    the mass exponent (the mode's gamma, or alpha for the attraction model's sums)."""
    n = mode.decay.shape[0]
    mass2 = np.empty(n, dtype=np.float32)
    power2 = np.empty(n, dtype=np.float32)
    expo2 = np.empty(n, dtype=np.float32)
    log_per_km = np.empty(n, dtype=np.float32)
    log_floor = np.empty(n, dtype=np.float32)
    min_per_km = np.empty(n, dtype=np.float64)
    log_min_per_km = np.empty(n, dtype=np.float64)
    log_min_time = np.empty(n, dtype=np.float64)
    has_self = ~np.isnan(mode.self_time_min)
    self_log_f = np.zeros(n, dtype=np.float64)
    same = np.zeros(n, dtype=np.bool_)
    any_exponential = False
    for s in range(n):
        decay = mode.decay[s]
        beta = mode.beta[s]
        min_per_km[s] = 60 * mode.circuity[s] / mode.speed_kmh[s]
        log_min_per_km[s] = np.log(min_per_km[s])
        log_min_time[s] = np.log(mode.min_time_min[s])
        mass2[s] = np.float32(gamma[s] * LOG2E)
        power2[s] = np.float32(-beta * LOG2E) if decay == POWER else np.float32(0.0)
        expo2[s] = np.float32(-beta * LOG2E * min_per_km[s]) if decay == EXPONENTIAL else np.float32(0.0)
        log_per_km[s] = np.float32(log_min_per_km[s])
        log_floor[s] = np.float32(log_min_time[s])
        if has_self[s]:
            self_log_f[s] = log_deterrence(mode.self_time_min[s], decay, beta, mode.min_time_min[s])
        any_exponential = any_exponential or decay == EXPONENTIAL
        same[s] = (
            s > 0
            and mode.circuity[s] == mode.circuity[s - 1]
            and mode.speed_kmh[s] == mode.speed_kmh[s - 1]
            and mode.cap_min[s] == mode.cap_min[s - 1]
        )
    return ModeTerms(
        mode.decay,
        mode.beta,
        gamma,
        mass2,
        power2,
        expo2,
        log_per_km,
        log_floor,
        min_per_km,
        log_min_per_km,
        log_min_time,
        has_self,
        self_log_f,
        closed,
        ~closed,
        same,
        any_exponential,
    )


@inlined
def log2_minutes(log_km, log_per_km, log_floor):
    """log max(t, min_time_min) in float32 from a float32 log km: max(log km + log_per_km, log_floor)."""
    return max(log_km + log_per_km, log_floor)


@inlined
def exponent(a, b, power2, log_minutes, base):
    """x = fma(a, b, fma(P, log_minutes, base)): a pair's base-2 log-weight minus the reference
    (``a · b`` is G · lp in the origin pass, the origin term · 1 in the inflow pass)."""
    return fma32(a, b, fma32(power2, log_minutes, base))


@inlined
def exponential_base_km(expo2, km, nref):
    """fma(K, d, -ref): the exponential decay's part of :func:`exponent`'s base."""
    return fma32(expo2, km, nref)


@inlined
def exponential_base(expo2, log_km, nref):
    """:func:`exponential_base_km` with d = exp(ld) in float32."""
    return exponential_base_km(expo2, exp32(log_km), nref)


class PairRow(NamedTuple):
    """The pairs of one row as a pass reads them: float32 log km, the float32 mass term
    (lp_rel, or the gathered origin terms), the neighbour (an index into ``region``)."""

    log_dist: np.ndarray
    mass: np.ndarray
    neighbour: np.ndarray
    region: np.ndarray


@inlined
def _terms_power(row, n, a, p, log_per_km, log_floor, nref, out):
    mass, log_dist = row.mass, row.log_dist
    for q in range(n):
        out[q] = exp2_32(exponent(a, mass[q], p, log2_minutes(log_dist[q], log_per_km, log_floor), nref))


@inlined
def _terms_exponential(row, n, a, p, k, log_per_km, log_floor, nref, out):
    mass, log_dist = row.mass, row.log_dist
    for q in range(n):
        ld = log_dist[q]
        out[q] = exp2_32(
            exponent(a, mass[q], p, log2_minutes(ld, log_per_km, log_floor), exponential_base(k, ld, nref))
        )


@inlined
def pair_terms(row, n, home, terms, s, a, nref, out):
    """out[q] = 2^x_q for the first n pairs of ``row`` in scenario ``s`` (0 for a foreign
    pair under closed borders), ``a`` the multiplier of the mass term. Branches stay
    outside the loops, which LLVM vectorises."""
    p = terms.power2[s]
    log_per_km = terms.log_min_per_km32[s]
    log_floor = terms.log_min_time32[s]
    if terms.decay[s] == POWER:
        _terms_power(row, n, a, p, log_per_km, log_floor, nref, out)
    else:
        _terms_exponential(row, n, a, p, terms.expo2[s], log_per_km, log_floor, nref, out)
    if terms.closed[s]:
        zero = np.float32(0.0)
        region, neighbour = row.region, row.neighbour
        for q in range(n):
            out[q] = out[q] if region[neighbour[q]] == home else zero


@inlined
def exact_reference(row, n, home, terms, s, start):
    """The largest base-2 log-weight of the first n pairs of an origin row (and ``start``),
    computed as the terms are, in float32."""
    top = start
    zero = np.float32(0.0)
    a = terms.mass2[s]
    p = terms.power2[s]
    log_per_km = terms.log_min_per_km32[s]
    log_floor = terms.log_min_time32[s]
    closed, power, k = terms.closed[s], terms.decay[s] == POWER, terms.expo2[s]
    region, neighbour, mass, log_dist = row.region, row.neighbour, row.mass, row.log_dist
    for q in range(n):
        if closed and region[neighbour[q]] != home:
            continue
        ld = log_dist[q]
        base = zero if power else exponential_base(k, ld, zero)
        top = max(top, np.float64(exponent(a, mass[q], p, log2_minutes(ld, log_per_km, log_floor), base)))
    return top


@inlined
def nearest_bound(log_km, decay, power2, expo2, log_per_km, log_floor):
    """An upper bound of a row's base-2 log-weights when gamma >= 0 (``log_km``: its nearest
    pair): lp_rel <= 0 and f falls with t, so the nearest pair's deterrence bounds them all."""
    if decay == POWER:
        return np.float64(power2 * log2_minutes(log_km, log_per_km, log_floor))
    return np.float64(expo2 * exp32(log_km))
