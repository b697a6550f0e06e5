import os

import pytest

# Tests run the real CLI in-process and in subprocesses; keep Hydra from writing outputs/.
os.environ.setdefault("HYDRA_FULL_ERROR", "0")


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
