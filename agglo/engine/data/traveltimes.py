"""A mode's travel times from the user's own table (docs/model.md, "Travel-time tables").

``commute.travel_times=PATH`` (or ``freight.``): a CSV or Parquet table with columns
``origin``, ``destination`` (town_ids of the run's towns) and ``minutes``, sparse (the pairs
a router returned) and possibly asymmetric. :func:`read_pairs` streams it in record batches
(no pandas copy of the table), checks every row and maps the town_ids to town indices;
:func:`table_network_rows` turns it into the rows the kernels read
(:func:`agglo.kernels.tables.table_rows`): the outgoing rows and, for an asymmetric table,
the incoming ones. A pair the table does not list is unreachable.

:func:`write_table` is the other direction (``agglo times``): the times the built-in model
uses, as such a table.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from agglo.engine.errors import UserError

COLUMNS = ("origin", "destination", "minutes")
# What reading and building a table took at its peak per listed pair (all of Mexico within 330
# min, 46.5 M pairs: 78 B symmetric, 92 B asymmetric; bench_traveltimes.py), and the fewest
# rows a CSV of that size holds (a row of two ids and minutes is under 100 bytes).
BYTES_PER_PAIR = 96
CSV_BYTES_PER_ROW = 100
BATCH_ROWS = 1 << 20
HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class TimeTable:
    """A mode's travel-time table as the network is built from it: ``limit_min`` is the
    farthest any scenario of the run reaches in the table's minutes (cap / time_factor), so
    the rows keep the pairs within it; ``sha256`` names the file's bytes (the network cache's
    key, and what a Dask worker checks before it builds from its own copy)."""

    path: str
    sha256: str
    limit_min: float

    def key(self) -> dict:
        return {"travel_times_sha256": self.sha256, "limit_min": float(self.limit_min)}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def time_table(key: str, path: str, limit_min: float) -> TimeTable:
    """``key`` (``commute.travel_times``)'s table, checked to exist and named by its bytes."""
    if not os.path.isfile(path):
        raise UserError(f"{key}: {path!r} is not a file; allowed: the path of a CSV or Parquet travel-time table")
    return TimeTable(path=os.path.abspath(path), sha256=file_sha256(path), limit_min=float(limit_min))


def with_tables(cfg, radii: dict) -> dict:
    """``radii`` (:func:`agglo.engine.planning.scenarios.reach_radii`) with each mode that has a
    travel-time table given as its :class:`TimeTable` (its radius is then in the table's minutes)."""
    out = dict(radii)
    for mode in radii:
        path = cfg.mode(mode).travel_times
        if path is not None:
            out[mode] = time_table(f"{mode}.travel_times", str(path), radii[mode])
    return out


def _is_parquet(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _batches(path: str, id_type):
    """Record batches of the three columns (origin and destination as ``id_type``)."""
    import pyarrow as pa

    want = {"origin": id_type, "destination": id_type, "minutes": pa.float64()}
    if _is_parquet(path):
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(path)
        names = handle.schema_arrow.names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise UserError(f"{path}: no column {missing[0]!r}; allowed: a table with columns {', '.join(COLUMNS)}")
        for batch in handle.iter_batches(batch_size=BATCH_ROWS, columns=list(COLUMNS)):
            yield _typed(path, batch, want)
        return
    import pyarrow.csv as pcsv

    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=64 << 20),
            convert_options=pcsv.ConvertOptions(include_columns=list(COLUMNS), column_types=want),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
        raise UserError(f"{path}: {_arrow_why(err)}; allowed: a CSV with columns {', '.join(COLUMNS)}") from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise UserError(
                f"{path}: {_arrow_why(err)}; allowed: {', '.join(COLUMNS)} as the towns' ids and minutes"
            ) from None
        yield batch


