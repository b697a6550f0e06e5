"""National calibration on observed flows, held out by states, one command from the
repository root:

    .venv/bin/python experiments/calibration/run.py        # about an hour on 2 cores

Every observed US county-to-county commuting flow (ACS 2009-2013, tests/data/us_commuting_flows)
between the counties of tests/data/us_cbsa (2020 internal points, ACS 2022 populations). The
engine's gravity (docs/model.md: production-constrained, power or exponential deterrence of the
commuting travel time at the default speed and circuity, with or without the self term) is
fitted with ``agglo.analysis.calibrate.fit_production`` on the origins of one half of the states
(alternately by name, as experiments/cbsa splits them) and scored on the other half: CPC,
pseudo-R², and the share of counties whose largest flow to another county goes where the
model's does. The engine's defaults are scored beside. Then OMB's rule (25 % of a county's
workers commute to the central counties of a metropolitan area, or 25 % of its jobs are held by
their residents) applied to the model's flows with the parameters of the other half, against
OMB's 2023 metropolitan outlying counties, beside the same rule on the observed flows (the
ceiling), with the threshold on model shares chosen on the other half's observed flows and with
jobs as the destination mass, and the doubly-constrained model (workers and jobs kept,
agglo.analysis.doubly), and the free deterrence (a value per bin of travel time, measured rather
than assumed, between the counties' internal points and between their places); which threshold
on model shares stands for 15 % and 25 % of observed commuters; and the fitted values against the defaults at the place level (experiments/cbsa's
towns), the evidence behind docs/model.md's defaults. Tables go into this folder's README.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agglo.analysis import calibrate, doubly  # noqa: E402
from agglo.engine.config.schema import AggloConfig  # noqa: E402
from experiments.cbsa.places import delineation  # noqa: E402
from experiments.common import precision_recall_f1, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def load() -> tuple[pd.DataFrame, np.ndarray, dict]:
    counties = pd.read_csv(ROOT / "tests/data/us_cbsa/counties_2020_dist.csv", dtype={"GEOID": str})
    counties = counties[counties["Population"] > 0].reset_index(drop=True)
    flows = pd.read_csv(
        ROOT / "tests/data/us_commuting_flows/acs_2009_2013_county_flows.csv",
        dtype={"home_fips": str, "work_fips": str},
    )
    at = {g: k for k, g in enumerate(counties["GEOID"])}
    known = flows["home_fips"].isin(at) & flows["work_fips"].isin(at)
    info = {"workers": int(flows["workers"].sum()), "dropped": int(flows.loc[~known, "workers"].sum())}
    flows = flows[known]
    n = len(counties)
    dense = np.zeros((n, n))
    np.add.at(dense, (flows["home_fips"].map(at).to_numpy(), flows["work_fips"].map(at).to_numpy()), flows["workers"])
    return counties, dense, info


def minutes(counties: pd.DataFrame) -> np.ndarray:
    """docs/model.md's commuting travel time between the counties' internal points, defaults."""
    mode = AggloConfig().commute
    lat, lon = counties["Latitude"].to_numpy(), counties["Longitude"].to_numpy()
    t = doubly.minutes_between(
        lat[:, None], lon[:, None], lat[None, :], lon[None, :], mode.circuity, mode.speed_kmh, 0.0
    )
    np.fill_diagonal(t, 1.0)  # the diagonal is the self term's, set by the fit
    return np.maximum(t, mode.min_time_min)


def halves(states: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(states.unique())
    a = states.isin(set(names[0::2])).to_numpy()
    return a, ~a


def main() -> int:
    started = time.perf_counter()
    counties, flows, info = load()
    t = minutes(counties)
    mass = counties["Population"].to_numpy(dtype=float)
    a, b = halves(counties["State"])
    defaults = AggloConfig().commute
    lines = [
        f"{len(counties)} counties; {info['workers']:,} workers in the flows, {info['dropped']:,} of them between "
        "counties the 2020 gazetteer does not list (Connecticut's old counties and a few renamed ones), left out. "
        f"Halves: {a.sum()} and {b.sum()} origin counties (states alternately by name).",
        "",
        "| deterrence | self term | fitted on | gamma | beta | self time (min) | CPC fit / held out | "
        "pseudo-R² fit / held out | dominant destination right, fit / held out | held-out CPC county by county: "
        "median, 10th percentile |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fits = {}
    for decay in ("power", "exponential"):
        for self_term in (False, True):
            for name, fit_rows, test_rows in (("A", a, b), ("B", b, a)):
                rows = np.flatnonzero(fit_rows)
                prof = calibrate.fit_production(flows[rows], t[rows], mass, decay, self_term, origins=rows)
                fits[(decay, self_term, name)] = prof
                got = {}
                for which, mask in (("fit", fit_rows), ("held", test_rows)):
                    rows = np.flatnonzero(mask)
                    p = prof.probabilities(t[rows], mass, origins=rows)
                    got[which] = calibrate.scores(flows[rows], p, self_term, origins=rows)
                self_text = f"{prof.self_cost:.2f}" if self_term else "—"
                lines.append(
                    f"| {decay} | {'yes' if self_term else 'no'} | {name} | {prof.gamma:.3f} | {prof.beta:.4g} | "
                    f"{self_text} | {got['fit']['cpc']:.3f} / {got['held']['cpc']:.3f} | "
                    f"{got['fit']['pseudo_r2']:.3f} / {got['held']['pseudo_r2']:.3f} | "
                    f"{got['fit']['dominant_right']:.3f} / {got['held']['dominant_right']:.3f} | "
                    f"{got['held']['cpc_median']:.3f}, {got['held']['cpc_p10']:.3f} |"
                )
                print(lines[-1], flush=True)
    default_fit = calibrate.ProfileFit(defaults.decay, defaults.gamma, defaults.beta, defaults.self_time_min, 0.0, 0)
    base = calibrate.scores(flows, default_fit.probabilities(t, mass), True)
    lines += [
        "",
        f"The engine's defaults (power, gamma {defaults.gamma:g}, beta {defaults.beta:g}, self term "
        f"{defaults.self_time_min:g} min), all counties: CPC {base['cpc']:.3f}, pseudo-R² {base['pseudo_r2']:.3f}, "
        f"dominant destination right {base['dominant_right']:.3f}.",
    ]
    lines += ["", *omb_rule(counties, flows, t, mass, (a, b), fits)]
    halves_states = (set(counties.loc[a, "State"]), set(counties.loc[b, "State"]))
    lines += ["", *place_level(fits, halves_states, counties, flows)]
    lines += ["", f"Run time {time.perf_counter() - started:.0f} s."]
    print(write_results(HERE / "README.md", lines))
    return 0


THRESHOLD = 0.25  # OMB 2020 standards: the commuting share that ties an outlying county


def delineate(flows: np.ndarray, area_of_central: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """OMB's rule on a flow table: per county not central, the metropolitan area whose central
    counties take at least 25 % of its employed residents, or whose residents hold at least 25 %
    of its jobs; of several, the one with the largest interchange (flows both ways). ``flows``
    (N, N) residence by workplace, the diagonal within the county; ``area_of_central`` (N,) the
    area code index of a central county, -1 for others; ``threshold`` OMB's 25 % unless given.
    Returns each county's area index or -1."""
    return assign(interchange_shares(flows, area_of_central), area_of_central, threshold)


