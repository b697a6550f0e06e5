"""Sensitivity, stability, scenario discovery and plots from real cubes on disk,
checked against SALib called directly and against plain NumPy computations."""

from collections import Counter

import numpy as np
import pytest

from agglo.analysis import adjusted_rand, coassignment, prim, scalar_outputs, stability
from agglo.analysis.report import read_group
from agglo.analysis.sensitivity import analyze_sensitivity
from agglo.engine.store.reading import open_results
from tests.conftest import SMALL

OAXACA_SOBOL = [
    "executor.kind=synchronous",
    "sweep.grid={}",
    "sweep.sampler=sobol",
    "sweep.n=16",
    "sweep.seed=7",
    "sweep.bounds={commute.cap_min:[20,90],freight.beta:[0.5,2.0]}",
]


@pytest.fixture(scope="module")
def sobol_cube(tmp_path_factory):
    from agglo.cli import main

    path = str(tmp_path_factory.mktemp("sobol") / "oaxaca_sobol.zarr")
    assert main(["run", *OAXACA_SOBOL, f"store.path={path}", "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def grid_cube(tmp_path_factory):
    from agglo.cli import main

    path = str(tmp_path_factory.mktemp("grid") / "grid.zarr")
    sweep = ["commute.cap_min=20,40,60", "freight.cap_min=90,240", "borders=open,closed", "executor.batch_size=5"]
    assert main(["run", *SMALL, *sweep, f"store.path={path}", "--quiet"]) == 0
    return path


def _numpy_outputs(ds, mode):
    """The four outputs per scenario, from the raw arrays with NumPy only (flat scenario order)."""
    dims = [d for d in ds["core"].dims if d not in ("mode", "town")]
    ap = ds["agglo_population"].sel(mode=mode).transpose(*dims, "town").values.reshape(-1, ds.sizes["town"])
    pop = ds["population"].values
    is_agglo = ap > pop[None, :]
    n = is_agglo.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(is_agglo, ap, 0).sum(axis=1) / n, np.nan)
    largest = np.where(n > 0, np.where(is_agglo, ap, -np.inf).max(axis=1), np.nan)
    coverage = ds["coverage"].sel(mode=mode).transpose(*dims).values.reshape(-1)
    n_agglo = ds["n_agglomerations"].sel(mode=mode).transpose(*dims).values.reshape(-1).astype(float)
    return {
        "coverage": coverage,
        "n_agglomerations": n_agglo,
        "mean_agglo_population": mean,
        "largest_agglo_population": largest,
    }


def test_sobol_indices_equal_salib_on_the_cube(sobol_cube):
    from SALib.analyze import sobol

    ds = open_results(sobol_cube)
    result = analyze_sensitivity(ds)
    problem = {"num_vars": 2, "names": ["commute.cap_min", "freight.beta"], "bounds": [[20, 90], [0.5, 2.0]]}
    checked = 0
    for mode in ("commute", "freight", "freight-commute"):
        if mode == "freight-commute":
            c, f = _numpy_outputs(ds, "commute"), _numpy_outputs(ds, "freight")
            ys = {k: f[k] - c[k] for k in c}
        else:
            ys = _numpy_outputs(ds, mode)
        for name, y in ys.items():
            got = result.sel(output=name, mode=mode)
            if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
                assert np.isnan(got["S1"].values).all()
                continue
            want = sobol.analyze(problem, y, calc_second_order=True, print_to_console=False, seed=7)
            for field in ("S1", "S1_conf", "ST", "ST_conf"):
                np.testing.assert_allclose(got[field].values, want[field], rtol=1e-12, atol=1e-15, equal_nan=True)
            np.testing.assert_allclose(got["S2"].values, want["S2"], rtol=1e-12, atol=1e-15, equal_nan=True)
            checked += 1
    assert checked >= 6
    # Commuting coverage depends on the commuting cap, not on the freight beta.
    cov = result.sel(output="coverage", mode="commute")
    assert float(cov.ST.sel(key="commute.cap_min")) > 0.5 > abs(float(cov.ST.sel(key="freight.beta")))


def test_morris_indices_equal_salib(tmp_path):
    from SALib.analyze import morris

    from agglo.analysis.sensitivity import scenario_table
    from agglo.cli import main

    path = str(tmp_path / "morris.zarr")
    sweep = ["sweep.grid={}", "sweep.sampler=morris", "sweep.n=6", "sweep.seed=3"]
    sweep += ["sweep.bounds={commute.cap_min:[20,90],commute.beta:[1,3],freight.cap_min:[90,300]}"]
    assert main(["run", *SMALL, *sweep, f"store.path={path}", "--quiet"]) == 0
    ds = open_results(path)
    result = analyze_sensitivity(ds)
    columns = scenario_table(ds)
    x = np.column_stack([columns[k] for k in ["commute.cap_min", "commute.beta", "freight.cap_min"]])
    problem = {"num_vars": 3, "names": ["commute.cap_min", "commute.beta", "freight.cap_min"]}
    problem["bounds"] = [[20, 90], [1, 3], [90, 300]]
    y = _numpy_outputs(ds, "freight")["coverage"]
    want = morris.analyze(problem, x, y, num_levels=4, print_to_console=False, seed=3)
    got = result.sel(output="coverage", mode="freight")
    np.testing.assert_allclose(got["mu_star"].values, want["mu_star"], rtol=1e-12)
    np.testing.assert_allclose(got["sigma"].values, want["sigma"], rtol=1e-12)


def test_grid_main_effects_and_variance_shares(grid_cube):
    ds = open_results(grid_cube)
    result = analyze_sensitivity(ds)
    dims = ["commute.cap_min", "freight.cap_min", "borders"]
    y = _numpy_outputs(ds, "commute")["coverage"].reshape([ds.sizes[d] for d in dims])
    for axis, key in enumerate(dims):
        others = tuple(a for a in range(3) if a != axis)
        main = y.mean(axis=others)
        np.testing.assert_allclose(result[f"main_effect.coverage.{key}"].sel(mode="commute").values, main, rtol=1e-12)
        want = main.var() / y.var() if y.var() > 0 else np.nan
        got = float(result["variance_share"].sel(output="coverage", mode="commute", key=key))
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    outputs = scalar_outputs(ds)
    assert outputs.sizes["mode"] == 3


def test_stability_and_coassignment_equal_plain_numpy(grid_cube):
    ds = open_results(grid_cube)
    stab = stability(ds)
    core = ds["core"].transpose("commute.cap_min", "freight.cap_min", "borders", "mode", "town").values
    flat = core.reshape(-1, 2, ds.sizes["town"])
    for m in range(2):
        for t in range(ds.sizes["town"]):
            counts = Counter(flat[:, m, t].tolist())
            top = max(counts.values())
            modal = min(v for v, c in counts.items() if c == top)
            p = np.array(list(counts.values())) / flat.shape[0]
            assert stab["modal_core"].values[m, t] == modal
            assert stab["modal_frequency"].values[m, t] == pytest.approx(top / flat.shape[0])
            assert stab["entropy_bits"].values[m, t] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-12)
            assert stab["p_member"].values[m, t] == pytest.approx((flat[:, m, t] >= 0).mean())
    assert (stab["modal_frequency"] < 1).any()  # the sweep moves some towns
    towns = np.arange(0, ds.sizes["town"], 7)
    co = coassignment(ds, towns).values
    for m in range(2):
        sub = flat[:, m][:, towns]
        want = ((sub[:, :, None] == sub[:, None, :]) & (sub[:, :, None] >= 0)).mean(axis=0)
        np.testing.assert_allclose(co[m], want, rtol=0, atol=1e-15)


