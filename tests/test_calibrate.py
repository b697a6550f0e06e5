"""Calibration against PySAL spint's own expected coefficients (Austria) and on New York's
2011 county-to-county commuting; override files into 'agglo run'; bad flow files."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agglo.analysis import calibrate, doubly, observed
from agglo.engine.data.towns import load_table

DATA = Path(__file__).parent / "data"
AUSTRIA = DATA / "austria_gravity"
NY = DATA / "ny_commuting"
NY_FLOWS = str(NY / "NY_commuting_flows_2011.csv")
NY_TOWNS = str(NY / "ny_counties.csv")


@pytest.mark.parametrize(
    "test, model",
    [
        ("test_Gravity", "gravity"),
        ("test_Production", "production"),
        ("test_Attraction", "attraction"),
        ("test_Doubly", "doubly"),
    ],
)
def test_austria_fits_reproduce_spint(test, model):
    d = pd.read_csv(AUSTRIA / "austria_migration_spint_fixture.csv")
    want = json.loads((AUSTRIA / "expected_params_spint.json").read_text())[test]["params"]
    fit = calibrate.fit(model, "exponential", d.flow, d.origin, d.destination, d.dij_km, d.o_var, d.d_var)
    np.testing.assert_allclose(fit.params, want, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def ny_pairs():
    towns = load_table(NY_TOWNS)
    flows = observed.read_flows(NY_FLOWS, towns)
    return observed.pairs_for_fit(flows, towns, "km", 60.0, 1.3)


@pytest.mark.parametrize("model", ["production", "attraction", "doubly", "gravity"])
def test_fits_keep_their_constraints_and_report_honest_statistics(ny_pairs, model):
    o, d, y, cost, om, dm = ny_pairs
    fit = calibrate.fit(model, "power", y, o, d, cost, om, dm)
    for labels, constrained in ((o, model in ("production", "doubly")), (d, model in ("attraction", "doubly"))):
        if constrained:  # a Poisson GLM with indicators reproduces those margins exactly
            for lev in np.unique(labels):
                m = labels == lev
                assert fit.mu[m].sum() == pytest.approx(y[m].sum(), rel=1e-8)
    assert fit.mu.sum() == pytest.approx(y.sum(), rel=1e-8)  # the constant alone does that
    st = fit.stats
    assert st["cpc"] == pytest.approx(2 * np.minimum(y, fit.mu).sum() / (y.sum() + fit.mu.sum()))
    assert st["srmse"] == pytest.approx(np.sqrt(np.mean((y - fit.mu) ** 2)) / y.mean())
    assert 0 < st["cpc"] <= 1 and 0 < st["pseudo_r2"] < 1 and fit.deviance < fit.null_deviance


def test_new_york_production_power_fit(ny_pairs, capsys):
    o, d, y, cost, om, dm = ny_pairs
    fit = calibrate.fit("production", "power", y, o, d, cost, om, dm)
    values = calibrate.engine_values(fit)
    places = np.unique(o)
    same = sum(d[o == p][np.argmax(y[o == p])] == d[o == p][np.argmax(fit.mu[o == p])] for p in places)
    with capsys.disabled():
        print(
            f"\nNY 2011 inter-county commuting, production-constrained power law: gamma {values['gamma']:.4f}, "
            f"beta {values['beta']:.4f}, CPC {fit.stats['cpc']:.4f}, pseudo-R2 {fit.stats['pseudo_r2']:.4f}, "
            f"dominant destination right for {same} of {places.size} counties"
        )
    assert len(places) == 62 and y.size == 62 * 61
    assert 0 < values["gamma"] < 2 and values["beta"] > 0  # flows grow with size, fall with distance


def test_calibrate_writes_an_override_file_that_run_accepts(tmp_path, run_cli):
    out = tmp_path / "ny.yaml"
    code, text, err = run_cli(
        "calibrate",
        "--flows",
        NY_FLOWS,
        "--towns",
        NY_TOWNS,
        "--model",
        "production",
        "--decay",
        "power",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "log_destination_mass" in text and "CPC" in text
    o, d, y, cost, om, dm = load_pairs_minutes()
    fitted = calibrate.fit("production", "power", y, o, d, cost, om, dm)
    code, text, err = run_cli("config", "--params", str(out))
    assert code == 0, err
    commute = text.split("commute:")[1].split("freight:")[0]
    assert f"gamma: {calibrate.engine_values(fitted)['gamma']!r}" in commute
    code, text, err = run_cli("config", "--params", str(out), "commute.gamma=0.5")
    assert "gamma: 0.5" in text.split("commute:")[1].split("freight:")[0]  # the command line wins
    code, _, err = run_cli("calibrate", "--flows", NY_FLOWS, "--towns", NY_TOWNS, "--out", str(out))
    assert code == 2 and "exists" in err  # never overwritten


def load_pairs_minutes():
    towns = load_table(NY_TOWNS)
    return observed.pairs_for_fit(observed.read_flows(NY_FLOWS, towns), towns, "minutes", 60.0, 1.3)


def _write(tmp_path, text):
    path = tmp_path / "flows.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("origin,destination\n36001,36003\n", "missing column 'flow'"),
        ("origin,destination,flow\n36001,36003,-4\n", "row 2: flow = '-4'"),
        ("origin,destination,flow\n36001,36003,5\n36001,99999,5\n", "row 3: destination = '99999'"),
        ("origin,destination,flow\n36001,36003,5\n36003,36001,0\n", "origin '36003' has no flow"),
        ("origin,destination,flow\n36001,36003,abc\n", "flow = 'abc'"),
    ],
)
def test_bad_flow_files_are_one_line_exit_2(tmp_path, run_cli, content, message):
    code, _, err = run_cli("calibrate", "--flows", _write(tmp_path, content), "--towns", NY_TOWNS)
    assert code == 2 and err.startswith("agglo: error: ") and message in err and err.count("\n") == 1, err


def test_bad_params_file_names_the_file(tmp_path, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("commute:\n  betta: 2\n")
    code, _, err = run_cli("config", "--params", str(bad))
    assert code == 2 and "bad.yaml" in err and "betta" in err and err.count("\n") == 1, err
    code, _, err = run_cli("config", "--params", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml" in err


# scikit-mobility's published fit of this very data (README and Gravity docstring:
# Gravity(gravity_type='singly constrained').fit(fdf, relevance_column='population')):
# deterrence_func_args=[-1.9947152031914186], destination_exp=0.6471759552223144.
SKMOB_NY = {"beta": 1.9947152031914186, "gamma": 0.6471759552223144}


def _numpy_poisson(y: np.ndarray, x: np.ndarray, rounds: int = 100) -> np.ndarray:
    """An independent Poisson fit: Newton steps on the log-likelihood, solved by lstsq."""
    b = np.linalg.lstsq(x, np.log(y + 1.0), rcond=None)[0]
    for _ in range(rounds):
        mu = np.exp(x @ b)
        step = np.linalg.lstsq((x.T * mu) @ x, x.T @ (y - mu), rcond=None)[0]
        b = b + step
        if np.max(np.abs(step)) < 1e-13:
            break
    return b


def test_observed_pairs_fit_reproduces_scikit_mobility(run_cli):
    """Fit on the listed pairs only (scikit-mobility's convention): its published
    singly-constrained power-law coefficients, and an independent NumPy fit, agree."""
    code, out, err = run_cli(
        "calibrate", "--flows", NY_FLOWS, "--towns", NY_TOWNS, "--model", "production", "--cost", "km",
        "--pairs", "observed",
    )  # fmt: skip
    assert code == 0, err
    keys = dict(
        part.split(" = ") for part in out.strip().splitlines()[-1].removeprefix("docs/model.md keys: ").split(", ")
    )
    assert abs(float(keys["commute.beta"]) - SKMOB_NY["beta"]) < 1e-3
    assert abs(float(keys["commute.gamma"]) - SKMOB_NY["gamma"]) < 1e-3
    assert "1892 pairs with a flow of 1892 fitted" in out

    towns = load_table(NY_TOWNS)
    o, d, y, km, _, d_mass = observed.pairs_for_fit(
        observed.read_flows(NY_FLOWS, towns), towns, "km", 60.0, 1.3, "observed"
    )
    fit = calibrate.fit("production", "power", y, o, d, km, None, d_mass)
    values = calibrate.engine_values(fit)
    assert abs(values["beta"] - SKMOB_NY["beta"]) < 1e-4 and abs(values["gamma"] - SKMOB_NY["gamma"]) < 1e-4

    # The twin: read the files itself, its own haversine, one indicator per origin, no constant.
    flows = pd.read_csv(NY_FLOWS, dtype=str)
    flows = flows[flows.origin != flows.destination]
    table = pd.read_csv(NY_TOWNS, dtype={"town_id": str}).set_index("town_id")
    lat0, lon0 = np.radians(table.loc[flows.origin, ["lat", "lon"]].to_numpy(float)).T
    lat1, lon1 = np.radians(table.loc[flows.destination, ["lat", "lon"]].to_numpy(float)).T
    h = np.sin((lat1 - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat1) * np.sin((lon1 - lon0) / 2) ** 2
    dist = 2 * 6371.0 * np.arcsin(np.sqrt(h))
    origins = sorted(set(flows.origin))
    x = np.column_stack(
        [(flows.origin.to_numpy() == c).astype(float) for c in origins]
        + [np.log(table.loc[flows.destination, "population"].to_numpy(float)), np.log(dist)]
    )
    twin = _numpy_poisson(flows.flow.to_numpy(float), x)
    assert abs(twin[-2] - values["gamma"]) < 1e-8 and abs(-twin[-1] - values["beta"]) < 1e-8


def test_the_two_conventions_differ_on_new_york(run_cli):
    """Zeros for the unlisted pairs are information: the default fit is not the observed-pairs one."""
    towns = load_table(NY_TOWNS)
    flows = observed.read_flows(NY_FLOWS, towns)
    fits = {}
    for pairs in observed.PAIRS:
        o, d, y, km, _, d_mass = observed.pairs_for_fit(flows, towns, "km", 60.0, 1.3, pairs)
        fits[pairs] = (y.size, calibrate.engine_values(calibrate.fit("production", "power", y, o, d, km, None, d_mass)))
    assert fits["all"][0] == 62 * 61 and fits["observed"][0] == 1892
    assert abs(fits["all"][1]["beta"] - fits["observed"][1]["beta"]) > 0.01


def _dense(o, d, values, fill=0.0):
    places = np.unique(np.concatenate([o, d]))
    at = {p: k for k, p in enumerate(places)}
    out = np.full((places.size, places.size), fill)
    out[[at[x] for x in o], [at[x] for x in d]] = values
    return places, out


@pytest.mark.parametrize("decay", ["power", "exponential"])
def test_the_profiled_production_fit_equals_the_regression(ny_pairs, decay):
    """The national-scale fit (origin effects profiled out) finds the Poisson regression's
    gamma and beta, and its scores are the regression's on the same pairs."""
    o, d, y, cost, om, dm = ny_pairs
    fit = calibrate.fit("production", decay, y, o, d, cost, om, dm)
    places, flows = _dense(o, d, y)
    _, c = _dense(o, d, cost, fill=1.0)
    mass = np.array([dm[d == p][0] for p in places])
    prof = calibrate.fit_production(flows, c, mass, decay)
    values = calibrate.engine_values(fit)
    assert prof.gamma == pytest.approx(values["gamma"], rel=1e-6)
    assert prof.beta == pytest.approx(values["beta"], rel=1e-6)
    got = calibrate.scores(flows, prof.probabilities(c, mass), self_term=False)
    assert got["cpc"] == pytest.approx(fit.stats["cpc"], rel=1e-6)


def test_the_profiled_fit_with_a_self_term_recovers_known_parameters():
    """Flows drawn from the model itself (expected values, no noise), the self term included:
    the fit gives back gamma, beta and the self cost it was made with."""
    rng = np.random.default_rng(3)
    n = 40
    xy = rng.uniform(0, 200, (n, 2))
    c = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) + np.eye(n)
    mass = rng.uniform(1e3, 1e6, n)
    truth = calibrate.ProfileFit("power", 0.8, 1.7, 6.0, 0.0, 0)
    flows = 1e5 * truth.probabilities(c, mass)
    prof = calibrate.fit_production(flows, c, mass, "power", self_term=True)
    assert (prof.gamma, prof.beta, prof.self_cost) == pytest.approx((0.8, 1.7, 6.0), rel=1e-5)
    half = np.arange(0, n, 2)  # the origins of one half, to every place (the held-out fits)
    prof = calibrate.fit_production(flows[half], c[half], mass, "power", self_term=True, origins=half)
    assert (prof.gamma, prof.beta, prof.self_cost) == pytest.approx((0.8, 1.7, 6.0), rel=1e-5)
    scored = calibrate.scores(flows[half], prof.probabilities(c[half], mass, origins=half), True, origins=half)
    assert scored["cpc"] == pytest.approx(1.0) and scored["dominant_right"] == 1.0


