"""The result cube: docs/model.md's names, dims and attributes; sweeps; determinism across executors."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from agglo import open_results
from agglo.engine.store.layout import VARIABLES
from tests.conftest import SMALL, cube_arrays


def test_cube_names_dims_attrs(tmp_path, run_cli):
    store = tmp_path / "cube.zarr"
    code, out, err = run_cli(
        "run",
        *SMALL,
        "commute.cap_min=30,60,90",
        "commute.beta=range(1.5,3.0,0.5)",
        "borders=choice(open,closed)",
        f"store.path={store}",
    )
    assert code == 0, err
    ds = xr.open_zarr(store)
    assert set(VARIABLES) <= set(ds.data_vars)
    dims = ("commute.cap_min", "commute.beta", "borders")
    assert ds.core.dims == dims + ("mode", "town")
    assert ds.coverage.dims == dims + ("mode",)
    assert ds["commute.beta"].values.tolist() == [1.5, 2.0, 2.5]
    assert ds["borders"].values.tolist() == ["open", "closed"]
    assert ds.mode.values.tolist() == ["commute", "freight"]
    for coord in ("town_id", "name", "lat", "lon", "population", "region"):
        assert ds[coord].dims == ("town",)
    for name, (dtype, *_rest) in VARIABLES.items():
        assert ds[name].dtype == dtype, name
        assert ds[name].attrs["units"] and ds[name].attrs["description"], name
    assert len(ds.attrs["input_sha256"]) == 64 and ds.attrs["engine_version"]
    assert "cap_min" in ds.attrs["config"]
    # The table answers the study's question per scenario and mode.
    assert out.count("commute") >= 18 and "coverage" in out
    # A scenario selected by parameter value equals a single run with that value.
    single = tmp_path / "single.zarr"
    code, _, err = run_cli(
        "run", *SMALL, "commute.cap_min=60", "commute.beta=2.0", "borders=closed", f"store.path={single}"
    )
    assert code == 0, err
    one = open_results(single)
    picked = open_results(store).sel({"commute.cap_min": 60.0, "commute.beta": 2.0, "borders": "closed"})
    for name in VARIABLES:
        np.testing.assert_array_equal(picked[name].values, one[name].values)


def test_same_config_same_cube_whatever_batch_and_executor(tmp_path, run_cli):
    sweep = ["commute.cap_min=20,45,60,90,120", "freight.cap_min=120,240,360", "borders=open,closed"]
    cubes = {}
    for label, extra in {
        "sync-1": ["executor.batch_size=1"],
        "sync-7": ["executor.batch_size=7"],
        "local-2x1": [
            "executor.kind=local",
            "executor.n_workers=2",
            "executor.threads_per_worker=1",
            "executor.batch_size=4",
            "executor.compute_while_starting=false",  # every batch on the workers
        ],
        "local-1x2": [
            "executor.kind=local",
            "executor.n_workers=1",
            "executor.threads_per_worker=2",
            "executor.batch_size=16",
        ],
    }.items():
        store = tmp_path / f"{label}.zarr"
        code, _, err = run_cli("run", *SMALL, *sweep, *extra, f"store.path={store}", "--quiet")
        assert code == 0, err
        cubes[label] = cube_arrays(store)
    ref = cubes.pop("sync-1")
    for label, cube in cubes.items():
        for name in VARIABLES:
            assert np.array_equal(cube[name], ref[name], equal_nan=True), (label, name)


def test_sobol_sample_equals_salib(tmp_path, run_cli):
    from SALib.sample import sobol

    store = tmp_path / "sobol.zarr"
    code, _, err = run_cli(
        "run",
        *SMALL,
        "sweep.grid={}",
        "sweep.sampler=sobol",
        "sweep.n=8",
        "sweep.seed=3",
        "sweep.bounds={commute.cap_min:[20,90],freight.beta:[0.5,2.0]}",
        f"store.path={store}",
        "--quiet",
    )
    assert code == 0, err
    ds = open_results(store)
    problem = {"num_vars": 2, "names": ["commute.cap_min", "freight.beta"], "bounds": [[20, 90], [0.5, 2.0]]}
    want = sobol.sample(problem, 8, calc_second_order=True, seed=3)
    assert ds.coverage.dims == ("sample", "mode")
    np.testing.assert_array_equal(ds["commute.cap_min"].values, want[:, 0])
    np.testing.assert_array_equal(ds["freight.beta"].values, want[:, 1])


def test_config_and_info_commands(tmp_path, run_cli):
    code, out, _ = run_cli("config", "experiment=oaxaca", "commute.cap_min=45")
    assert code == 0 and "cap_min: 45" in out and "country: MX" in out and "3522507" in out
    store = tmp_path / "cube.zarr"
    assert run_cli("run", *SMALL, f"store.path={store}", "--quiet")[0] == 0
    code, out, _ = run_cli("info", str(store))
    assert code == 0 and "batches written: 1/1" in out and "mode" in out
    code, _, err = run_cli("info", str(tmp_path / "nothing.zarr"))
    assert code == 2 and "no such store" in err


@pytest.mark.parametrize("experiment", ["oaxaca", "synthetic", "mexico"])
def test_experiments_compose(experiment, run_cli):
    code, out, err = run_cli("config", f"experiment={experiment}")
    assert code == 0, err


def test_store_path_as_file_url(tmp_path, run_cli):
    url = f"file://{tmp_path / 'url.zarr'}"
    code, _, err = run_cli("run", *SMALL, "commute.cap_min=30,60", f"store.path={url}", "--quiet")
    assert code == 0, err
    assert (tmp_path / "url.zarr" / "zarr.json").exists()
    assert run_cli("info", url)[0] == 0


def test_cube_of_an_older_format_is_read_but_never_resumed(tmp_path, run_cli):
    import zarr

    store = str(tmp_path / "old.zarr")
    assert run_cli("run", *SMALL, "commute.cap_min=30,60", f"store.path={store}", "--quiet")[0] == 0
    group = zarr.open_group(store, mode="r+")
    group.attrs["format"] = "agglo-cube-1"
    zarr.consolidate_metadata(store)
    assert open_results(store).sizes["commute.cap_min"] == 2  # still readable
    code, _, err = run_cli("run", *SMALL, "commute.cap_min=30,60", f"store.path={store}", "--quiet")
    assert code == 2 and "older engine" in err and err.count("\n") == 1
    assert zarr.open_group(store, mode="r").attrs["format"] == "agglo-cube-1"  # untouched
    code, _, err = run_cli(
        "run", *SMALL, "commute.cap_min=30,60", f"store.path={store}", "store.mode=overwrite", "--quiet"
    )
    assert code == 0, err


def consolidated_names(root: dict) -> list[str]:
    return list(root["consolidated_metadata"]["metadata"])


@pytest.mark.parametrize(
    "sweep",
    [
        ["sweep.grid={commute.cap_min:[30,60],freight.beta:[1.0,1.5,2.0]}", "executor.batch_size=4"],
        [
            "sweep.grid={}",
            "sweep.sampler=sobol",
            "sweep.n=4",
            "sweep.bounds={commute.cap_min:[20,90],freight.beta:[0.5,2.0]}",
        ],
        ["sweep.grid={}", "sweep.table=TABLE"],
    ],
    ids=["grid", "sample", "table"],
)
def test_template_has_xarrays_metadata_without_dask(sweep, tmp_path):
    """``store.create`` writes the variables with zarr alone; every node's zarr.json and every
    coordinate chunk must be what xarray writes for the full lazy Dataset (``layout.template``)."""
    import json
    from pathlib import Path

    from agglo.engine.config.compose import resolve
    from agglo.engine.data.load import load_towns
    from agglo.engine.planning.plan import make_plan
    from agglo.engine.planning.scenario_file import table_values
    from agglo.engine.store import cube as store
    from agglo.engine.store import integrity, layout

    table = tmp_path / "scenarios.csv"
    table.write_text("commute.cap_min,borders\n30,open\n60,closed\n45,open\n")
    cfg, omega = resolve([*SMALL, *(s.replace("TABLE", str(table)) for s in sweep)])
    towns = load_towns(cfg)
    plan = make_plan(omega, cfg.executor.batch_size, table_values(omega) if cfg.sweep.table else None)
    attrs = {"title": "t", "plan_chunks": json.dumps(list(plan.chunks))}
    new, old = tmp_path / "new.zarr", tmp_path / "old.zarr"
    store.create(str(new), plan, towns, attrs)
    layout.template(plan, towns, attrs | {"format": store.FORMAT}).to_zarr(
        old, mode="w-", compute=False, zarr_format=3, consolidated=False
    )
    files = sorted(p.relative_to(new) for p in Path(new).rglob("*") if p.is_file())
    old_files = sorted(p.relative_to(old) for p in Path(old).rglob("*") if p.is_file())
    data_files = [f for f in files if f.parts[0] != "progress" and f.name != "zarr.json"]
    assert [f for f in files if f.parts[0] != "progress" and f.parts != ("zarr.json",)] == [
        f for f in old_files if f.parts != ("zarr.json",)
    ]
    assert data_files, "the coordinates' chunks are written"
    for f in old_files:
        if f.name == "zarr.json" and f.parts != ("zarr.json",):
            assert json.loads((new / f).read_text()) == json.loads((old / f).read_text()), f
        elif f.name != "zarr.json":
            assert (new / f).read_bytes() == (old / f).read_bytes(), f
    root_new = json.loads((new / "zarr.json").read_text())
    root_old = json.loads((old / "zarr.json").read_text())
    recorded = root_new["attributes"].pop(integrity.RECORD)  # what format 4 adds (engine/store/integrity.py)
    assert set(recorded) == set(consolidated_names(root_new)) - {
        "progress",
        "progress/batch_done",
        "progress/batch_sha256",
    }
    assert root_new["attributes"] == root_old["attributes"]
    consolidated = root_new["consolidated_metadata"]["metadata"]
    for name in layout.VARIABLES:
        assert consolidated[name] == json.loads((old / name / "zarr.json").read_text())


def test_a_spilled_network_maps_back_to_the_same_arrays_and_results(tmp_path):
    """The local cluster's workers map the network from .npy files instead of receiving a
    pickled copy: every array equal, modes that share rows still share them, the same cube."""
    from agglo.engine.compute.batch import compute_batch
    from agglo.engine.data.towns import synthetic
    from agglo.engine.network.build import prepare
    from agglo.engine.network.files import mapped, spill
    from agglo.engine.planning.scenarios import batch_parameters, reach_radii
    from tests.strategies import DEFAULT_COMMUTE, DEFAULT_FREIGHT, make_config

    towns = synthetic(400, 3)
    for freight_cap in (240.0, 70.0):  # rows of their own, then one Rows object for both modes
        cfg = make_config(dict(DEFAULT_COMMUTE), dict(DEFAULT_FREIGHT, cap_min=freight_cap), core_min=20000.0)
        params = batch_parameters(cfg, {"commute.beta": np.linspace(1.0, 2.5, 4)}, 4)
        network = prepare(towns, towns.core, reach_radii(params), core_floor=20000.0)
        folder = tmp_path / f"net{int(freight_cap)}"
        folder.mkdir()
        got = mapped(spill(network, str(folder)))
        assert (got.rows["commute"] is got.rows["freight"]) == (network.rows["commute"] is network.rows["freight"])
        for mode in ("commute", "freight"):
            for name, value in network.rows[mode]._asdict().items():
                assert np.array_equal(getattr(got.rows[mode], name), value), (mode, name)
        for name, value in network.places._asdict().items():
            assert np.array_equal(getattr(got.places, name), value), name
        want, have = compute_batch(network, params), compute_batch(got, params)
        for name in want:
            assert np.array_equal(want[name], have[name], equal_nan=True), name


def test_the_local_cluster_removes_its_spilled_network(tmp_path, run_cli, monkeypatch):
    import tempfile

    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))
    import agglo.engine.executors.dask as dask_executor

    folders = []

    def recorded(network, folder):  # the real copy, its folder noted
        folders.append(folder)
        return copy(network, folder)

    copy = dask_executor._copy_for_workers
    monkeypatch.setattr(dask_executor, "_copy_for_workers", recorded)
    store = tmp_path / "local.zarr"
    sweep = ["commute.cap_min=30,60", "executor.kind=local", "executor.n_workers=2", "executor.batch_size=1"]
    sweep.append("executor.compute_while_starting=false")  # every batch on the workers
    no_cache = "executor.network_cache_gib=0"  # with the cache, the workers map its entry instead
    code, _, err = run_cli("run", *SMALL, *sweep, no_cache, f"store.path={store}", "--quiet")
    assert code == 0, err
    assert len(folders) == 1 and Path(folders[0]).parent == spill_root  # the workers mapped it
    assert not Path(folders[0]).exists()  # and it is gone
    assert not [p for p in spill_root.iterdir() if p.name.startswith("agglo-network-")]


def test_auto_starts_the_cluster_only_once_the_sweep_pays_for_it(tmp_path, run_cli, monkeypatch):
    import agglo.engine.executors.dask as dask_executor

    started, handed = [], []

    class Recorded(dask_executor.LocalStart):  # the real cluster, its start noted and waited for
        def __init__(self, cfg):
            started.append(cfg)
            super().__init__(cfg)
            self._thread.join()  # up before the driver's next batch: this sweep is milliseconds

    def sweep(client, network, job, batches, *args):  # the real sweep, its batches noted
        handed.append(list(batches))
        return real_sweep(client, network, job, batches, *args)

    real_sweep = dask_executor._sweep
    monkeypatch.setattr(dask_executor, "LocalStart", Recorded)
    monkeypatch.setattr(dask_executor, "_sweep", sweep)
    args = [*SMALL, "executor.kind=auto", "executor.n_workers=2", "executor.batch_size=2"]
    args += ["commute.cap_min=20,45,60,90,120", "freight.cap_min=120,240,360", "--quiet"]
    # a sweep of milliseconds: the driver alone, no cluster started
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'alone.zarr'}")
    assert code == 0, err
    assert started == [] and handed == []
    # a sweep the pace says pays for a cluster (threshold and hand-over made tiny): started, handed work
    monkeypatch.setattr(dask_executor, "HANDOFF_S", 0.0)
    joined = tmp_path / "joined.zarr"
    code, _, err = run_cli("run", *args, "executor.cluster_pays_s=1e-9", f"store.path={joined}")
    assert code == 0, err
    assert len(started) == 1 and len(handed) == 1 and handed[0] and 0 not in handed[0]  # the driver did the first
    alone, both = cube_arrays(tmp_path / "alone.zarr"), cube_arrays(joined)
    for name in VARIABLES:
        assert np.array_equal(both[name], alone[name], equal_nan=True), name