def _ari_by_pairs(a, b):
    n = len(a)
    a = [x if x >= 0 else -(i + 1) for i, x in enumerate(a)]
    b = [x if x >= 0 else -(i + 1) for i, x in enumerate(b)]
    same_a = np.array([[a[i] == a[j] for j in range(n)] for i in range(n)])[np.triu_indices(n, 1)]
    same_b = np.array([[b[i] == b[j] for j in range(n)] for i in range(n)])[np.triu_indices(n, 1)]
    total = same_a.size
    both = (same_a & same_b).sum()
    expected = same_a.sum() * same_b.sum() / total
    top = (same_a.sum() + same_b.sum()) / 2
    return 1.0 if top == expected else (both - expected) / (top - expected)


def test_adjusted_rand_equals_pair_counting(grid_cube):
    ds = open_results(grid_cube)
    flat = ds["core"].stack(s=["commute.cap_min", "freight.cap_min", "borders"]).sel(mode="freight")
    for i, j in [(0, 11), (3, 4), (5, 5)]:
        a, b = flat.isel(s=i).values, flat.isel(s=j).values
        assert adjusted_rand(a, b) == pytest.approx(_ari_by_pairs(list(a), list(b)), abs=1e-12)
    assert adjusted_rand(a, a) == 1.0


