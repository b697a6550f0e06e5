"""agglo flows: the exported table against the NumPy twin of docs/model.md."""

import numpy as np
import pandas as pd
import pytest

from agglo.engine.config.compose import resolve
from agglo.engine.data.load import load_towns
from tests.conftest import SMALL
from tests.strategies import reference_one

ONE = [*SMALL, "sweep.grid={}", "commute.cap_min=45", "freight.decay=exponential", "freight.beta=0.02"]


def test_flow_table_equals_the_reference(tmp_path, run_cli):
    out = tmp_path / "flows.parquet"
    code, text, err = run_cli("flows", *ONE, "--out", str(out))
    assert code == 0, err
    table = pd.read_parquet(out)
    assert list(table.columns) == ["origin", "destination", "mode", "travel_min", "share", "flow"]
    cfg, _ = resolve(ONE)
    towns = load_towns(cfg)
    index = {t: i for i, t in enumerate(towns.town_id)}
    for mode in ("commute", "freight"):
        ref = reference_one(towns, cfg, mode, keep_pairs=True)
        rows, _, s, reach = ref["pairs"][0]
        part = table[table["mode"] == mode]
        assert len(part) == int(reach.sum()) == int(ref["n_reachable"].sum())
        i = part["origin"].map(index).to_numpy()
        j = part["destination"].map(index).to_numpy()
        dense = np.zeros((len(towns), len(towns)))
        dense[i, j] = part["share"].to_numpy()
        np.testing.assert_allclose(dense[rows], np.where(reach, s, 0.0), rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(part["flow"], towns.population[i] * part["share"], rtol=1e-12)
        assert (part["travel_min"] <= cfg.mode(mode).cap_min).all()
    # Only pairs to cores:
    cores = tmp_path / "cores.csv"
    code, _, err = run_cli("flows", *ONE, "--out", str(cores), "--to-cores")
    assert code == 0, err
    to_cores = pd.read_csv(cores)
    is_core = towns.population >= cfg.cores.min_population
    assert len(to_cores) == int(sum(is_core[index[d]] for d in table["destination"]))
    assert all(is_core[index[d]] for d in to_cores["destination"])


def _against_the_twin(table: pd.DataFrame, overrides: list, minutes=None) -> None:
    """Each mode's inflow (the flows summed by destination) and each non-core town's largest
    share to a core against the dense twin of docs/model.md (``minutes``: the freight table)."""
    from tests.naive import scenario, scenario_dense

    cfg, _ = resolve(overrides)
    towns = load_towns(cfg)
    index = {t: i for i, t in enumerate(towns.town_id)}
    is_core = towns.population >= cfg.cores.min_population
    for mode in ("commute", "freight"):
        mc = vars(cfg.mode(mode))
        twin = scenario if mc["model"] == "gravity" else scenario_dense
        table_min = minutes if mode == "freight" else None
        ref = twin(towns.lat, towns.lon, towns.population, towns.region_code, is_core, mc, False, minutes=table_min)
        part = table[table["mode"] == mode]
        assert len(part) == int(ref["n_reachable"].sum())
        i = part["origin"].map(index).to_numpy()
        j = part["destination"].map(index).to_numpy()
        inflow = np.bincount(j, weights=part["flow"].to_numpy(), minlength=len(towns))
        np.testing.assert_allclose(inflow, ref["inflow"], rtol=1e-5, atol=1e-9, err_msg=mode)
        best = np.full(len(towns), -1.0)
        np.maximum.at(best, i, np.where(is_core[j], part["share"].to_numpy(), -1.0))
        has = (best >= 0) & ~is_core
        np.testing.assert_allclose(best[has], ref["share"][has], rtol=1e-5, err_msg=mode)


@pytest.mark.parametrize("model", ["attraction", "doubly", "radiation"])
def test_flow_table_of_the_other_models(tmp_path, run_cli, model):
    overrides = [*ONE, f"commute.model={model}", f"freight.model={model}"]
    out = tmp_path / "flows.csv"
    code, _, err = run_cli("flows", *overrides, "--out", str(out))
    assert code == 0, err
    _against_the_twin(pd.read_csv(out), overrides)


@pytest.mark.parametrize("model", ["gravity", "attraction", "doubly", "radiation"])
def test_flow_table_on_an_asymmetric_table(tmp_path, run_cli, model):
    """Freight on a table whose way north is 30 % slower: A_j of the attraction model sums
    j's incoming pairs, the doubly model balances by Furness (A != B)."""
    from tests.naive import haversine_rows
    from tests.test_traveltimes import write

    cfg, _ = resolve(ONE)
    towns = load_towns(cfg)
    minutes = 60 * haversine_rows(towns.lat, towns.lon, np.arange(len(towns))) / 50.0
    minutes = np.where(towns.lat[None, :] > towns.lat[:, None], 1.3 * minutes, minutes)
    np.fill_diagonal(minutes, np.inf)
    path = write(tmp_path / "t.parquet", towns, minutes)
    overrides = [*ONE, f"commute.model={model}", f"freight.model={model}", f"freight.travel_times={path}"]
    out = tmp_path / "flows.parquet"
    code, _, err = run_cli("flows", *overrides, "--out", str(out))
    assert code == 0, err
    _against_the_twin(pd.read_parquet(out), overrides, minutes)


def test_flows_refuses_sweeps_existing_files_and_unknown_types(tmp_path, run_cli):
    out = tmp_path / "f.parquet"
    code, _, err = run_cli("flows", *SMALL, "commute.cap_min=30,60", "--out", str(out))
    assert code == 2 and "sweeps scenarios" in err and not out.exists()
    out.write_text("keep me")
    code, _, err = run_cli("flows", *ONE, "--out", str(out))
    assert code == 2 and "exists" in err and out.read_text() == "keep me"
    code, _, err = run_cli("flows", *ONE, "--out", str(tmp_path / "f.xlsx"))
    assert code == 2 and "unknown file type" in err