@pytest.mark.parametrize("decay", ["power", "exponential"])
def test_the_balanced_doubly_fit_equals_the_regression(ny_pairs, decay):
    """The national-scale doubly-constrained fit (Furness balance, deterrence searched) finds
    the Poisson regression's beta with its 2N indicators, and the same flows."""
    o, d, y, cost, om, dm = ny_pairs
    fit = calibrate.fit("doubly", decay, y, o, d, cost, om, dm)
    places, flows = _dense(o, d, y)
    _, c = _dense(o, d, cost, fill=1.0)
    got = doubly.fit_doubly(flows, c, flows.sum(axis=1), flows.sum(axis=0), decay)
    assert got.beta == pytest.approx(calibrate.engine_values(fit)["beta"], rel=1e-5)
    _, mu = _dense(o, d, fit.mu)
    assert got.flows(c, flows.sum(axis=1), flows.sum(axis=0)) == pytest.approx(mu, rel=1e-4, abs=1e-6)


def test_the_doubly_fit_with_a_self_term_recovers_known_parameters():
    """Flows made by the doubly-constrained model itself, the self term included: fitted on the
    rows of half the origins, beta and the self cost come back, and so do the other half's flows."""
    rng = np.random.default_rng(5)
    n = 40
    xy = rng.uniform(0, 200, (n, 2))
    c = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) + np.eye(n)
    workers, jobs = rng.uniform(1e3, 1e5, n), rng.uniform(1e3, 1e5, n)
    jobs *= workers.sum() / jobs.sum()
    truth = doubly.DoublyFit("power", 1.8, 7.0, 0.0, 0)
    flows = truth.flows(c, workers, jobs)
    assert flows.sum(axis=1) == pytest.approx(workers, rel=1e-9)
    assert flows.sum(axis=0) == pytest.approx(jobs, rel=1e-9)
    half = np.arange(0, n, 2)
    got = doubly.fit_doubly(flows[half], c, workers, jobs, "power", self_term=True, origins=half)
    assert (got.beta, got.self_cost) == pytest.approx((1.8, 7.0), rel=1e-4)
    other = np.arange(1, n, 2)
    assert got.flows(c, workers, jobs)[other] == pytest.approx(flows[other], rel=1e-3)