def test_prim_finds_the_box():
    rng = np.random.default_rng(0)
    x = {"a": rng.uniform(0, 1, 4000), "b": rng.uniform(0, 1, 4000), "c": rng.choice(["open", "closed"], 4000)}
    y = (x["a"] > 0.6) & (x["b"] < 0.4) & (x["c"] == "open")
    box, trajectory = prim(x, y, min_coverage=0.8)
    assert box.density > 0.9 and box.coverage >= 0.8
    lo_a = box.limits["a"][0]
    hi_b = box.limits["b"][1]
    assert 0.5 < lo_a < 0.7 and 0.3 < hi_b < 0.5 and box.limits["c"] == ["open"]
    assert trajectory[0].density == pytest.approx(y.mean())


def test_analyze_and_plot_commands_write_groups_and_figures(grid_cube, tmp_path, run_cli):
    code, out, err = run_cli("analyze", grid_cube, "--region", "SW", "--ari", "0", "11", "--discover", "0.05")
    assert code == 0, err
    assert "variance_share" in out and "adjusted Rand index" in out and "scenario discovery" in out
    assert read_group(grid_cube, "sensitivity")["variance_share"].sizes["key"] == 3
    assert read_group(grid_cube, "stability")["modal_core"].sizes["town"] == 150
    assert "p_same" in read_group(grid_cube, "coassignment")
    open_results(grid_cube)  # the cube itself still opens, untouched
    code, out, err = run_cli("plot", grid_cube, "--out", str(tmp_path / "figs"), "--select", "borders=closed")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == [
        "agglo_vs_cap.png",
        "heatmap_coverage.png",
        "map.png",
        "membership.png",
        "sensitivity_coverage.png",
        "stability.png",
    ]
    for name in names:
        data = (tmp_path / "figs" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "/nonexistent/cube.zarr"], "no such store"),
        (["analyze", "GRID", "--towns", "999999"], "--towns: town_id '999999'"),
        (["analyze", "GRID", "--ari", "0", "99"], "--ari 99"),
        (["analyze", "GRID", "--discover", "2"], "--discover 2.0"),
        (["plot", "GRID", "--out", "OUT", "--select", "commute.cap_min=33"], "--select commute.cap_min=33"),
        (["plot", "GRID", "--out", "OUT", "--select", "nonsense=1"], "--select nonsense"),
        (["plot", "GRID", "--out", "OUT", "--select", "novalue"], "--select 'novalue'"),
    ],
)
def test_analysis_bad_input_is_one_line_exit_2(grid_cube, tmp_path, run_cli, args, message):
    from pathlib import Path

    args = [grid_cube if a == "GRID" else str(tmp_path / "figs") if a == "OUT" else a for a in args]
    before = sorted((str(p), p.stat().st_mtime_ns) for p in Path(grid_cube).rglob("*"))
    code, out, err = run_cli(*args)
    assert code == 2
    assert err.startswith("agglo: error: ") and message in err and err.count("\n") == 1, err
    assert sorted((str(p), p.stat().st_mtime_ns) for p in Path(grid_cube).rglob("*")) == before  # nothing written


