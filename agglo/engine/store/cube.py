"""The result cube in Zarr: template first, then one region per batch, then its mark.

Layout (docs/model.md, "Per-scenario results"): variables named by docs/model.md, scenario
dimensions first, then ``mode`` and ``town``. The group ``progress`` beside the
variables holds ``batch_done``: a batch is marked only after its data is written, so
a run killed at any moment resumes with exactly the batches that are missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from agglo.engine.config.names import MODES
from agglo.engine.data.towns import Towns
from agglo.engine.errors import UserError
from agglo.engine.planning.plan import Plan
from agglo.engine.store import integrity, lease
from agglo.engine.store.outputs import check_folder, probe_folder

if TYPE_CHECKING:  # xarray (and pandas) load only where a cube is read, not on a run's way to its first batch
    import xarray as xr

# 2: ipf_iterations and ipf_error (flow models); 3: per-batch checksums; 4: the template's
# record and every chunk of a written batch stored (see engine/store/integrity.py)
FORMAT = "agglo-cube-4"
READABLE = ("agglo-cube-1", "agglo-cube-2", "agglo-cube-3", FORMAT)

# Consolidated metadata is what lets xr.open_zarr open a cube in one read; zarr warns
# that it is not yet part of the v3 spec. We know, and keep it.
warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)

# fmt: off
VARIABLES = {
    # name: (dtype, per town?, units, description)
    "core": (np.int32, True, "1", "index (along town) of the town's core; itself for a core; -1 for none"),
    "share": (np.float32, True, "1", "share s_ij* of the town's trips to its best reachable core; NaN: no core reachable; 1 for a core"),
    "n_reachable": (np.int32, True, "1", "number of towns reachable within the mode's cap, |R_m(i)|"),
    "inflow": (np.float32, True, "persons", "gravity inflow of trips into the town from the towns that reach it"),
    "agglo_population": (np.float64, True, "persons", "for a core: its population plus its members'; 0 for other towns"),
    "coverage": (np.float64, False, "1", "population of non-core towns in an agglomeration / population of all non-core towns"),
    "n_agglomerations": (np.int32, False, "1", "number of cores with at least one member"),
    "ipf_iterations": (np.int32, False, "1", "doubly-constrained model: balancing iterations used; 0 for other models"),
    "ipf_error": (np.float64, False, "1", "doubly-constrained model: largest relative row or column error when balancing stopped; NaN otherwise"),
}
# fmt: on

MODE_TEXT = {
    "commute": "daily commuting: people travel to the core",
    "freight": "freight: semi-finished goods travel to the core's basic enterprise",
}


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


def _coords(plan: Plan, towns: Towns) -> dict:
    """The cube's coordinates: name -> (dims, values, attributes)."""
    n = len(towns)
    coords: dict = {
        "mode": (
            "mode",
            np.array(MODES, dtype=object),
            {"description": "; ".join(f"{m}: {t}" for m, t in MODE_TEXT.items())},
        ),
        "town": (
            "town",
            np.arange(n, dtype=np.int64),
            {"description": "row of the town table (the index used by 'core')"},
        ),
        "town_id": ("town", towns.town_id, {"description": "unique town key (GeoNames geonameid for GeoNames input)"}),
        "name": ("town", towns.name.astype(object), {"description": "display name"}),
        "lat": ("town", towns.lat, {"units": "degrees_north", "description": "latitude, WGS84"}),
        "lon": ("town", towns.lon, {"units": "degrees_east", "description": "longitude, WGS84"}),
        "population": ("town", towns.population, {"units": "persons", "description": "population"}),
        "region": (
            "town",
            (towns.region if towns.region is not None else np.full(n, "", dtype=object)).astype(object),
            {"description": "first-level division (closed borders act on it)"},
        ),
    }
    if plan.kind == "grid":
        for key in plan.keys:
            values = plan.values[key]
            coords[key] = (key, values, {"description": f"swept configuration key {key}"})
    elif plan.kind in ("sample", "table"):
        dim = plan.dims[0]
        what = f"{plan.sampler['sampler']} sample index" if plan.kind == "sample" else "row of the scenario table"
        coords[dim] = (dim, np.arange(plan.shape[0], dtype=np.int64), {"description": what})
        for key in plan.keys:
            coords[key] = (dim, plan.values[key], {"description": f"configuration key {key} per {dim}"})
    return coords