def _arrow_why(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "No such column" in text or "include_columns" in text or isinstance(err, KeyError):
        return "a column of origin, destination, minutes is missing"
    return text


def _typed(path: str, batch, want: dict):
    import pyarrow as pa

    columns = []
    for name in COLUMNS:
        column = batch.column(batch.schema.get_field_index(name))
        try:
            columns.append(column.cast(want[name]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise UserError(
                f"{path}: column {name!r} of type {column.type} cannot be read as {want[name]} ({_arrow_why(err)}); "
                f"allowed: {'numbers (minutes)' if name == 'minutes' else 'the towns ids'}"
            ) from None
    return pa.RecordBatch.from_arrays(columns, names=list(COLUMNS))


DENSE_IDS = 1 << 26  # integer ids spanning fewer values than this are looked up in a dense table


class _Ids:
    """town_id -> town index, for int64 or text ids (integer ids in a dense lookup table when
    they span less than DENSE_IDS values, as GeoNames ids do: one read a pair instead of a search)."""

    def __init__(self, towns):
        ids = towns.town_id
        self.numeric = np.issubdtype(np.asarray(ids).dtype, np.integer)
        self.lut = None
        if self.numeric:
            ids = np.asarray(ids, dtype=np.int64)
            self.order = np.argsort(ids, kind="stable")
            self.sorted = ids[self.order]
            if ids.shape[0] and int(self.sorted[-1]) - int(self.sorted[0]) < DENSE_IDS:
                self.low = int(self.sorted[0])
                self.lut = np.full(int(self.sorted[-1]) - self.low + 1, -1, dtype=np.int32)
                self.lut[ids - self.low] = np.arange(ids.shape[0], dtype=np.int32)
        else:
            import pandas as pd

            self.index = pd.Index([str(t) for t in ids])

    def arrow_type(self):
        import pyarrow as pa

        return pa.int64() if self.numeric else pa.string()

    def of(self, column) -> np.ndarray:
        """Town index per value (-1 where not a town_id, or null)."""
        if self.lut is not None:
            values = column.fill_null(self.low - 1).to_numpy(zero_copy_only=False) - self.low
            inside = (values >= 0) & (values < self.lut.shape[0])
            return np.where(inside, self.lut[np.where(inside, values, 0)], -1)
        if self.numeric:
            values = column.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
            at = np.minimum(np.searchsorted(self.sorted, values), self.sorted.shape[0] - 1)
            found = self.sorted[at] == values if self.sorted.shape[0] else np.zeros(values.shape[0], dtype=bool)
            return np.where(found, self.order[at] if self.sorted.shape[0] else 0, -1)
        values = column.to_pandas()
        return self.index.get_indexer(values.where(values.notna(), None))


@dataclass
class Pairs:
    """A table as town indices: ``origin[k] -> dest[k]`` in ``minutes[k]``, table row order."""

    origin: np.ndarray  # int32
    dest: np.ndarray  # int32
    minutes: np.ndarray  # float64
    path: str
    csv: bool

    def where(self, k: int) -> str:
        """Table row k (0-based) as the user finds it: row k + 1, and the line of a CSV."""
        return f"{self.path}: row {k + 1}" + (f" (line {k + 2})" if self.csv else "")


def read_pairs(path: str, towns, sha256: str | None = None) -> Pairs:
    """Every pair of the table at ``path``, checked: known town_ids, two different towns,
    finite minutes >= 0 (one line naming the row otherwise). ``sha256``: the bytes the driver
    read (a worker with another copy of the file refuses)."""
    if sha256 is not None and file_sha256(path) != sha256:
        raise UserError(
            f"{path}: its bytes differ from the table the run was started with; allowed: the same file everywhere"
        )
    ids = _Ids(towns)
    csv = not _is_parquet(path)
    parts: list = [[], [], []]
    seen = 0
    for batch in _batches(path, ids.arrow_type()):
        origin = ids.of(batch.column(0))
        dest = ids.of(batch.column(1))
        minutes = batch.column(2).fill_null(np.nan).to_numpy(zero_copy_only=False)
        bad = (origin < 0) | (dest < 0) | (origin == dest) | ~(np.isfinite(minutes) & (minutes >= 0))
        if bad.any():
            k = int(np.argmax(bad))
            _refuse_row(path, csv, seen + k, batch, k, origin[k], dest[k], minutes[k], towns)
        parts[0].append(origin.astype(np.int32))
        parts[1].append(dest.astype(np.int32))
        parts[2].append(np.ascontiguousarray(minutes, dtype=np.float64))
        seen += batch.num_rows
    if seen == 0 and len(towns) > 1:
        raise UserError(f"{path}: no pairs; allowed: a table with a row per pair (origin, destination, minutes)")
    empty = (np.int32, np.int32, np.float64)
    cat = [np.concatenate(p) if p else np.empty(0, dtype=t) for p, t in zip(parts, empty)]
    return Pairs(cat[0], cat[1], cat[2], path, csv)


def _refuse_row(path, csv, row, batch, k, origin, dest, minutes, towns) -> None:
    where = Pairs(None, None, None, path, csv).where(row)
    raw = [batch.column(c)[k].as_py() for c in range(3)]
    for name, index, value in (("origin", origin, raw[0]), ("destination", dest, raw[1])):
        if index < 0:
            raise UserError(
                f"{where}: {name} = {value!r} is not a town_id of {towns.source} ({len(towns)} towns); "
                "allowed: the run's town_ids (a table made for another run's towns does not fit this one)"
            )
    if origin == dest:
        raise UserError(
            f"{where}: origin and destination are both {raw[0]!r}; allowed: pairs of two towns "
            "(a town's own trips take self_time_min)"
        )
    raise UserError(f"{where}: minutes = {raw[2]!r}; allowed: a finite number >= 0")


def _plain(value):
    """A town_id as the user wrote it (a Python int or str, not a NumPy scalar's repr)."""
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class TableRows:
    """A table's rows for the kernels: outgoing (row i: the pairs i -> j) and incoming (row j:
    the pairs i -> j), the same arrays when the table is symmetric; each as (offsets,
    neighbour, log_min, minutes) within the run's limit, and each set's full-table row maxima
    of log destination mass (so that lp_max does not depend on the caps of the run)."""

    out: tuple
    into: tuple
    lp_max: np.ndarray
    symmetric: bool


_READ: dict = {}  # (id of the towns, TimeTable) -> TableRows read ahead by read_ahead, for the build


def listed_at_least(path: str) -> int:
    """The rows a table surely holds: a Parquet file's own count, a CSV's size / CSV_BYTES_PER_ROW."""
    if _is_parquet(path):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return os.path.getsize(path) // CSV_BYTES_PER_ROW


def check_fits(table: TimeTable, available: int | None) -> None:
    """Refuse, before reading it, a table whose pairs cannot be built in ``available`` bytes."""
    if available is None:
        return
    rows = listed_at_least(table.path)
    if rows * BYTES_PER_PAIR > available:
        raise UserError(
            f"{table.path}: {rows / 1e6:,.0f} M pairs or more take about {rows * BYTES_PER_PAIR / 2**30:.1f} GiB "
            f"to read and build, and this machine has {available / 2**30:.1f} GiB available; allowed: a table "
            "with fewer pairs (a lower router limit, or the run's towns only), or a machine with more memory"
        )


def read_ahead(towns, radii: dict) -> None:
    """Read and check every travel-time table of ``radii`` now, before a run writes anything
    (a bad table is refused with nothing written); the network's build then takes the rows
    read here instead of reading the table again. (The driver has just hashed the file:
    :func:`time_table`.)"""
    from agglo.engine.network.build import available_bytes, destination_log_mass

    log_mass = destination_log_mass(towns, np.log(towns.population.astype(np.float64)))
    for table in radii.values():
        if isinstance(table, TimeTable):
            check_fits(table, available_bytes())
            _READ[(id(towns), table)] = table_network_rows(towns, table, log_mass, sha_checked=False)


def forget_read_ahead() -> None:
    _READ.clear()


def table_network_rows(towns, table: TimeTable, log_mass: np.ndarray, sha_checked: bool = True) -> TableRows:
    """Read ``table`` (its bytes checked against its sha256 unless ``sha_checked`` is False)
    and build its rows; a pair listed twice is refused naming both rows. Rows read ahead
    (:func:`read_ahead`) for these towns are taken instead."""
    ready = _READ.pop((id(towns), table), None)
    if ready is not None:
        return ready
    from agglo.kernels.rows import row_lp
    from agglo.kernels.tables import rows_within, table_rows

    pairs = read_pairs(table.path, towns, table.sha256 if sha_checked else None)
    n = len(towns)
    out = table_rows(n, pairs.origin, pairs.dest, pairs.minutes)
    if out[4] >= 0:
        k = out[4]
        same = np.flatnonzero((pairs.origin == pairs.origin[k]) & (pairs.dest == pairs.dest[k]))
        raise UserError(
            f"{pairs.where(k)}: the pair ({_plain(towns.town_id[pairs.origin[k]])!r}, "
            f"{_plain(towns.town_id[pairs.dest[k]])!r}) "
            f"is listed again (first at row {int(same[0]) + 1}); allowed: one row per ordered pair"
        )
    into = table_rows(n, pairs.dest, pairs.origin, pairs.minutes)
    del pairs
    symmetric = all(np.array_equal(a, b) for a, b in zip(out[:4], into[:4]))
    lp_max = row_lp(out[0], out[1], log_mass)[1]
    if not symmetric:
        lp_max = np.maximum(lp_max, row_lp(into[0], into[1], log_mass)[1])
    sets = []
    for offsets, neighbour, log_min, minutes, _ in (out,) if symmetric else (out, into):
        offsets, (minutes, neighbour, log_min) = rows_within(offsets, [minutes, neighbour, log_min], table.limit_min)
        sets.append((offsets, neighbour, log_min, minutes))
    return TableRows(out=sets[0], into=sets[-1], lp_max=lp_max, symmetric=symmetric)