def test_ombs_rule_on_a_toy_system():
    """Two metropolitan areas (central counties 0 and 3). County 1 sends 30 % of its workers to
    0: area 0. County 2 sends 10 % to 0, but 40 of its 90 jobs are held by residents of 3: area 1.
    County 4 sends 5 % to 3 and none of its jobs are held from 0 or 3: no area."""
    from experiments.calibration.run import delineate

    flows = np.array(
        [
            [100, 0, 0, 0, 0],
            [30, 70, 0, 0, 0],
            [10, 0, 50, 0, 40],
            [0, 0, 40, 100, 0],
            [0, 0, 0, 5, 95],
        ],
        dtype=float,
    )
    area_of_central = np.array([0, -1, -1, 1, -1])
    assert delineate(flows, area_of_central).tolist() == [-1, 0, 1, -1, -1]


def test_the_threshold_on_model_shares_that_reproduces_the_observed_rule():
    """Model shares to the central county half the observed ones: the observed 25 % rule (only
    county 1, 30 %) is reproduced by a model threshold in (0.10, 0.15], the observed 15 % rule
    (counties 1 and 2) by one in (0.05, 0.10]; the first such value of the grid is chosen."""
    from experiments.calibration.run import TAUS, threshold_from_flows

    def table(shares):
        flows = np.diag([1000.0, 0, 0, 0])
        for i, x in enumerate(shares, start=1):
            flows[i, 0], flows[i, i] = 100 * x, 100 * (1 - x)
        return flows

    observed, model = table([0.30, 0.20, 0.10]), table([0.15, 0.10, 0.05])
    area_of_central = np.array([0, -1, -1, -1])
    rows = np.arange(4)
    assert threshold_from_flows(model, observed, area_of_central, rows) == TAUS[TAUS > 0.10][0]
    assert threshold_from_flows(model, observed, area_of_central, rows, 0.15) == TAUS[TAUS > 0.05][0]


