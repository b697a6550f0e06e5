"""The newcomer's first hour: the Python API, overrides that mean what they say, regions,
the sample count, and the README's own Python run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import agglo
from agglo.engine.config.compose import resolve
from agglo.engine.store.layout import VARIABLES
from tests.conftest import SMALL, cube_arrays

ROOT = Path(__file__).resolve().parents[1]


def test_a_single_value_replaces_the_experiments_sweep_of_that_key():
    cfg, omega = resolve(["experiment=oaxaca", "commute.cap_min=45"])
    assert cfg.commute.cap_min == 45 and "commute.cap_min" not in omega.sweep.grid
    assert list(omega.sweep.grid) == ["freight.cap_min"]  # the other swept key stays
    _, omega = resolve(["experiment=oaxaca", "commute.cap_min=30,45"])
    assert list(omega.sweep.grid["commute.cap_min"]) == [30, 45]
    _, omega = resolve(["experiment=oaxaca"])
    assert list(omega.sweep.grid["commute.cap_min"]) == [30, 45, 60, 90]  # make run: the study as it was


def test_the_base_configuration_is_neutral():
    cfg, omega = resolve([])
    assert list(cfg.cores.ids) == [] and len(omega.sweep.grid) == 0
    assert cfg.store.path == "results/MX-20.zarr"
    assert resolve(["data.country=PL", "data.admin1=77"])[0].store.path == "results/PL-77.zarr"
    assert resolve(["data.country=PL", "data.admin1=null"])[0].store.path == "results/PL.zarr"
    assert resolve(["experiment=synthetic"])[0].store.path.startswith("results/synthetic")


@pytest.mark.parametrize(
    "given, codes",
    [("77", ["77"]), ("[77,78]", ["77", "78"]), ("null", None), ("all", None), ("'07'", ["07"])],
)
def test_admin1_takes_one_code_a_list_or_the_whole_country(given, codes):
    from agglo.engine.config.text import result_keys

    cfg, omega = resolve(["data.country=PL", f"data.admin1={given}"])
    assert cfg.data.admin1 == codes
    assert result_keys(omega)["data"]["admin1"] == codes  # one spelling in the store: 77 resumes [77]


def test_admin1_refusals_say_what_is_allowed(run_cli):
    code, _, err = run_cli("run", "data.country=PL", "data.admin1=[]")
    assert code == 2 and "data.admin1" in err and "agglo regions" in err and err.count("\n") == 1
    code, _, err = run_cli("run", "data.country=PL", "data.admin1=99")
    assert code == 2 and "no such first-level division" in err and "agglo regions PL" in err


def test_regions_lists_codes_with_their_largest_town(run_cli):
    code, out, _ = run_cli("regions", "PL")
    assert code == 0
    assert re.search(r"^77\s+Kraków\s+\d+", out, re.M), out
    assert "16 first-level divisions" in out
    table = agglo.regions("PL")
    assert table.loc["78", "largest_town"] == "Warsaw" and table["towns"].sum() > 2000


def test_another_country_runs_without_touching_the_experiments_cores(tmp_path, run_cli):
    store = tmp_path / "pl.zarr"
    code, _, err = run_cli(
        "run",
        "experiment=oaxaca",
        "data.country=PL",
        "data.admin1=77",
        "commute.cap_min=60",
        "freight.cap_min=240",
        f"store.path={store}",
    )
    assert code == 0, err
    assert "3 of the experiment's forced cores are not among the towns" in err
    # forced cores the user sets are still checked
    code, _, err = run_cli("run", "data.country=PL", "data.admin1=77", "cores.ids=[3522507]", f"store.path={store}2")
    assert code == 2 and "cores.ids: town_id 3522507 is not in geonames:PL/77" in err


def test_the_python_api_gives_the_clis_cube_bit_for_bit(tmp_path, run_cli):
    settings = {"commute": {"cap_min": [30, 60]}, "freight.cap_min": [120, 240]}  # nested or dotted
    api = agglo.run({**settings, "store.path": str(tmp_path / "api.zarr")}, overrides=SMALL, quiet=True)
    assert isinstance(api, xr.Dataset) and api.sizes["commute.cap_min"] == 2
    code, _, err = run_cli(
        "run", *SMALL, "commute.cap_min=30,60", "freight.cap_min=120,240", f"store.path={tmp_path / 'cli.zarr'}"
    )
    assert code == 0, err
    a, b = cube_arrays(tmp_path / "api.zarr"), cube_arrays(tmp_path / "cli.zarr")
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name], equal_nan=True), name
    with pytest.raises(agglo.UserError, match="cannot be swept"):
        agglo.run({"data.country": ["PL", "MX"]})


def test_a_script_without_a_main_guard_runs_on_the_local_cluster(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(
        "import agglo\n"
        "ds = agglo.run({'commute.cap_min': [30, 60], 'executor.kind': 'local', 'executor.n_workers': 2,\n"
        "                'executor.threads_per_worker': 1, 'executor.compute_while_starting': False,\n"
        f"                'store.path': {str(tmp_path / 'cube.zarr')!r}}}, overrides={SMALL!r})\n"
        "print('sizes', dict(ds.sizes))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("sizes") == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr", "study.py"]  # no junk stores


def test_a_sampled_sweep_says_how_many_scenarios_before_it_runs(tmp_path, run_cli):
    args = [*SMALL, "sweep.sampler=sobol", "sweep.n=6", "sweep.bounds={commute.cap_min:[20,90],freight.beta:[0.5,2.0]}"]
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 's.zarr'}")
    assert code == 0, err
    assert "sweep.n = 6 (N), 2 key(s) (D): N x (2D + 2) = 36 scenarios" in err
    assert "power of 2 (e.g. 4 or 8)" in err and "UserWarning" not in err and "SALib" not in err
    from agglo.views.plots import _title, pick_scenario

    ds = agglo.open_results(str(tmp_path / "s.zarr"))
    title = _title(pick_scenario(ds, {"sample": "3"}), ds)  # a map names the sample by its values
    cap = float(ds["commute.cap_min"].values[3])
    assert title.startswith("sample 3: ") and f"commute.cap_min = {cap:.4g}" in title and "freight.beta = " in title


def test_an_analysis_group_opens_with_xarray_as_the_readme_says(tmp_path, run_cli):
    store = tmp_path / "c.zarr"
    assert run_cli("run", *SMALL, "commute.cap_min=30,60,90", f"store.path={store}", "--quiet")[0] == 0
    assert run_cli("analyze", str(store))[0] == 0
    stability = xr.open_zarr(store, group="analysis/stability")
    assert "modal_core" in stability
    assert agglo.analyses(str(store)) == ["sensitivity", "stability"]
    assert agglo.open_analysis(str(store), "stability").equals(stability.load())


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readmes_python_runs_as_written(tmp_path):
    """Every ```python block of the README, in order, in one interpreter, in a fresh folder."""
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README shows the Python API"
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks))
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
