"""Limits a run meets before and during its longest step: a neighbourhood that cannot fit
is refused before any work, and Ctrl-C or SIGTERM stops a long build at once."""

import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo.engine.data.towns import synthetic
from agglo.engine.network.build import BYTES_PER_PAIR, PAIRS_PER_BOUND, check_size
from agglo.kernels import build_neighbourhood, cell_pair_bound
from tests.real_towns import mexico_geonames, oaxaca_geonames
from tests.strategies import town_tables


@settings(max_examples=80, deadline=None)
@given(towns=town_tables(max_towns=60), radius=st.floats(0.0, 3000.0))
def test_the_cell_bound_is_never_below_the_pairs(towns, radius):
    _, neighbour, _ = build_neighbourhood(towns.lat, towns.lon, radius)
    assert cell_pair_bound(towns.lat, towns.lon, radius) >= neighbour.size


@pytest.mark.parametrize(
    "towns, radius",
    [
        (oaxaca_geonames, 30.0),
        (oaxaca_geonames, 150.0),
        (mexico_geonames, 60.0),
        (mexico_geonames, 250.0),
        (lambda: synthetic(20000, 0), 40.0),
        (lambda: synthetic(20000, 0), 120.0),
    ],
    ids=["oaxaca-30", "oaxaca-150", "mexico-60", "mexico-250", "synthetic-40", "synthetic-120"],
)
def test_the_size_estimate_stays_below_the_pairs_of_real_towns(towns, radius):
    """The check refuses only what surely does not fit: its estimate is below the true count."""
    towns = towns()
    _, neighbour, _ = build_neighbourhood(towns.lat, towns.lon, radius)
    estimate = PAIRS_PER_BOUND * cell_pair_bound(towns.lat, towns.lon, radius)
    assert estimate <= neighbour.size
    check_size(towns, radius, available=neighbour.size * BYTES_PER_PAIR)  # what it takes fits: no refusal
    with pytest.raises(Exception, match="would hold at least .* allowed: smaller caps"):
        check_size(towns, radius, available=int(estimate * BYTES_PER_PAIR * 0.9))


def _agglo(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_network_that_cannot_fit_is_refused_before_any_work(tmp_path):
    store = tmp_path / "big.zarr"
    started = time.perf_counter()
    proc = _agglo(
        "executor.kind=synchronous", "data.source=synthetic", "data.n=200000", "cores.ids=[]", f"store.path={store}"
    )
    _, err = proc.communicate(timeout=120)
    took = time.perf_counter() - started
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "would hold at least" in err and "GiB available" in err and "data.admin1" in err
    assert took < 5.0, took
    assert not store.exists() and not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM, signal.SIGTERM]],
    ids=["SIGINT", "SIGINT-twice", "SIGTERM-twice"],
)
def test_signals_stop_a_long_build_at_once(signals, tmp_path):
    """A build of about 100 M pairs (several seconds of compiled code): the signal is heard
    inside it, and the process ends within two seconds of the last one, in one line."""
    store = tmp_path / "s.zarr"
    env = dict(os.environ, AGGLO_NETWORK_CACHE_DIR=str(tmp_path / "cache"))
    args = ["experiment=synthetic", "data.n=20000", "executor.kind=synchronous", "freight.cap_min=400"]
    proc = _agglo(*args, f"store.path={store}", env=env)
    line = proc.stderr.readline()
    assert "building the neighbourhood" in line, line
    time.sleep(1.0)  # well inside the build
    for sig in signals:
        proc.send_signal(sig)
        last = time.perf_counter()
        time.sleep(0.3)
    err = proc.stderr.read()
    proc.wait(timeout=30)
    assert time.perf_counter() - last < 2.0
    assert proc.returncode == 128 + int(signals[-1]), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("terminated" if signals[-1] == signal.SIGTERM else "interrupted") in err


def test_the_estimate_names_what_it_saw():
    towns = synthetic(2000, 0)
    with pytest.raises(Exception) as refused:
        check_size(towns, {"commute": 50.0, "freight": 300.0}, available=1)
    text = str(refused.value)
    assert "2000 towns within 300 km" in text and "\n" not in text