@pytest.mark.slow
def test_ombs_rule_on_the_observed_flows_reproduces_ombs_delineation():
    """The ceiling the issue measured (F1 0.916 against OMB 2023 metropolitan outlying counties)."""
    from experiments.calibration import run

    counties, flows, _ = run.load()
    areas = run.delineation(run.ROOT)
    metro = areas[areas["metro"]]
    codes = {c: k for k, c in enumerate(sorted(metro["cbsa"].unique()))}
    cbsa_of = dict(zip(metro["GEOID"], metro["cbsa"]))
    central = set(metro.loc[metro["central"], "GEOID"])
    geoid = counties["GEOID"].to_numpy()
    area_of_central = np.array([codes[cbsa_of[g]] if g in central else -1 for g in geoid])
    truth = np.array([codes[cbsa_of[g]] if g in cbsa_of and g not in central else -1 for g in geoid])
    got = run.delineate(flows, area_of_central)
    hits = int(((got >= 0) & (got == truth)).sum())
    f1 = 2 * hits / ((got >= 0).sum() + (truth >= 0).sum())
    assert 0.90 <= f1 <= 0.93, f1


def _place_system(rng, n_units, places_per_unit):
    """Units on a 3 x 3 degree patch, each with 1..places_per_unit places around its point."""
    ulat, ulon = rng.uniform(40, 43, n_units), rng.uniform(-90, -87, n_units)
    counts = rng.integers(1, places_per_unit + 1, n_units)
    unit = np.repeat(np.arange(n_units), counts)
    lat = ulat[unit] + rng.normal(0, 0.15, unit.size)
    lon = ulon[unit] + rng.normal(0, 0.15, unit.size)
    people = rng.uniform(500, 50_000, unit.size)
    return {"lat": ulat, "lon": ulon}, {"unit": unit, "lat": lat, "lon": lon, "people": people}