def _variables(plan: Plan, n: int):
    """Each result variable: name, dtype, dims, shape, chunks, units, description."""
    for name, (dtype, per_town, units, text) in VARIABLES.items():
        tail = ("mode", "town") if per_town else ("mode",)
        sizes = (len(MODES), n) if per_town else (len(MODES),)
        yield name, dtype, plan.dims + tail, plan.shape + sizes, plan.chunks + sizes, units, text


def template(plan: Plan, towns: Towns, attrs: dict) -> xr.Dataset:
    """The cube as xarray would write it: every variable, coordinate and attribute, lazy data.

    ``create`` writes the same metadata without building this (dask is not on a run's path);
    the tests hold the two to the same ``zarr.json`` files.
    """
    import dask.array as da
    import xarray as xr

    data_vars = {
        name: (dims, da.zeros(shape, chunks=chunks, dtype=dtype), {"units": units, "description": text})
        for name, dtype, dims, shape, chunks, units, text in _variables(plan, len(towns))
    }
    return xr.Dataset(data_vars, coords=_coords(plan, towns), attrs=attrs)


# xarray's CF encoding of a NaN fill value, as it stores it in a float variable's attributes
_NAN_FILL = base64.standard_b64encode(np.float64(np.nan).tobytes()).decode()


def write_array(root, name: str, values_or_shape, dims: tuple, attrs: dict, chunks: tuple | None = None) -> None:
    """One array as xarray writes it: strings as zarr ``string``, NaN fill and a CF
    ``_FillValue`` for floats, 0 for integers; coordinates in one chunk."""
    if isinstance(values_or_shape, np.ndarray):
        values = values_or_shape
        if values.dtype.kind in "OUT":
            values = values.astype(str)
        shape, dtype = values.shape, values.dtype
    else:
        values, (shape, dtype) = None, values_or_shape
    floating = np.issubdtype(dtype, np.floating)
    if floating:
        attrs = attrs | {"_FillValue": _NAN_FILL}
    if dtype.kind == "U":
        dtype, fill = str, ""
    else:
        fill = np.nan if floating else 0
    array = root.create_array(
        name,
        shape=shape,
        chunks=chunks or shape,
        dtype=dtype,
        fill_value=fill,
        dimension_names=dims,
        attributes=attrs,
    )
    if values is not None:
        array[...] = values


def template_nodes(plan: Plan, towns: Towns) -> tuple[dict, dict]:
    """The template's arrays, as written: coordinates name -> (dims, values, attributes)
    and variables name -> (dtype, dims, shape, chunks, attributes)."""
    coords = {}
    non_index = {}
    for name, (dims, values, var_attrs) in _coords(plan, towns).items():
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        coords[name] = (dims, np.asarray(values), var_attrs)
        if dims != (name,):
            non_index[name] = set(dims)
    variables = {}
    for name, dtype, dims, shape, chunks, units, text in _variables(plan, len(towns)):
        var_attrs = {"units": units, "description": text}
        linked = sorted(c for c, c_dims in non_index.items() if c_dims <= set(dims))
        if linked:
            var_attrs["coordinates"] = " ".join(linked)
        variables[name] = (np.dtype(dtype), dims, shape, chunks, var_attrs)
    return coords, variables


def _write_node(root, name: str, coords: dict, variables: dict) -> None:
    if name in coords:
        dims, values, var_attrs = coords[name]
        write_array(root, name, values, dims, var_attrs)
    else:
        dtype, dims, shape, chunks, var_attrs = variables[name]
        write_array(root, name, (shape, dtype), dims, var_attrs, chunks)


def _write_template(path: str, plan: Plan, towns: Towns, attrs: dict) -> None:
    root = zarr.open_group(path, mode="w-", zarr_format=3, attributes=attrs | {"format": FORMAT})
    coords, variables = template_nodes(plan, towns)
    for name in [*coords, *variables]:
        _write_node(root, name, coords, variables)
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
        _write_node(root, name, coords, variables)
    zarr.consolidate_metadata(path)


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


