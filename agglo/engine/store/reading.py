"""Reading a cube back: which batches are written, whether its chunks are all there and
match their checksums, the plan it was written with, and the cube as an xarray Dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from agglo.engine.errors import UserError
from agglo.engine.planning.plan import Plan
from agglo.engine.store import integrity
from agglo.engine.store.cube import FORMAT, _digest, _is_remote, exists, read_attrs, state
from agglo.engine.store.layout import VARIABLES

if TYPE_CHECKING:
    import xarray as xr

CHECKSUMS_UP_TO_GIB = 2.0  # open_results(check="auto"): checksums for cubes up to this size


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


def open_complete(path: str) -> xr.Dataset:
    """The cube at ``path`` (a store or a folder holding one), refused unless every batch is written."""
    from agglo.engine.store.cube import cube_path

    path = cube_path(path)
    ds = open_results(path)
    if not ds.attrs.get("complete"):
        raise UserError(
            f"{path}: the cube is not complete; allowed: finish it first ('agglo run' with the same config)"
        )
    return ds


def verify(path: str) -> tuple[bool, str]:
    """``agglo verify``: whether the cube is whole (every array as written, every written
    batch's chunks there and matching their checksums), and the report."""
    from agglo.engine.store.cube import cube_path

    path = cube_path(path)
    if not has_checksums(path):
        raise UserError(
            f"{path}: written by an engine before batch checksums (format {read_attrs(path).get('format')}); "
            "allowed: a cube written by this engine (store.mode=overwrite rewrites it)"
        )
    broken, plan, damaged = damage(path, checksums=True)
    done = batch_done(path)
    if broken or damaged:
        lines = [f"{path}: DAMAGED"]
        for name, why in broken.items():
            lines.append(f"  {name}: {why}")
        if damaged:
            lines.append(
                f"  {len(damaged)} of {int(done.sum())} written batches have chunks missing or not matching their checksums:"
            )
            for b in damaged:
                lines.append(f"    {plan.describe(b)}")
        lines.append(
            "  'agglo run' with the same config writes the arrays above again and recomputes exactly these batches"
        )
        return False, "\n".join(lines)
    return True, (
        f"{path}: verified, every variable and coordinate as written, all {int(done.sum())} written batches match "
        "their checksums" + ("" if done.all() else f" ({int((~done).sum())} of {done.size} not written yet)")
    )
