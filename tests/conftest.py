import os

import pytest

# Tests run the real CLI in-process and in subprocesses; keep Hydra from writing outputs/.
os.environ.setdefault("HYDRA_FULL_ERROR", "0")
# The CUDA front's tests run its kernels in Numba's CUDA simulator (set to 0 on a GPU machine).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture
def run_cli(capsys):
    """Call ``agglo`` in-process; return (exit code, stdout, stderr)."""
    from agglo.tools.cli import main

    def call(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


SMALL = ["experiment=synthetic", "data.n=150", "executor.kind=synchronous", "cores.min_population=5000"]


def cube_arrays(path) -> dict:
    """Every result variable of the cube at ``path`` (store.VARIABLES), read whole."""
    import xarray as xr

    from agglo.engine.store import VARIABLES

    ds = xr.open_zarr(path)
    return {name: ds[name].values for name in VARIABLES}