def _place_deterrence_by_loops(units, places, decay, beta, self_cost, near_km, step=None):
    """PlaceDeterrence's definition, pair by pair (its docstring's formula); ``step``: (edges,
    values) a free deterrence instead (a time in [edges[k], edges[k + 1]) deters values[k], the
    end bins open, a trip within a place values[-1], whatever ``self_cost``)."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute

    def f(t):
        if step is not None:
            edges, values = step
            if t == "self":
                return values[-1]
            return values[min(max(int(np.searchsorted(edges, t, side="right")) - 1, 0), len(edges) - 2)]
        t = self_cost if t == "self" else t
        return t**-beta if decay == "power" else np.exp(-beta * t)

    def minutes(la1, lo1, la2, lo2, circuity=m.circuity, speed=m.speed_kmh, floor=m.min_time_min):
        p1, p2 = np.radians(la1), np.radians(la2)
        a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lo2 - lo1) / 2) ** 2
        return max(60 * circuity * 2 * 6371.0088 * np.arcsin(np.sqrt(min(a, 1.0))) / speed, floor)

    n = len(units["lat"])
    total = np.bincount(places["unit"], places["people"], minlength=n)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if minutes(units["lat"][i], units["lon"][i], units["lat"][j], units["lon"][j], 1.0, 60.0, 0.0) > near_km:
                out[i, j] = f(minutes(units["lat"][i], units["lon"][i], units["lat"][j], units["lon"][j]))
                continue
            for p in np.flatnonzero(places["unit"] == i):
                for q in np.flatnonzero(places["unit"] == j):
                    t = (
                        "self"
                        if p == q
                        else minutes(places["lat"][p], places["lon"][p], places["lat"][q], places["lon"][q])
                    )
                    out[i, j] += places["people"][p] / total[i] * places["people"][q] / total[j] * f(t)
    return out


@pytest.mark.parametrize("decay,beta", [("power", 2.3), ("exponential", 0.04)])
@pytest.mark.parametrize("near_km", [1e9, 120.0])
def test_the_place_deterrence_is_its_definition(decay, beta, near_km):
    """Place-weighted deterrence between units against a loop over every pair of places, with
    every unit pair near (1e9 km) and with the far ones at their internal points (120 km)."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    units, places = _place_system(np.random.default_rng(11), 12, 4)
    got = doubly.PlaceDeterrence(units, places, decay, m.circuity, m.speed_kmh, m.min_time_min, near_km)(beta, 9.0)
    want = _place_deterrence_by_loops(units, places, decay, beta, 9.0, near_km)
    assert got == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("near_km", [1e9, 120.0])
