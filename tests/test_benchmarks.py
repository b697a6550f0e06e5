"""Smoke test: the benchmark script runs on a small case, so it cannot rot."""

import pytest

from benchmarks.bench_kernels import main, run_case


def test_benchmark_smoke(capsys):
    r = run_case("synthetic", batch=4, repeat=1, max_rows=2000, check=True)
    assert r["one_ms"] > 0 and r["ref_ms"] > 0 and r["pairs"] > 0
    assert main(["--cases", "synthetic", "--batch", "2", "--repeat", "1", "--model-batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "flow models" in out
    for model in ("attraction", "doubly", "radiation"):
        assert f"synthetic  {model}" in out, out


def test_sweep_benchmark_smoke(capsys):
    from benchmarks.bench_sweep import main as sweep_main

    assert sweep_main(["--experiment", "synthetic", "--grid", "commute.cap_min=30,60", "--kinds", "synchronous"]) == 0
    assert "scenarios/s" in capsys.readouterr().out


@pytest.mark.slow  # keeps the default run under 10 minutes on 2 cores from a cold cache
def test_scale_benchmark_smoke(capsys):
    from benchmarks.bench_scale import main as scale_main

    assert scale_main(["--cases", "synthetic,first-batch-synthetic"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "of budget" in out
    assert "first-batch-synthetic: launch to first batch" in out and "met" in out


@pytest.mark.distributed
@pytest.mark.slow  # keeps the default run under 10 minutes on 2 cores from a cold cache
def test_executors_benchmark_smoke(capsys):
    from benchmarks.bench_executors import main as executors_main

    executors_main(["--sweeps", "synthetic", "--shapes", "2x1"])  # its targets are for the real sweeps
    out = capsys.readouterr().out
    for row in ("synchronous warm", "default (auto) warm", "local 2x1 warm", "address 2x1 warm"):
        assert row in out, out


@pytest.mark.browser
@pytest.mark.slow  # keeps the default run under 10 minutes on 2 cores from a cold cache
def test_explore_benchmark_smoke(capsys, tmp_path):
    from benchmarks import headless
    from benchmarks.bench_explore import main as explore_main

    if headless.missing():
        pytest.skip(headless.missing())
    assert explore_main(["--cases", "synthetic", "--keep", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic: page" in out and "console errors 0" in out


@pytest.mark.slow
def test_gpu_benchmark_smoke():
    """Without a GPU (the simulator off) it measures the CPU side and says what it cannot."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    cmd = [sys.executable, "benchmarks/bench_gpu.py", "--scenarios", "2", "--no-process"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "ms a scenario" in done.stdout
    assert "no GPU here" in done.stdout or "ratio: kernels" in done.stdout, done.stdout


@pytest.mark.slow
def test_traveltimes_benchmark_smoke(capsys):
    from benchmarks.bench_traveltimes import main as times_main

    assert times_main(["--quick"]) == 0
    out = capsys.readouterr().out
    for row in ("| build-km |", "| build-table |", "| build-asymmetric |", "whole agglo run"):
        assert row in out, out