def damaged_batches(path: str, plan: Plan, done: np.ndarray, skip: set | frozenset = frozenset()) -> list[int]:
    """The batches marked done whose stored values no longer match their checksums (or
    cannot be read at all: a truncated or corrupted chunk), or, in a cube of format 4,
    whose chunks are not all there; variables in ``skip`` (damaged templates, which
    :func:`damage` names on their own) are not read."""
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    if "batch_sha256" not in root["progress"]:
        return []  # an older cube: nothing to check against (see has_checksums)
    sums = root["progress/batch_sha256"][...]
    names = [(v, name, dtype) for v, (name, (dtype, *_)) in enumerate(VARIABLES.items()) if name not in skip]
    arrays = {name: root[name] for _, name, _ in names}
    bad = set(missing_chunks(path, plan, done, skip))
    for b in np.flatnonzero(done):
        if int(b) in bad:
            continue
        region = plan.region(int(b))
        try:
            ok = all(np.array_equal(_digest(arrays[name][region], dtype), sums[b, v]) for v, name, dtype in names)
        except Exception:  # noqa: BLE001 - a chunk that cannot be decoded is damaged
            ok = False
        if not ok:
            bad.add(int(b))
    return sorted(bad)


def missing_chunks(path: str, plan: Plan, done: np.ndarray, skip: set | frozenset = frozenset()) -> list[int]:
    """The batches marked done some of whose chunks are gone (a cube of format 4 on a
    local disk, which stores every chunk of a written batch; older cubes left chunks
    that held only the fill value unwritten)."""
    if _is_remote(path) or (read_attrs(path) or {}).get("format") != FORMAT:
        return []
    out = []
    for b in np.flatnonzero(done):
        for name, (_, per_town, *_) in VARIABLES.items():
            if name not in skip and not (Path(path) / name / integrity.chunk_key(plan, int(b), per_town)).is_file():
                out.append(int(b))
                break
    return out


def damage(path: str, checksums: bool = True) -> tuple[dict, Plan, list[int]]:
    """What is wrong with the cube at ``path``: {template array: what}, the plan read from
    the cube, and the written batches that are damaged (chunks missing; with
    ``checksums``, also values that do not match)."""
    broken = integrity.template_damage(path, read_attrs(path) or {})
    plan = stored_plan(path, skip=set(broken))
    done = batch_done(path)
    if checksums:
        batches = damaged_batches(path, plan, done, skip=set(broken))
    else:
        batches = missing_chunks(path, plan, done, skip=set(broken))
    return broken, plan, batches


def refuse_damage(path: str, checksums: bool) -> None:
    """A one-line refusal of a damaged cube (see :func:`damage`), saying what repairs it."""
    broken, plan, batches = damage(path, checksums)
    if not broken and not batches:
        return
    what = [f"{name} ({why})" for name, why in broken.items()]
    if batches:
        shown = "; ".join(plan.describe(b) for b in batches[:3]) + (" ..." if len(batches) > 3 else "")
        what.append(f"{len(batches)} written batch(es) with chunks missing or not matching their checksums: {shown}")
    raise UserError(
        f"{path}: the cube is damaged: {', '.join(what)}; nothing is read from it; "
        "allowed: 'agglo run' with the same config repairs it ('agglo verify' lists the damage)"
    )


def unmark(path: str, batches: list[int]) -> None:
    """Batches to be written again: not done until they are."""
    done = zarr.open_array(path, path="progress/batch_done", mode="r+")
    for b in batches:
        done[b] = False


def stored_plan(path: str, skip: set | frozenset = frozenset()) -> Plan:
    """The plan a cube was written with, read from the cube alone (its dims, chunks and
    scenario coordinates): enough to find and describe its batches. Arrays in ``skip``
    (damaged) are not read: a damaged swept coordinate describes batches by index."""
    attrs = read_attrs(path) or {}
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    dims = tuple(json.loads(attrs.get("scenario_dims", "[]")))
    chunks = tuple(json.loads(attrs.get("plan_chunks", "[]")))
    if not dims:
        return Plan("single", (), (), (), (), {})
    shaped = next(name for name in VARIABLES if name not in skip)
    shape = tuple(root[shaped].shape[: len(dims)])

    def values(key, n):
        return np.arange(n) if key in skip else root[key][...]

    if dims[0] in ("sample", "scenario") and len(dims) == 1:
        keys = tuple(
            name
            for name in root.array_keys()
            if name not in skip and name != dims[0] and tuple(root[name].metadata.dimension_names or ()) == dims
        )
        kind = "sample" if dims[0] == "sample" else "table"
        return Plan(kind, keys, dims, shape, chunks, {k: values(k, shape[0]) for k in keys})
    return Plan("grid", dims, dims, shape, chunks, {k: values(k, n) for k, n in zip(dims, shape)})