def interchange_shares(flows: np.ndarray, area_of_central: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per county and area: flows to and from its central counties, and their shares of the
    county's employed residents and of its jobs."""
    n_areas = int(area_of_central.max()) + 1
    member = np.zeros((flows.shape[0], n_areas))
    central = area_of_central >= 0
    member[np.flatnonzero(central), area_of_central[central]] = 1.0
    to_c, from_c = flows @ member, flows.T @ member
    with np.errstate(invalid="ignore", divide="ignore"):
        out_share = to_c / flows.sum(axis=1, keepdims=True)
        in_share = from_c / flows.sum(axis=0)[:, None]
    return to_c + from_c, out_share, in_share


def assign(shares: tuple[np.ndarray, ...], area_of_central: np.ndarray, threshold: float) -> np.ndarray:
    interchange, out_share, in_share = shares
    qualifies = (out_share >= threshold) | (in_share >= threshold)
    interchange = np.where(qualifies, interchange, -1.0)
    best = np.argmax(interchange, axis=1)
    got = np.where(interchange[np.arange(len(best)), best] >= 0, best, -1)
    return np.where(area_of_central >= 0, -1, got)


def agreement(pred: np.ndarray, true: np.ndarray) -> dict:
    """Precision, recall and F1 of the counties given an area (>= 0), right when the same area."""
    return precision_recall_f1(
        int(((pred >= 0) & (pred == true)).sum()), int((pred >= 0).sum()), int((true >= 0).sum())
    )


TAUS = np.round(np.arange(0.02, 0.401, 0.005), 3)


def threshold_from_flows(
    model: np.ndarray, observed: np.ndarray, area_of_central: np.ndarray, rows, observed_threshold: float = THRESHOLD
) -> float:
    """The threshold on model shares under which OMB's rule on the model's flows agrees best (F1
    of the same area) with the 25 % rule on the *observed* flows, over the counties ``rows`` of the
    half the parameters were fitted on: no OMB outlying county is seen, only flows and the
    central counties (the engine's cores)."""
    want = delineate(observed, area_of_central, observed_threshold)[rows]
    shares = interchange_shares(model, area_of_central)
    best, best_f1 = TAUS[0], -1.0
    for tau in TAUS:
        score = agreement(assign(shares, area_of_central, tau)[rows], want)
        if score["f1"] > best_f1:
            best, best_f1 = tau, score["f1"]
    return float(best)


def omb_areas(counties: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """OMB 2023's metropolitan areas over the counties: each central county's area index (-1
    for others), each outlying county's (-1 for others), and the number of areas."""
    areas = delineation(ROOT)
    metro = areas[areas["metro"]]
    codes = {c: k for k, c in enumerate(sorted(metro["cbsa"].unique()))}
    geoid = counties["GEOID"].to_numpy()
    cbsa_of = dict(zip(metro["GEOID"], metro["cbsa"]))
    central_set = set(metro.loc[metro["central"], "GEOID"])
    area_of_central = np.array([codes[cbsa_of[g]] if g in central_set else -1 for g in geoid])
    truth = np.array([codes[cbsa_of[g]] if g in cbsa_of and g not in central_set else -1 for g in geoid])
    return area_of_central, truth, len(codes)


def omb_rule(counties, observed, t, mass, split, fits) -> list[str]:
    area_of_central, truth, n_areas = omb_areas(counties)

    def row(label, predicted, half):
        """The table row of a delineation scored on one half's counties."""
        got = agreement(predicted[rows_of[half]], truth[rows_of[half]])
        return f"| {label} | {half} | {got['precision']:.3f} | {got['recall']:.3f} | {got['f1']:.3f} |"

    pop = mass[:, None]
    rows_of = {"A": split[0], "B": split[1]}
    out = [
        "OMB's rule (25 % of a county's workers to the central counties of a metropolitan area, or 25 % of "
        f"its jobs held by their residents; {n_areas} metropolitan areas, {(truth >= 0).sum()} outlying "
        "counties in OMB 2023), scored on each half's counties; model flows = population x p_ij with the "
        "parameters fitted on the other half:",
        "",
        "| flows | scored on | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for half in ("A", "B"):
        out.append(row("observed (the ceiling)", delineate(observed, area_of_central), half))
    for label, key in (("power, self term", ("power", True)), ("power, no self term", ("power", False))):
        for half, other in (("A", "B"), ("B", "A")):
            prof = fits[(key[0], key[1], other)]
            model = pop * prof.probabilities(t, mass)
            out.append(row(f"model, {label}, fitted on {other}", delineate(model, area_of_central), half))
    for half, other in (("A", "B"), ("B", "A")):
        prof = fits[("power", True, other)]
        model = pop * prof.probabilities(t, mass)
        tau = threshold_from_flows(model, observed, area_of_central, rows_of[other])
        label = f"model, power, self term, fitted on {other}, threshold {tau:.3f} from {other}'s observed flows"
        out.append(row(label, delineate(model, area_of_central, tau), half))
    jobs, workers = np.maximum(observed.sum(axis=0), 1.0), observed.sum(axis=1)
    for half, other in (("A", "B"), ("B", "A")):
        rows = np.flatnonzero(rows_of[other])
        prof = calibrate.fit_production(observed[rows], t[rows], jobs, "power", True, origins=rows)
        model = workers[:, None] * prof.probabilities(t, jobs)
        tau = threshold_from_flows(model, observed, area_of_central, rows_of[other])
        label = (
            f"model, power, self term, jobs as the destination mass (gamma {prof.gamma:.3f}, beta {prof.beta:.3f}, "
            f"self {prof.self_cost:.1f} min), fitted on {other}, threshold {tau:.3f} from {other}'s observed flows"
        )
        out.append(row(label, delineate(model, area_of_central, tau), half))
    # the balance takes the exact totals (the floor of 1 above would make the margins unequal)
    out += doubly_rows(observed, t, observed.sum(axis=0), workers, rows_of, area_of_central, row, fits)
    out += place_weighted_rows(counties, observed, rows_of, area_of_central, row, fits)
    free, curve = free_rows(counties, observed, t, rows_of, area_of_central, row, truth, fits)
    out += free
    defaults = AggloConfig().commute
    model = pop * calibrate.ProfileFit(
        "power", defaults.gamma, defaults.beta, defaults.self_time_min, 0, 0
    ).probabilities(t, mass)
    for half in ("A", "B"):
        out.append(row("model, the engine's defaults", delineate(model, area_of_central), half))
    out += ["", *equivalent_thresholds(observed, t, mass, area_of_central, rows_of, fits, model)]
    return out + ["", *curve]


def doubly_rows(observed, t, jobs, workers, rows_of, area_of_central, row, fits) -> list[str]:
    """The doubly-constrained model (every county's workers and jobs kept, the margins a census
    publishes), power deterrence with the self term fitted on one half's observed rows, scored
    on the other half: OMB's rule at 25 % and at the threshold from the fitted half's observed
    flows, and the held-out CPC. Balanced to 1e-6 of every margin (Furness converges slowly on
    the national table: 0.4 % after 100 rounds from a cold start)."""
    out = []
    for half, other in (("A", "B"), ("B", "A")):
        rows = np.flatnonzero(rows_of[other])
        fit = doubly.fit_doubly(observed[rows], t, workers, jobs, "power", True, rows, xatol=1e-3, tol=1e-6)
        fits[("doubly", other)] = fit
        model = fit.flows(t, workers, jobs)
        held = rows_of[half]
        common = calibrate.cpc(observed[held], model[held])
        tau = threshold_from_flows(model, observed, area_of_central, rows_of[other])
        label = (
            f"model, doubly-constrained (workers and jobs kept), power, self term (beta {fit.beta:.3f}, self "
            f"{fit.self_cost:.1f} min; held-out CPC {common:.3f}), fitted on {other}"
        )
        for text, threshold in (("", THRESHOLD), (f", threshold {tau:.3f} from {other}'s observed flows", tau)):
            out.append(row(f"{label}{text}", delineate(model, area_of_central, threshold), half))
            print(out[-1], flush=True)
    return out


NEAR_KM = 150.0  # unit pairs nearer than this take every pair of their places (PlaceDeterrence)


# the free deterrence's bins of travel time (minutes); a trip within a county is a value of its own
FREE_EDGES = (0, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 105, 120, 150, 180, 240, 300, 400, 600, np.inf)


def free_rows(counties, observed, t, rows_of, area_of_central, row, truth, fits) -> tuple[list[str], list[str]]:
    """The doubly-constrained model with a free deterrence (``doubly.fit_free``: a value per
    bin of travel time, the shape measured rather than assumed), between the counties'
    internal points and between their places (a town's curve), fitted on one half's rows and
    scored on the other as doubly_rows does; then the same flows under the threshold that is
    best on the scored half itself, which no threshold rule can beat. Returns the table rows
    and a table of the fitted curves beside the power laws of doubly_rows' and
    place_weighted_rows' fits."""
    jobs, workers = observed.sum(axis=0), observed.sum(axis=1)
    out, log_f = [], {}
    for where, weights in (
        ("internal points", doubly.BinWeights.points(t, FREE_EDGES)),
        ("places", place_deterrence(counties).bin_weights(FREE_EDGES)),
    ):
        for half, other in (("A", "B"), ("B", "A")):
            rows = np.flatnonzero(rows_of[other])
            fit = doubly.fit_free(observed[rows], weights, workers, jobs, origins=rows, tol=1e-6)
            log_f[(where, other)] = fit.log_f
            model = fit.flows(weights, workers, jobs)
            common = calibrate.cpc(observed[rows_of[half]], model[rows_of[half]])
            tau = threshold_from_flows(model, observed, area_of_central, rows_of[other])
            label = (
                f"model, doubly-constrained between the counties' {where}, free deterrence ({len(FREE_EDGES) - 1} "
                f"bins of travel time and the self term, {fit.rounds} rounds; held-out CPC {common:.3f}), fitted on "
                f"{other}"
            )
            shares, scored = interchange_shares(model, area_of_central), np.flatnonzero(rows_of[half])
            best = max(TAUS, key=lambda x: agreement(assign(shares, area_of_central, x)[scored], truth[scored])["f1"])
            for text, threshold in (
                ("", THRESHOLD),
                (f", threshold {tau:.3f} from {other}'s observed flows", tau),
                (f", threshold {best:.3f} chosen on {half}'s OMB delineation itself (no threshold does better)", best),
            ):
                out.append(row(f"{label}{text}", assign(shares, area_of_central, threshold), half))
                print(out[-1], flush=True)
    return out, free_curve(log_f, fits)


def free_curve(log_f, fits) -> list[str]:
    """The free deterrence per bin (log f against a trip within a place) beside the power laws
    fitted on the same rows (``-beta log(t / self time)`` at the bin's middle)."""
    columns = [(where, h) for where in ("internal points", "places") for h in ("A", "B")]
    power = {("internal points", h): fits[("doubly", h)] for h in ("A", "B")}
    power |= {("places", h): fits[("place-weighted", h)] for h in ("A", "B")}
    out = [
        "The free deterrence: log f of a trip between counties (between their internal points) or between towns "
        "(between their places) against a trip within one, fitted on each half's rows with every county's margins "
        "kept; in brackets the power law fitted on the same rows (beta, self time) at the bin's middle:",
        "",
        "| minutes | " + " | ".join(f"between {w}, fitted on {h}" for w, h in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    middle = np.maximum(doubly.bin_middles(FREE_EDGES), 1.0)
    against = {c: power[c].log_f_against_self(middle) for c in columns}
    for k in range(len(FREE_EDGES) - 1):
        cells = [f"{log_f[c][k]:.2f} ({against[c][k]:.2f})" for c in columns]
        out.append(f"| {FREE_EDGES[k]:g}-{FREE_EDGES[k + 1]:g} | " + " | ".join(cells) + " |")
    return out


def place_deterrence(counties: pd.DataFrame, near_km: float = NEAR_KM) -> doubly.PlaceDeterrence:
    """The counties' deterrence from their places (experiments/cbsa's towns: every GeoNames
    place of the US with its county, and each county's people outside them at its internal
    point), docs/model.md's commuting time at the default speed and circuity."""
    from experiments.cbsa import places as P

    table = P.build_places(counties, delineation(ROOT))
    at = {g: k for k, g in enumerate(counties["GEOID"])}
    table = table[table["county"].isin(at)]
    mode = AggloConfig().commute
    return doubly.PlaceDeterrence(
        {"lat": counties["Latitude"].to_numpy(), "lon": counties["Longitude"].to_numpy()},
        {"unit": table["county"].map(at).to_numpy(), "lat": table["lat"].to_numpy(),
         "lon": table["lon"].to_numpy(), "people": table["population"].to_numpy()},
        "power", mode.circuity, mode.speed_kmh, mode.min_time_min, near_km,
    )  # fmt: skip


def place_weighted_rows(counties, observed, rows_of, area_of_central, row, fits) -> list[str]:
    """The doubly-constrained model between the counties' places (PlaceDeterrence): beta and the
    time of a trip within a place fitted on one half's rows, so a town's values; scored on the
    other half as doubly_rows does, and once more with unit pairs up to twice as far taking
    every pair of their places (what the 150 km cut changes). The fits go into ``fits`` for
    place_level."""
    jobs, workers = observed.sum(axis=0), observed.sum(axis=1)
    det = place_deterrence(counties)
    out = []
    for half, other in (("A", "B"), ("B", "A")):
        rows = np.flatnonzero(rows_of[other])
        fit = doubly.fit_doubly(
            observed[rows],
            None,
            workers,
            jobs,
            "power",
            True,
            rows,
            xatol=1e-3,
            tol=1e-6,
            deterrence_of=det,
            fatol=1e-8,
        )
        fits[("place-weighted", other)] = fit
        model = doubly.balanced_flows(det(fit.beta, fit.self_cost), workers, jobs, tol=1e-6)[0]
        common = calibrate.cpc(observed[rows_of[half]], model[rows_of[half]])
        tau = threshold_from_flows(model, observed, area_of_central, rows_of[other])
        label = (
            f"model, doubly-constrained between the counties' places, power, self term (beta {fit.beta:.3f}, a trip "
            f"within a place {fit.self_cost:.1f} min; held-out CPC {common:.3f}), fitted on {other}"
        )
        for text, threshold in (("", THRESHOLD), (f", threshold {tau:.3f} from {other}'s observed flows", tau)):
            out.append(row(f"{label}{text}", delineate(model, area_of_central, threshold), half))
            print(out[-1], flush=True)
        far = doubly.balanced_flows(
            place_deterrence(counties, 2 * NEAR_KM)(fit.beta, fit.self_cost), workers, jobs, tol=1e-6
        )[0]
        out.append(
            row(
                f"the same, places of county pairs up to {2 * NEAR_KM:g} km apart",
                delineate(far, area_of_central, tau),
                half,
            )
        )
    return out


def equivalent_thresholds(observed, t, mass, area_of_central, rows_of, fits, default_model) -> list[str]:
    """Which threshold on model shares stands for a threshold on observed shares: the one under
    which the rule on the model's flows agrees best with the rule on the observed flows, over
    each half's counties (flows only; OMB's delineation unseen)."""
    out = [
        "The threshold on model shares that reproduces the rule on the observed flows best (each half's counties):",
        "",
        "| model | half | observed share 15 % | observed share 25 % (OMB) |",
        "| --- | --- | --- | --- |",
    ]
    for half in ("A", "B"):
        fitted = mass[:, None] * fits[("power", True, half)].probabilities(t, mass)
        for label, model in (("the engine's defaults", default_model), (f"power, self term, fitted on {half}", fitted)):
            taus = [threshold_from_flows(model, observed, area_of_central, rows_of[half], x) for x in (0.15, 0.25)]
            out.append(f"| {label} | {half} | {taus[0]:.3f} | {taus[1]:.3f} |")
    return out


PLACE_CAPS, PLACE_THRESHOLDS = (60, 90), (0.02, 0.15)


def place_level(fits, halves_states, counties, flows) -> list[str]:
    """The fitted values where the engine runs, at the place level: experiments/cbsa's places
    (every GeoNames place of the US, cores in OMB's central counties, read back by county), with
    the engine's defaults and with the values fitted on each half, scored on the other half
    (metropolitan outlying counties; weight population, tau 0.15 and 0.25); each once with the
    population as the destination mass and once with jobs (a town table's ``mass`` column: a
    place's population times its county's jobs per employed resident, from the flow table's
    workplace and residence totals)."""
    from experiments.cbsa import places as P

    areas = delineation(ROOT)
    table = P.build_places(pd.read_csv(ROOT / "tests/data/us_cbsa/counties_2020_dist.csv", dtype={"GEOID": str}), areas)
    d = AggloConfig().commute
    sets = {"defaults": (d.gamma, d.beta, d.self_time_min)}
    for name in ("A", "B"):
        f = fits[("power", True, name)]
        sets[f"fitted on {name}"] = (round(f.gamma, 3), round(f.beta, 3), round(f.self_cost, 2))
        f = fits[("place-weighted", name)]
        sets[f"fitted between places on {name}"] = (d.gamma, round(f.beta, 3), round(f.self_cost, 2))
    rows = [
        {
            "commute.gamma": g,
            "commute.beta": be,
            "commute.self_time_min": st,
            "commute.cap_min": cap,
            "commute.threshold": thr,
        }  # fmt: skip
        for g, be, st in sets.values()
        for cap in PLACE_CAPS
        for thr in PLACE_THRESHOLDS
    ]
    workers = flows.sum(axis=1)
    ratio = dict(zip(counties["GEOID"], np.where(workers > 0, flows.sum(axis=0) / np.maximum(workers, 1.0), 1.0)))
    jobs = table["population"].to_numpy() * table["county"].map(ratio).fillna(1.0).to_numpy()
    cubes = {
        "population": _place_cube(table, rows, "population"),
        "jobs": _place_cube(table.assign(mass=jobs), rows, "jobs"),
    }
    out = [
        "The fitted values and jobs as the destination mass at the place level (experiments/cbsa's towns: every "
        "GeoNames place of the US, cores in OMB's central counties, read back by county with weight population), "
        "F1 of metropolitan outlying counties on the held-out half:",
        "",
        "| parameters (gamma, beta, self time) | destination mass | scored on | cap (min) | threshold | F1, tau 0.15 | "
        "F1, tau 0.25 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for half, other in (("A", "B"), ("B", "A")):
        for mass, ds in cubes.items():
            sc = P.score_places(ds, table, areas, halves_states[0 if half == "A" else 1])
            sc = sc[sc["weight"] == "population"]
            for label in ("defaults", f"fitted on {other}", f"fitted between places on {other}"):
                g, be, st = sets[label]
                for k, row in enumerate(rows):
                    if (row["commute.gamma"], row["commute.beta"], row["commute.self_time_min"]) != (g, be, st):
                        continue
                    f = {tau: sc[(sc["scenario"] == k) & (sc["tau"] == tau)]["f1"].iloc[0] for tau in (0.15, 0.25)}
                    out.append(
                        f"| {label} ({g:g}, {be:g}, {st:g}) | {mass} | {half} | {row['commute.cap_min']} | "
                        f"{row['commute.threshold']:g} | {f[0.15]:.3f} | {f[0.25]:.3f} |"
                    )
    return out


def _place_cube(table: pd.DataFrame, rows: list[dict], name: str):
    import agglo

    folder = ROOT / "results"
    folder.mkdir(exist_ok=True)
    scenarios, towns = folder / "calibration_place_scenarios.csv", folder / f"calibration_places_{name}.csv"
    pd.DataFrame(rows).to_csv(scenarios, index=False)
    table.drop(columns="county").to_csv(towns, index=False)
    return agglo.run(
        {"data.path": str(towns), "sweep.grid": {}, "sweep.table": str(scenarios),
         "store.path": str(folder / f"calibration_places_{name}.zarr"), "store.mode": "overwrite"},
        experiment="cbsa_places",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
