"""Damage to a finished cube is never read as data: the corruption matrix.

For each data variable and each coordinate, six kinds of damage (folder deleted, one chunk
deleted, a chunk truncated, a chunk replaced by another's, metadata replaced by garbage,
values edited behind agglo's back), and every command that reads a cube: each ends in a
one-line refusal (exit 2; `verify` lists the damage and exits 1) or, for `agglo run`, a
repair whose cube equals a clean run bit for bit. Never a traceback, never a wrong number.
The default run covers two targets (a per-town variable, a swept key's coordinate);
the others run with -m slow.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from agglo.engine.errors import UserError
from agglo.engine.store.layout import VARIABLES
from tests.conftest import SMALL, cube_arrays

SWEEP = [*SMALL, "commute.cap_min=30,45,60,90", "freight.cap_min=120,240", "executor.batch_size=2"]
COORDINATES = ["lat", "lon", "name", "town_id", "population", "region", "mode", "town", "commute.cap_min"]
DEFAULT_TARGETS = ["share", "commute.cap_min"]  # a variable and a coordinate (a swept key)
TARGETS = list(VARIABLES) + COORDINATES
DAMAGES = ["folder", "chunk", "truncate", "swap", "metadata", "edit"]
COMMANDS = ["info", "verify", "analyze", "plot", "explore", "open_results", "run"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A finished 4-batch cube and its every array, read whole."""
    from agglo.cli import main

    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    assert main(["run", *SWEEP, f"store.path={path}", "--quiet"]) == 0
    return path


def _chunks(array_folder: Path) -> list[Path]:
    return sorted(p for p in (array_folder / "c").rglob("*") if p.is_file())


def damage(cube: Path, target: str, kind: str) -> None:
    """Damage ``target`` of ``cube`` in the way ``kind`` names (skips the test where that
    damage changes nothing: no chunk to delete, identical bytes to swap in)."""
    folder = cube / target
    chunks = _chunks(folder)
    if kind in ("chunk", "truncate", "swap") and not chunks:
        pytest.skip(f"{target} has no stored chunk (only its fill value)")
    if kind == "folder":
        shutil.rmtree(folder)
    elif kind == "chunk":
        chunks[-1].unlink()
    elif kind == "truncate":
        data = chunks[-1].read_bytes()
        chunks[-1].write_bytes(data[: max(1, len(data) // 2)])
    elif kind == "swap":
        donor = _donor(cube, target, chunks)
        if donor is None or donor.read_bytes() == chunks[-1].read_bytes():
            pytest.skip(f"{target}: no other chunk with other bytes to swap in")
        chunks[-1].write_bytes(donor.read_bytes())
    elif kind == "metadata":
        (folder / "zarr.json").write_text("not json")
    elif kind == "edit":  # a valid chunk, other values, written with zarr as anyone could
        array = zarr.open_array(str(cube), path=target, mode="r+")
        values = array[...]
        if values.dtype.kind in "OUT":
            values = np.asarray([f"{v}x" for v in values.ravel()], dtype=object).reshape(values.shape)
        elif values.dtype.kind == "f":
            values = np.where(np.isnan(values), 0.5, values + 1)
        elif values.dtype.kind == "b":
            values = ~values
        else:
            values = values + 1
        array[...] = values


def _donor(cube: Path, target: str, chunks: list[Path]) -> Path | None:
    """Another batch's chunk of the same variable, or another coordinate's one chunk of
    the same data type and shape."""
    for other in chunks[:-1]:
        if other.read_bytes() != chunks[-1].read_bytes():
            return other
    meta = json.loads((cube / target / "zarr.json").read_text())
    for other in COORDINATES:
        if other == target or not _chunks(cube / other):
            continue
        theirs = json.loads((cube / other / "zarr.json").read_text())
        if (theirs["data_type"], theirs["shape"]) == (meta["data_type"], meta["shape"]):
            return _chunks(cube / other)[0]
    return None


def _one_line(err: str) -> None:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def check_cell(clean: Path, tmp_path: Path, target: str, kind: str, command: str, run_cli) -> None:
    cube = tmp_path / "cube.zarr"
    shutil.copytree(clean, cube)
    damage(cube, target, kind)
    out_dir = tmp_path / "out"
    if command == "open_results":
        from agglo import open_results

        with pytest.raises(UserError) as refused:
            open_results(str(cube))
        assert "agglo run" in str(refused.value) and "\n" not in str(refused.value)
        return
    if command == "run":
        code, _, err = run_cli("run", *SWEEP, f"store.path={cube}", "--quiet")
        assert code == 0, err
        assert "Traceback" not in err, err
        got, want = cube_arrays(cube), cube_arrays(clean)
        for name in VARIABLES:
            assert np.array_equal(got[name], want[name], equal_nan=True), name
        for name in COORDINATES:
            a = zarr.open_array(str(cube), path=name, mode="r")[...]
            b = zarr.open_array(str(clean), path=name, mode="r")[...]
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert run_cli("verify", str(cube))[0] == 0
        return
    args = {
        "info": ["info", str(cube)],
        "verify": ["verify", str(cube)],
        "analyze": ["analyze", str(cube)],
        "plot": ["plot", str(cube), "--out", str(out_dir)],
        "explore": ["explore", str(cube), "--out", str(out_dir / "page.html")],
    }[command]
    code, out, err = run_cli(*args)
    if command == "verify":
        assert code == 1 and "DAMAGED" in out, out + err
        assert "Traceback" not in out + err, out + err
        if target not in VARIABLES or kind in ("folder", "metadata"):
            assert f"{target}:" in out, out
        return
    assert code == 2, out + err
    _one_line(err)
    assert "agglo run" in err, err
    assert not (cube / "analysis").exists(), "a refused analysis writes nothing"
    assert not out_dir.exists() or not any(out_dir.iterdir()), "a refused plot or page writes nothing"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("target", DEFAULT_TARGETS)
def test_damage(clean, tmp_path, target, kind, command, run_cli):
    check_cell(clean, tmp_path, target, kind, command, run_cli)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("target", [t for t in TARGETS if t not in DEFAULT_TARGETS])
def test_damage_every_target(clean, tmp_path, target, kind, command, run_cli):
    check_cell(clean, tmp_path, target, kind, command, run_cli)
