"""What a run does with the store it names (``store.mode`` applied to what is there): create
it, resume it, repair what is damaged in it, or refuse with one line. The cube's own layout
and writes are :mod:`~agglo.engine.store.cube`'s."""

from __future__ import annotations

import json
import sys

import numpy as np

from agglo import __version__
from agglo.engine.config.names import MODES
from agglo.engine.config.text import diff_keys
from agglo.engine.errors import UserError
from agglo.engine.store import cube as store
from agglo.engine.store import integrity, reading

TITLE = "agglo result cube: small towns clustered into agglomerations by commuting and by freight"


def decide(cfg, recorded: dict, sha: str, tables: dict) -> tuple[bool, np.ndarray | None]:
    """Apply store.mode to an existing store. Returns (create new?, done mask to resume;
    None with False: a cube of this config without its progress record, to redo whole).
    ``recorded``: the run's ``result_config`` (:func:`~agglo.engine.config.text.result_keys`)."""
    path = cfg.store.path
    if not store.exists(path):
        return True, None
    attrs = store.read_attrs(path)
    if attrs is None:
        raise UserError(
            f"store.path = {path!r} exists and is not an agglo cube; allowed: a new path or an agglo cube (it is left untouched)"
        )
    if cfg.store.mode == "fail":
        store.require_new(path)
    if cfg.store.mode == "overwrite":
        return True, None
    found = store.state(path)
    if found == "unfinished":
        print(
            f"store.path = {path!r}: an unfinished template (a run was stopped while setting it up; "
            "no results in it); rebuilding it",
            file=sys.stderr,
        )
        return True, None
    if attrs.get("format") != store.FORMAT:
        raise UserError(
            f"store.path = {path!r} was written by an older engine (format {attrs.get('format')}, now {store.FORMAT}); "
            "allowed: store.mode=overwrite, or another store.path (it is left untouched)"
        )
    differing = _differing(attrs, recorded, sha, tables)
    if differing:
        raise UserError(
            f"store.path = {path!r} holds a different configuration (differs in: {', '.join(differing)}); "
            "allowed: the same configuration, store.mode=overwrite, or another store.path"
        )
    if attrs.get("device", "cpu") != cfg.executor.device:
        raise UserError(
            f"store.path = {path!r} was begun with executor.device = {attrs.get('device', 'cpu')!r}, and the devices "
            "agree only within the tolerance of agglo/kernels/cuda.py; allowed: "
            f"executor.device={attrs.get('device', 'cpu')} to finish it, store.mode=overwrite, or another store.path"
        )
    if found == "no-progress":
        print(
            f"store.path = {path!r}: the progress record (progress/batch_done) is missing; "
            "recomputing every batch into the cube (same values, same bits)",
            file=sys.stderr,
        )
        return False, None
    return False, reading.batch_done(path)


def _differing(attrs: dict, recorded: dict, sha: str, tables: dict) -> list[str]:
    """The keys in which a store's configuration and inputs differ from the run's (a table
    named by another spelling of its path is the same table: its content decides)."""
    differing = diff_keys(store.stored_config(attrs), recorded)
    if attrs.get("input_sha256") != sha:
        differing.append("input table (SHA-256)")
    elif "data.path" in differing:
        differing.remove("data.path")  # the same table by another spelling of its path: content decides
    stored_tables = json.loads(attrs.get("travel_times_sha256", "{}"))
    for mode in MODES:
        key = f"{mode}.travel_times"
        if stored_tables.get(mode) != tables.get(mode):
            if key not in differing:
                differing.append(f"{key} (SHA-256)")
        elif key in differing:
            differing.remove(key)  # the same travel times by another spelling of the path
    return differing


def repair(path: str, plan, towns, done: np.ndarray | None, writes) -> np.ndarray:
    """A cube being resumed: its progress record rebuilt if missing, its template arrays
    written again where damaged, and batches whose chunks are missing or fail their
    checksums marked to compute again. Returns the done mask."""
    if done is None:
        with writes:
            store.reset_progress(path, plan.n_batches)
        done = np.zeros(plan.n_batches, dtype=bool)
    broken = integrity.template_damage(path, store.read_attrs(path))
    if broken:
        print(
            f"store.path = {path!r}: damaged: {', '.join(f'{n} ({why})' for n, why in broken.items())}; "
            "writing them again from the configuration and the towns",
            file=sys.stderr,
        )
        with writes:
            store.rebuild(path, plan, towns, list(broken))
    damaged = reading.damaged_batches(path, plan, done)
    if damaged:
        shown = "; ".join(plan.describe(b) for b in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
        print(
            f"store.path = {path!r}: {len(damaged)} written batch(es) have chunks missing or not matching "
            f"their checksums: {shown}; recomputing them",
            file=sys.stderr,
        )
        with writes:
            store.unmark(path, damaged)
        done[damaged] = False
    return done


def cube_attrs(recorded: dict, plan, towns, sha: str, tables: dict, device: str) -> dict:
    """The attributes a new cube records: its configuration (``recorded``: the YAML and the
    result keys), inputs' SHA-256, plan layout and device."""
    attrs = {
        "title": TITLE,
        "config": recorded["yaml"],
        "result_config": json.dumps(recorded["results"], sort_keys=True),
        "engine_version": __version__,
        "input_sha256": sha,
        "input_source": towns.source,
        "travel_times_sha256": json.dumps(tables, sort_keys=True),
        "plan_chunks": json.dumps(list(plan.chunks)),
        "scenario_dims": json.dumps(list(plan.dims)),
        "model": "docs/model.md",
        "device": device,
    }
    if plan.sampler is not None:
        attrs["sampler"] = json.dumps(plan.sampler)
    return attrs