def test_the_place_bin_weights_are_the_definition(near_km):
    """A free deterrence between units through their places against the same loop over every
    pair of places, near and far unit pairs."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    units, places = _place_system(np.random.default_rng(13), 12, 4)
    edges = [0.0, 30.0, 60.0, 120.0, np.inf]
    values = np.array([0.5, 0.2, 0.04, 0.003, 1.0])
    det = doubly.PlaceDeterrence(units, places, "power", m.circuity, m.speed_kmh, m.min_time_min, near_km)
    got = det.bin_weights(edges).table(values)
    want = _place_deterrence_by_loops(units, places, "power", None, None, near_km, step=(edges, values))
    assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_one_place_per_unit_is_the_deterrence_between_points():
    """With one place per unit at its internal point, the place deterrence is the plain one."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    rng = np.random.default_rng(3)
    units, _ = _place_system(rng, 15, 1)
    places = {"unit": np.arange(15), "lat": units["lat"], "lon": units["lon"], "people": rng.uniform(1, 9, 15)}
    got = doubly.PlaceDeterrence(units, places, "power", m.circuity, m.speed_kmh, m.min_time_min)(2.0, 10.0)
    la, lo = units["lat"], units["lon"]
    c = doubly.minutes_between(
        la[:, None], lo[:, None], la[None, :], lo[None, :], m.circuity, m.speed_kmh, m.min_time_min
    )
    assert got == pytest.approx(doubly.deterrence(c, "power", 2.0, 10.0), rel=1e-12)


def test_the_place_weighted_fit_recovers_a_towns_parameters():
    """Unit flows made by the doubly-constrained model between places (beta 2.2, a trip within a
    place 9 min), fitted through PlaceDeterrence on half the origins: the town's beta and self
    time come back; fitted between internal points instead, they do not."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    rng = np.random.default_rng(8)
    units, places = _place_system(rng, 36, 5)
    det = doubly.PlaceDeterrence(units, places, "power", m.circuity, m.speed_kmh, m.min_time_min)
    workers = np.bincount(places["unit"], places["people"]) * 0.45
    jobs = workers * rng.uniform(0.5, 2.0, workers.size)
    jobs *= workers.sum() / jobs.sum()
    flows = doubly.balanced_flows(det(2.2, 9.0), workers, jobs)[0]
    half = np.arange(0, 36, 2)
    got = doubly.fit_doubly(flows[half], None, workers, jobs, "power", True, half, deterrence_of=det)
    assert (got.beta, got.self_cost) == pytest.approx((2.2, 9.0), rel=1e-4)
    la, lo = units["lat"], units["lon"]
    c = doubly.minutes_between(
        la[:, None], lo[:, None], la[None, :], lo[None, :], m.circuity, m.speed_kmh, m.min_time_min
    )
    plain = doubly.fit_doubly(flows[half], c, workers, jobs, "power", True, half)
    assert abs(plain.beta - 2.2) > 0.1 and plain.deviance > 1e6 * max(got.deviance, 1e-9)


def _zones_and_towns(tmp_path, rng, step=None):
    """16 zones with 1-4 towns each, some of a zone's people outside its towns; flows made by the
    doubly-constrained model between the towns (beta 2.2, a trip within a town 9 min; or the
    free deterrence ``step``: (edges, values))."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    units, places = _place_system(rng, 16, 4)
    zone_people = np.bincount(places["unit"], places["people"]) * rng.choice([1.0, 1.5], 16)
    rest = zone_people - np.bincount(places["unit"], places["people"])
    extra = np.flatnonzero(rest > 0)
    every = {
        "unit": np.concatenate([places["unit"], extra]),
        "lat": np.concatenate([places["lat"], units["lat"][extra]]),
        "lon": np.concatenate([places["lon"], units["lon"][extra]]),
        "people": np.concatenate([places["people"], rest[extra]]),
    }
    det = doubly.PlaceDeterrence(units, every, "power", m.circuity, m.speed_kmh, m.min_time_min)
    workers = zone_people * 0.45
    jobs = workers * rng.uniform(0.5, 2.0, 16)
    jobs *= workers.sum() / jobs.sum()
    table = det(2.2, 9.0) if step is None else det.bin_weights(step[0]).table(step[1])
    flows = doubly.balanced_flows(table, workers, jobs)[0]
    zones = pd.DataFrame(
        {"town_id": 100 + np.arange(16), "name": [f"zone {k}" for k in range(16)], "lat": units["lat"],
         "lon": units["lon"], "population": zone_people}
    )  # fmt: skip
    towns = pd.DataFrame(
        {"town_id": 1000 + np.arange(places["unit"].size), "name": "town", "lat": places["lat"],
         "lon": places["lon"], "population": places["people"], "zone": 100 + places["unit"]}
    )  # fmt: skip
    o, d = np.nonzero(flows >= 0)
    pairs = pd.DataFrame({"origin": 100 + o, "destination": 100 + d, "flow": flows[o, d]})
    paths = {name: tmp_path / f"{name}.csv" for name in ("zones", "towns", "flows")}
    for name, frame in (("zones", zones), ("towns", towns), ("flows", pairs)):
        frame.to_csv(paths[name], index=False)
    return paths, flows


