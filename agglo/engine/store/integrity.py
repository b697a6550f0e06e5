"""Everything a cube holds besides its batches' values, checked: no damage is read as data.

A cube of format 4 records in its root attributes (``template_sha256``) a SHA-256 of
every array's metadata as written and, for the coordinates (towns, modes, swept values),
of their values; and it stores every chunk of every written batch, even one holding only
the fill value, so that a missing chunk is damage, never a run of fill values. The
batches' values have their own checksums (``progress/batch_sha256``, engine/store/cube.py).

:func:`template_damage` names every variable or coordinate that is missing, whose
metadata cannot be read or differs from what was written, or whose values cannot be
decoded or differ (a deleted, truncated, swapped or edited chunk). ``store.damage`` adds
the batches; readers refuse a damaged cube, ``agglo verify`` lists it, and ``agglo run``
rebuilds the template arrays (``store.rebuild``) and recomputes the batches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import zarr

RECORD = "template_sha256"


def metadata_digest(array) -> str:
    text = json.dumps(array.metadata.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def values_digest(values: np.ndarray) -> str:
    values = np.asarray(values)
    if values.dtype.kind in "OUT":
        data = "\x1f".join(str(v) for v in values.ravel()).encode("utf-8")
    else:
        data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
    return hashlib.sha256(f"{values.dtype.kind}{values.shape}".encode() + data).hexdigest()


def record(root, coordinates: list[str], variables: list[str]) -> dict:
    """The template's record: per array, its metadata's digest and, for coordinates, its values'."""
    out = {
        name: {"metadata": metadata_digest(root[name]), "values": values_digest(root[name][...])}
        for name in coordinates
    }
    out.update({name: {"metadata": metadata_digest(root[name])} for name in variables})
    return out


def _node_missing(path: str, name: str) -> bool:
    return "://" not in str(path) and not (Path(path) / name / "zarr.json").is_file()


def template_damage(path: str, attrs: dict) -> dict:
    """{array name: what is wrong with it} for every recorded variable and coordinate that
    is missing, unreadable or not as written; {} for a whole template (or a cube of an
    older format, which has no record)."""
    wanted = attrs.get(RECORD) or {}
    out = {}
    for name, want in wanted.items():
        try:
            array = zarr.open_array(path, path=name, mode="r")
        except Exception:  # noqa: BLE001 - gone, or metadata that zarr cannot read
            out[name] = "missing" if _node_missing(path, name) else "its metadata cannot be read"
            continue
        try:
            same = metadata_digest(array) == want["metadata"]
        except Exception:  # noqa: BLE001 - metadata that parses but is not what zarr writes
            same = False
        if not same:
            out[name] = "its metadata differs from what was written"
            continue
        if "values" not in want:
            continue
        try:
            values = array[...]
        except Exception:  # noqa: BLE001 - a truncated or corrupted chunk
            out[name] = "a chunk cannot be decoded"
            continue
        if values_digest(values) != want["values"]:
            out[name] = "its values differ from what was written"
    return out


def chunk_key(plan, batch: int, per_town: bool) -> str:
    """The key, under a variable's folder, of batch ``batch``'s chunk (one chunk a batch:
    the scenario dims chunked as the plan, mode and town whole)."""
    index = [r.start // c for r, c in zip(plan.region(batch), plan.chunks)] + [0] + ([0] if per_town else [])
    return "c/" + "/".join(str(i) for i in index)