def has_checksums(path: str) -> bool:
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    return "batch_sha256" in root["progress"]


def looks_complete(path: str) -> bool:
    """A cheap guess, before a run decides anything: a cube whose batches are all marked
    done (the run then checks it properly); False where that cannot be read."""
    try:
        return exists(path) and bool(batch_done(path).all())
    except Exception:  # noqa: BLE001 - a guess: anything unreadable is not complete
        return False


def batch_done(path: str) -> np.ndarray:
    """Which batches are written; a one-line error for a store that cannot say."""
    found = state(path)
    if found == "unfinished":
        raise UserError(
            f"{path}: an unfinished template (a run was stopped while setting it up; no results in it); "
            "allowed: the same 'agglo run' again, which rebuilds it"
        )
    if found == "no-progress":
        raise UserError(
            f"{path}: the cube's progress record (progress/batch_done) is missing, so which batches are written is unknown; "
            "allowed: the same 'agglo run' again, which recomputes every batch into it"
        )
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    return np.asarray(root["progress/batch_done"][:], dtype=bool)


CHECKSUMS_UP_TO_GIB = 2.0  # open_results(check="auto"): checksums for cubes up to this size


def open_results(path: str, dask: bool = True, check: str = "auto") -> xr.Dataset:
    """The cube as an xarray Dataset (lazy, dask-backed; ``dask=False``: lazy, each variable
    read whole when first used, without importing dask, as the run's summary reads it).

    A damaged cube is refused with a one-line error that says ``agglo run`` repairs it.
    ``check``: ``"checksums"`` reads every written batch and compares it with its
    checksums; ``"presence"`` checks every variable and coordinate (metadata as written,
    coordinate values as written) and that every written batch's chunks are there;
    ``"auto"`` (default) is ``"checksums"`` for a cube of up to ``CHECKSUMS_UP_TO_GIB``
    of values and ``"presence"`` above; ``"none"`` checks nothing.

    Examples
    --------
    >>> ds = open_results("results/oaxaca.zarr")                      # doctest: +SKIP
    >>> ds.coverage.sel({"commute.cap_min": 60}, mode="freight")      # doctest: +SKIP
    """
    if read_attrs(path) is None:
        raise UserError(f"{path}: not an agglo result cube; allowed: a store written by 'agglo run'")
    import xarray as xr

    if check not in ("auto", "checksums", "presence", "none"):
        raise UserError(f"check = {check!r}; allowed: auto, checksums, presence, none")
    if check != "none":
        refuse_damage(path, checksums=check == "checksums" or (check == "auto" and _gib(path) <= CHECKSUMS_UP_TO_GIB))
    done = batch_done(path)
    ds = xr.open_zarr(path, consolidated=True, mask_and_scale=False, **({} if dask else {"chunks": None}))
    ds.attrs["complete"] = bool(done.all())
    return _with_core_labels(ds) if dask else ds


def _with_core_labels(ds: xr.Dataset) -> xr.Dataset:
    """``core_town_id`` and ``core_name`` beside ``core`` (an index along town), derived
    lazily as the cube is read (-1 and "" for none); not stored."""
    import xarray as xr

    ids, names = ds["town_id"].values, ds["name"].values.astype(object)

    def label(core, table, none):
        out = table[np.maximum(core, 0)]
        return np.where(core >= 0, out, none)

    out = {}
    for var, table, none in (("core_town_id", ids, -1), ("core_name", names, "")):
        out[var] = xr.apply_ufunc(
            label, ds["core"], kwargs={"table": table, "none": none}, dask="parallelized", output_dtypes=[table.dtype]
        )
        out[var].attrs = {
            "description": f"the core's {var.removeprefix('core_')} (derived from core on read; {none!r}: none)"
        }
    return ds.assign(out)


def _gib(path: str) -> float:
    """The size of the cube's values (uncompressed), from its root metadata."""
    group = zarr.open_group(path, mode="r")
    total = 0
    for name in VARIABLES:
        try:
            array = group[name]
        except KeyError:
            continue
        total += int(np.prod(array.shape)) * array.dtype.itemsize
    return total / 2**30


def stored_config(attrs: dict) -> dict:
    return json.loads(attrs["result_config"])


def require_new(path: str) -> None:
    if exists(path):
        raise UserError(
            f"store.path = {path!r} exists and store.mode=fail; allowed: a new path, or store.mode=resume|overwrite"
        )