def test_calibrate_places_finds_a_towns_beta_and_self_time(tmp_path, run_cli):
    """``agglo calibrate --places``: zone flows made between the zones' towns give back the
    towns' beta and self time, written as an override file that ``agglo run`` reads."""
    paths, _ = _zones_and_towns(tmp_path, np.random.default_rng(21))
    out = tmp_path / "town.yaml"
    args = [
        "calibrate",
        "--flows",
        str(paths["flows"]),
        "--towns",
        str(paths["zones"]),
        "--places",
        str(paths["towns"]),
    ]
    code, text, err = run_cli(*args, "--out", str(out))
    assert code == 0, err
    assert "CPC 1.0000" in text and "zones' people outside them" in text
    import yaml

    values = yaml.safe_load(out.read_text())["commute"]
    assert values["beta"] == pytest.approx(2.2, abs=2e-3) and values["self_time_min"] == pytest.approx(9.0, rel=5e-3)
    code, text, err = run_cli("config", "--params", str(out))
    assert code == 0, err
    assert f"beta: {values['beta']!r}" in text.split("commute:")[1].split("freight:")[0]


def test_calibrate_curve_measures_a_towns_steps(tmp_path, run_cli):
    """``agglo calibrate --places --curve``: zone flows made between towns by a step deterrence
    give its steps back, printed beside the power law fitted to the same flows."""
    values = np.array([0.4, 0.1, 0.02, 0.002, 1.0])
    paths, _ = _zones_and_towns(tmp_path, np.random.default_rng(22), step=([0.0, 20.0, 40.0, 80.0, np.inf], values))
    args = ["--flows", str(paths["flows"]), "--towns", str(paths["zones"]), "--places", str(paths["towns"])]
    code, text, err = run_cli("calibrate", *args, "--curve", "0,20,40,80")
    assert code == 0, err
    rows = [line.split() for line in text.splitlines()[-4:]]
    assert [r[0] for r in rows] == ["0-20", "20-40", "40-80", "80-inf"]
    assert [float(r[1]) for r in rows] == pytest.approx(np.log(values[:-1]), abs=2e-3)
    beta, self_time = (float(x) for x in re.search(r"beta (\S+), a trip within a town (\S+) min", text).groups())
    power = [-beta * np.log(m / self_time) for m in (10.0, 30.0, 60.0, 80.0)]
    assert [float(r[2]) for r in rows] == pytest.approx(power, abs=2e-3)
    assert "CPC 1.0000" in text.split("measured deterrence")[1]


