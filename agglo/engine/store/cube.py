"""The result cube in Zarr: template first, then one region per batch, then its mark.

Layout (docs/model.md, "Per-scenario results"): variables named by docs/model.md, scenario
dimensions first, then ``mode`` and ``town``. The group ``progress`` beside the
variables holds ``batch_done``: a batch is marked only after its data is written, so
a run killed at any moment resumes with exactly the batches that are missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from agglo.engine.data.towns import Towns
from agglo.engine.errors import UserError
from agglo.engine.planning.plan import Plan
from agglo.engine.store import integrity, lease
from agglo.engine.store.layout import VARIABLES, template_nodes, write_node
from agglo.engine.store.outputs import check_folder, probe_folder

if TYPE_CHECKING:  # xarray (and pandas) load only where a cube is read, not on a run's way to its first batch
    pass

# 2: ipf_iterations and ipf_error (flow models); 3: per-batch checksums; 4: the template's
# record and every chunk of a written batch stored (see engine/store/integrity.py)
FORMAT = "agglo-cube-4"
READABLE = ("agglo-cube-1", "agglo-cube-2", "agglo-cube-3", FORMAT)

# Consolidated metadata is what lets xr.open_zarr open a cube in one read; zarr warns
# that it is not yet part of the v3 spec. We know, and keep it.
warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)


def local_path(path: str) -> str:
    """``file://`` URLs become plain paths (zarr's local store creates folders as it writes)."""
    text = str(path)
    return text[len("file://") :] if text.startswith("file://") else text


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def exists(path: str) -> bool:
    if _is_remote(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(path)
        return fs.exists(root)
    return Path(path).exists()


def remove(path: str) -> None:
    if _is_remote(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(path)
        fs.rm(root, recursive=True)
    else:
        shutil.rmtree(path)


def check_location(path: str) -> None:
    """A local store's place accepts files: inside the store if it exists, else in the
    folder it would be made in (before any work; see :mod:`agglo.engine.store.outputs`)."""
    if _is_remote(path):
        return
    what = f"store.path = {str(path)!r}"
    if Path(path).exists():
        if not Path(path).is_dir():
            raise UserError(f"{what} is a file; allowed: a folder for the cube (a new path or an agglo cube)")
        probe_folder(what, str(path))
    else:
        check_folder(f"{what}: its folder", str(Path(path).parent))


def cube_path(path: str) -> str:
    """The local form of ``path`` (see :func:`local_path`), which must hold an agglo cube."""
    path = local_path(path)
    if not exists(path):
        raise UserError(f"{path}: no such store; allowed: the path of a cube written by 'agglo run'")
    if read_attrs(path) is None:
        raise UserError(f"{path}: not an agglo result cube; allowed: a store written by 'agglo run'")
    return path


def read_attrs(path: str) -> dict | None:
    """The root attributes of an agglo cube, or None when ``path`` is not one."""
    try:
        group = zarr.open_group(path, mode="r")
    except Exception:  # noqa: BLE001 - anything that is not a zarr group is "not a cube"
        return None
    attrs = dict(group.attrs)
    return attrs if attrs.get("format") in READABLE else None


CHECKSUM_TEXT = (
    "batch_sha256[b, v]: SHA-256 of variable v's values in batch b's region, as stored "
    "(little-endian, C order), written before batch_done[b]; variables in the order of 'variables'"
)


def _progress_arrays(root, n_batches: int) -> None:
    if "progress" in root:
        progress = root["progress"]
    else:
        progress = root.create_group("progress", attributes={"description": "batch_done[b]: batch b is written"})
    progress.create_array("batch_done", shape=(n_batches,), chunks=(1,), dtype=bool, fill_value=False, overwrite=True)
    progress.create_array(
        "batch_sha256",
        shape=(n_batches, len(VARIABLES), 32),
        chunks=(1, len(VARIABLES), 32),
        dtype=np.uint8,
        fill_value=0,
        overwrite=True,
        attributes={"description": CHECKSUM_TEXT, "variables": list(VARIABLES)},
    )


def _write_template(path: str, plan: Plan, towns: Towns, attrs: dict) -> None:
    root = zarr.open_group(path, mode="w-", zarr_format=3, attributes=attrs | {"format": FORMAT})
    coords, variables = template_nodes(plan, towns)
    for name in [*coords, *variables]:
        write_node(root, name, coords, variables)
    _progress_arrays(root, plan.n_batches)
    root.attrs[integrity.RECORD] = integrity.record(root, list(coords), list(variables))
    zarr.consolidate_metadata(path)  # last: a store with consolidated metadata has its whole template


def rebuild(path: str, plan: Plan, towns: Towns, names: list[str]) -> None:
    """Write the template arrays ``names`` again, as the template wrote them: coordinates
    with their values, variables empty (their batches then lack chunks, and are recomputed)."""
    coords, variables = template_nodes(plan, towns)
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    for name in names:
        if _is_remote(path):
            if name in root:
                del root[name]
        else:
            shutil.rmtree(Path(path) / name, ignore_errors=True)
        write_node(root, name, coords, variables)
    zarr.consolidate_metadata(path)


def _digest(values: np.ndarray, dtype) -> np.ndarray:
    data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return np.frombuffer(hashlib.sha256(data.tobytes()).digest(), dtype=np.uint8)


def _aside(path: str, what: str) -> Path:
    final = Path(path)
    return final.parent / f".{final.name}.{what}"


def create(path: str, plan: Plan, towns: Towns, attrs: dict) -> None:
    """Write the template (metadata and coordinates only) and an all-false ``batch_done``,
    replacing whatever is at ``path`` (the caller has decided that it may).

    The nodes are what xarray writes for ``template`` (the tests compare every file), made
    with zarr alone: xarray would import dask.array on a run's way to its first batch.
    A local template is written aside (``.NAME.partial`` next to it) and renamed into place,
    so that an interrupted setup leaves either no store or a whole template, and a replaced
    store goes only once the new one is whole. An object store has no rename: there the
    consolidated metadata, written last, marks a whole template (see :func:`state`).
    """
    if _is_remote(path):
        if exists(path):
            remove(path)
        _write_template(path, plan, towns, attrs)
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial, old = _aside(path, "partial"), _aside(path, "old")
    for leftover in (partial, old):  # an earlier setup that was stopped (they are only ever ours)
        if leftover.exists():
            shutil.rmtree(leftover)
    _write_template(str(partial), plan, towns, attrs)
    if final.exists():
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old)
    else:
        partial.rename(final)


def reset_progress(path: str, n_batches: int) -> None:
    """A new all-false progress record in a cube that lost its own (every batch is redone)."""
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    _progress_arrays(root, n_batches)
    zarr.consolidate_metadata(path)


def state(path: str) -> str:
    """What is at ``path``: 'absent', 'foreign' (not an agglo cube), 'unfinished' (a template
    whose setup was stopped: no consolidated metadata yet, so no batch can have been
    written), 'no-progress' (a cube whose progress record is missing), or 'cube'."""
    if not exists(path):
        return "absent"
    attrs = read_attrs(path)
    if attrs is None:
        return "foreign"
    try:
        zarr.open_group(path, mode="r", use_consolidated=True)
    except (ValueError, KeyError, FileNotFoundError):
        return "unfinished"
    try:
        zarr.open_array(path, path="progress/batch_done", mode="r")
    except Exception:  # noqa: BLE001 - any failure to open it: the record is not there
        return "no-progress"
    return "cube"


def write_batch(path: str, plan: Plan, batch: int, arrays: dict, lease_token: str | None = None) -> None:
    """Write one batch's region of every variable, then mark the batch done, each only
    while the run still holds the store's writer lease (``lease_token``; see engine/store/lease.py)."""
    lease.check(path, lease_token, f"batch {batch} was not written")
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    region = plan.region(batch)
    shape = tuple(r.stop - r.start for r in region)
    sums = np.zeros((len(VARIABLES), 32), dtype=np.uint8)
    for v, (name, (dtype, *_)) in enumerate(VARIABLES.items()):
        data = arrays[name]
        data = np.asarray(data, dtype=dtype).reshape(shape + data.shape[1:])
        # every chunk stored, fill values too: a missing chunk is damage, never a fill value
        root[name].with_config({"write_empty_chunks": True})[region] = data
        sums[v] = _digest(data, dtype)
    root["progress/batch_sha256"][batch] = sums
    lease.check(path, lease_token, f"batch {batch} was written but not marked done")
    root["progress/batch_done"][batch] = True


def unmark(path: str, batches: list[int]) -> None:
    """Batches to be written again: not done until they are."""
    done = zarr.open_array(path, path="progress/batch_done", mode="r+")
    for b in batches:
        done[b] = False


def stored_config(attrs: dict) -> dict:
    return json.loads(attrs["result_config"])


def require_new(path: str) -> None:
    if exists(path):
        raise UserError(
            f"store.path = {path!r} exists and store.mode=fail; allowed: a new path, or store.mode=resume|overwrite"
        )
