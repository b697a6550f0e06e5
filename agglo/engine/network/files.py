"""A :class:`~agglo.engine.network.build.Network` on disk for the workers of one machine:
spilled as ``.npy`` files that each worker maps, so the operating system holds one copy of
the pages for all of them and nothing is pickled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.network.build import Network
from agglo.kernels import Places, Rows


@dataclass(frozen=True)
class NetworkFiles:
    """A :class:`Network` spilled to ``folder`` as ``.npy`` files, for workers on the same
    machine: each maps the files instead of receiving a pickled copy, so the operating system
    holds one copy of the pages for all of them and nothing is serialised. ``layout`` names
    each mode's rows (modes that share one Rows object share its files)."""

    folder: str
    layout: dict  # mode -> rows key; "cols:" + mode -> its incoming rows' key; "table:" + mode -> "" if on a table
    scalars: dict  # rows key -> (radius_km, longest)


_MAPPED: dict = {}  # folder -> Network, per process


def spill_layout(network: Network) -> tuple[dict, dict, dict]:
    """What :func:`spill` writes: (layout, scalars, file name -> array); modes that share one
    Rows object share its files."""
    keys = {}  # id of a Rows object -> its file prefix
    layout = {}
    scalars = {}
    arrays = {}
    named = [*network.rows.items(), *((f"cols:{m}", r) for m, r in network.cols.items())]
    layout.update({f"table:{m}": "" for m in network.tables})
    for mode, rows in named:
        key = layout[mode] = keys.setdefault(id(rows), f"rows{len(keys)}")
        if key in scalars:
            continue
        scalars[key] = (rows.radius_km, rows.longest)
        for name, value in rows._asdict().items():
            if isinstance(value, np.ndarray):
                arrays[f"{key}.{name}.npy"] = value
    for name, value in network.places._asdict().items():
        arrays[f"places.{name}.npy"] = value
    arrays["forced_core.npy"] = network.forced_core
    return layout, scalars, arrays


def spill(network: Network, folder: str) -> NetworkFiles:
    """Write ``network``'s arrays under ``folder`` (which must exist); returns the handle."""
    from pathlib import Path

    layout, scalars, arrays = spill_layout(network)
    for name, value in arrays.items():
        np.save(Path(folder) / name, value, allow_pickle=False)
    return NetworkFiles(folder=str(folder), layout=layout, scalars=scalars)


def mapped(handle: Network | NetworkFiles) -> Network:
    """The network itself, or the one ``handle`` names, mapped from its files once per process
    (copy-on-write maps: writable views, as the kernels are compiled for, sharing the pages)."""
    if isinstance(handle, Network):
        return handle
    got = _MAPPED.get(handle.folder)
    if got is not None:
        return got
    from pathlib import Path

    base = Path(handle.folder)

    def load(name):
        return np.asarray(np.load(base / f"{name}.npy", mmap_mode="c", allow_pickle=False))

    rows_of = {}
    for key, (radius_km, longest) in handle.scalars.items():
        arrays = {name: load(f"{key}.{name}") for name in Rows._fields if name not in ("radius_km", "longest")}
        rows_of[key] = Rows(radius_km=radius_km, longest=longest, **arrays)
    places = Places(**{name: load(f"places.{name}") for name in Places._fields})
    layout = handle.layout
    network = Network(
        places=places,
        rows={mode: rows_of[layout[mode]] for mode in MODES},
        forced_core=load("forced_core"),
        cols={mode: rows_of[layout.get(f"cols:{mode}", layout[mode])] for mode in MODES},
        tables=tuple(m for m in MODES if f"table:{m}" in layout),
    )
    _MAPPED.clear()  # one run's network at a time per worker
    _MAPPED[handle.folder] = network
    return network