def test_adjusted_rand_published_value():
    # Hubert and Arabie's index as scikit-learn's documentation gives it for this pair of labelings.
    assert adjusted_rand(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 2, 2])) == pytest.approx(
        0.24242424242424243, abs=1e-12
    )


def _units_twin(core, share, population, unit, target, weight):
    """aggregate_units for one scenario, with dicts: (target label or "", target share) per unit."""
    sums: dict = {}
    unit_pop: dict = {}
    for i, u in enumerate(unit):
        unit_pop[u] = unit_pop.get(u, 0.0) + float(population[i])
        if core[i] < 0:
            continue
        w = float(population[i]) * (float(share[i]) if weight == "flows" else 1.0)
        key = (u, str(target[core[i]]))
        sums[key] = sums.get(key, 0.0) + w
    out = {}
    for u in unit_pop:
        cands = [(t, w) for (uu, t), w in sums.items() if uu == u]
        if not cands:
            out[u] = ("", 0.0)
            continue
        t, w = min(cands, key=lambda c: (-c[1], c[0]))
        out[u] = (t, w / unit_pop[u])
    return out


@pytest.mark.parametrize("weight", ["population", "flows"])
def test_aggregate_units_equals_its_twin_on_every_scenario(grid_cube, weight):
    from agglo.analysis import aggregate_units

    ds = open_results(grid_cube)
    n = ds.sizes["town"]
    rng = np.random.default_rng(5)
    unit = np.array([f"u{k}" for k in rng.integers(0, 12, n)])
    target = np.array([f"t{k}" for k in rng.integers(0, 4, n)])  # cores pooled into 4 targets
    got = aggregate_units(ds, unit, target, weight=weight, mode="freight")
    dims = [d for d in ds["core"].dims if d not in ("mode", "town")]
    core = ds["core"].sel(mode="freight").transpose(*dims, "town").values.reshape(-1, n)
    share = ds["share"].sel(mode="freight").transpose(*dims, "town").values.reshape(-1, n)
    flat_t = got["target"].transpose(*dims, "unit").values.reshape(-1, got.sizes["unit"])
    flat_s = got["target_share"].transpose(*dims, "unit").values.reshape(-1, got.sizes["unit"])
    units = got["unit"].values.tolist()
    joined = 0
    for s in range(core.shape[0]):
        want = _units_twin(core[s], share[s], ds["population"].values, unit, target, weight)
        for k, u in enumerate(units):
            assert flat_t[s, k] == want[u][0], (s, u)
            assert flat_s[s, k] == pytest.approx(want[u][1], rel=1e-12, abs=1e-15), (s, u)
            joined += want[u][0] != ""
    assert joined > 0
    np.testing.assert_allclose(got["unit_population"].sum(), ds["population"].sum())


def test_aggregate_units_by_default_joins_the_unit_of_the_core(grid_cube):
    from agglo.analysis import aggregate_units

    ds = open_results(grid_cube).isel({"commute.cap_min": 2, "freight.cap_min": 1, "borders": 0})
    n = ds.sizes["town"]
    unit = np.arange(n) // 3  # units of three consecutive towns
    got = aggregate_units(ds, unit)
    core = ds["core"].sel(mode="commute").values
    for k, u in enumerate(got["unit"].values):
        members = np.flatnonzero((unit.astype(str) == u) & (core >= 0))
        if members.size == 1:  # one attached town: the unit joins the unit of its core
            assert got["target"].values[k] == str(unit[core[members[0]]])
    with pytest.raises(ValueError, match="weight"):
        aggregate_units(ds, unit, weight="jobs")
    with pytest.raises(ValueError, match="one label per town"):
        aggregate_units(ds, unit[:-1])