def test_calibrate_places_refuses_bad_input_in_one_line(tmp_path, run_cli):
    paths, flows = _zones_and_towns(tmp_path, np.random.default_rng(4))
    towns = pd.read_csv(paths["towns"])
    bad = {
        "no_zone.csv": towns.drop(columns="zone"),
        "unknown_zone.csv": towns.assign(zone=towns["zone"].where(towns.index != 3, 999)),
    }
    for name, frame in bad.items():
        frame.to_csv(tmp_path / name, index=False)
    no_self = pd.read_csv(paths["flows"])
    no_self[no_self["origin"] != no_self["destination"]].to_csv(tmp_path / "no_self.csv", index=False)
    base = ["calibrate", "--towns", str(paths["zones"])]
    cases = [
        (["--flows", str(paths["flows"]), "--places", str(tmp_path / "no_zone.csv")], ["missing column 'zone'"]),
        (["--flows", str(paths["flows"]), "--places", str(tmp_path / "unknown_zone.csv")], ["row 5", "zone = '999'"]),
        (["--flows", str(tmp_path / "no_self.csv"), "--places", str(paths["towns"])], ["no flow within a zone"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--model", "production"], ["--model"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--cost", "km"], ["--cost"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--near-km", "-1"], ["--near-km = -1"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--curve", "0,x"], ["--curve = '0,x'"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--curve", "30,10"], ["--curve = '30,10'"]),
        (["--flows", str(paths["flows"]), "--places", str(paths["towns"]), "--curve", "15"], ["--curve = '15'"]),
        (["--flows", str(paths["flows"]), "--curve", "0,15"], ["without --places"]),
    ]
    for args, words in cases:
        code, _, err = run_cli(*base, *args)
        assert code == 2, (args, err)
        lines = [line for line in err.strip().splitlines() if line]
        assert len(lines) == 1 and "allowed" in lines[0] and "Traceback" not in err, err
        assert all(w in lines[0] for w in words), lines[0]


def _free_system(rng, n):
    xy = rng.uniform(0, 120, (n, 2))
    c = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) + np.eye(n)
    workers, jobs = rng.uniform(1e3, 1e5, n), rng.uniform(1e3, 1e5, n)
    return c, workers, jobs * workers.sum() / jobs.sum()


FREE_EDGES = [0.0, 20.0, 45.0, 80.0, np.inf]


def test_the_free_deterrence_is_the_regression_with_bin_indicators():
    """On noisy flows, every origin fitted: the free deterrence is the Poisson regression's
    with an indicator per origin, per destination and per cost bin (the self term's bin the
    reference), fitted by an independent NumPy Newton solver."""
    rng = np.random.default_rng(11)
    n = 24
    c, workers, jobs = _free_system(rng, n)
    mean = doubly.DoublyFit("power", 1.6, 6.0, 0.0, 0).flows(c, workers, jobs) / 50.0
    flows = rng.poisson(mean).astype(float)
    weights = doubly.BinWeights.points(c, FREE_EDGES)
    got = doubly.fit_free(flows, weights, flows.sum(axis=1), flows.sum(axis=0), tol=1e-10)
    bins = weights.bins.ravel()
    n_bins = len(FREE_EDGES)
    i, j = np.divmod(np.arange(n * n), n)
    x = np.hstack([np.eye(n)[i], np.eye(n)[j][:, 1:], np.eye(n_bins)[bins][:, :-1]])
    coef = _numpy_poisson(flows.ravel(), x)
    assert got.log_f[:-1] == pytest.approx(coef[-(n_bins - 1) :], abs=1e-7)
    assert got.log_f[-1] == 0.0 and got.error <= 1e-10


def test_the_free_fit_recovers_a_step_deterrence_from_half_the_origins():
    """Flows made by a known step deterrence (three bins and the self term): fitted on the
    rows of half the origins, with every place's margins, its steps and the other half's
    flows come back."""
    rng = np.random.default_rng(12)
    n = 40
    c, workers, jobs = _free_system(rng, n)
    truth = doubly.FreeFit(np.array(FREE_EDGES), np.array([-0.7, -2.0, -3.1, -5.5, 0.0]), 0, 0.0)
    weights = doubly.BinWeights.points(c, FREE_EDGES)
    flows = truth.flows(weights, workers, jobs)
    half = np.arange(0, n, 2)
    got = doubly.fit_free(flows[half], weights, workers, jobs, origins=half, tol=1e-10)
    assert got.log_f == pytest.approx(truth.log_f, abs=1e-6)
    other = np.arange(1, n, 2)
    assert got.flows(weights, workers, jobs)[other] == pytest.approx(flows[other], rel=1e-6)
    near = doubly.BinWeights.points(c * 0.1, FREE_EDGES)
    empty = doubly.fit_free(flows[half], near, workers, jobs, origins=half)
    assert np.isneginf(empty.log_f[2:4]).all()  # no pair in those bins: no value, no trips
    with pytest.raises(ValueError, match="no trip within a place"):
        no_self = flows[half].copy()
        no_self[np.arange(half.size), half] = 0.0
        doubly.fit_free(no_self, weights, workers, jobs, origins=half)


def test_the_free_fit_through_places_recovers_a_towns_steps():
    """Unit flows made by a step deterrence between places (a town's curve), fitted on half
    the origins through the places' bin weights: the steps come back (the EM form of the
    fit, where a unit pair mixes bins)."""
    from agglo.engine.config.schema import AggloConfig

    m = AggloConfig().commute
    rng = np.random.default_rng(14)
    units, places = _place_system(rng, 30, 4)
    weights = doubly.PlaceDeterrence(units, places, "power", m.circuity, m.speed_kmh, m.min_time_min).bin_weights(
        [0.0, 30.0, 60.0, 120.0, np.inf]
    )
    truth = doubly.FreeFit(weights.edges, np.log([0.5, 0.2, 0.04, 0.003, 1.0]), 0, 0.0)
    workers = np.bincount(places["unit"], places["people"]) * 0.45
    jobs = workers * rng.uniform(0.5, 2.0, workers.size)
    jobs *= workers.sum() / jobs.sum()
    flows = truth.flows(weights, workers, jobs)
    half = np.arange(0, 30, 2)
    got = doubly.fit_free(flows[half], weights, workers, jobs, origins=half, tol=1e-11)
    assert got.log_f == pytest.approx(truth.log_f, abs=1e-5)
