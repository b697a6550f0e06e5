"""The typed configuration: one dataclass per section, with every key's type, its default
(docs/model.md's) and its range checks, run once when the config is built. Hydra composes
it at the edge (:mod:`~agglo.engine.config.compose`); everything inward reads this form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agglo.engine.config.names import DECAYS, MODELS, MODES
from agglo.engine.errors import UserError


def need(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"{key} = {value!r} is out of range; allowed: {allowed}")


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class DataConfig:
    source: str = "geonames"
    country: str = "MX"
    admin1: Any = field(default_factory=lambda: ["20"])  # a code, a list of codes, or null / all: the whole country
    min_population: float = 500.0
    path: str | None = None
    n: int = 1000
    seed: int = 0
    parts: str = "auto"  # places that are parts of a larger place: auto (GeoNames only), on, off
    parts_density: float = 3000.0  # people per km² that give a place its own radius
    parts_ratio: float = 2.0  # a part's place is at least this many times as populous

    def check(self) -> None:
        need(
            self.source in ("geonames", "table", "synthetic"), "data.source", self.source, "geonames, table, synthetic"
        )
        self.admin1 = admin1_codes(self.admin1)
        need(
            finite(self.min_population) and self.min_population >= 0,
            "data.min_population",
            self.min_population,
            "a finite number >= 0",
        )
        if self.source == "table":
            need(bool(self.path), "data.path", self.path, "a CSV or Parquet file when data.source=table")
        need(self.n >= 1, "data.n", self.n, "an integer >= 1")
        need(self.parts in ("auto", "on", "off"), "data.parts", self.parts, "auto, on, off")
        need(
            finite(self.parts_density) and self.parts_density > 0,
            "data.parts_density",
            self.parts_density,
            "a finite number > 0 (people per km²)",
        )
        need(finite(self.parts_ratio) and self.parts_ratio >= 1, "data.parts_ratio", self.parts_ratio, "a number >= 1")
        need(
            isinstance(self.country, str) and (len(self.country) == 2 or self.country.lower() == "world"),
            "data.country",
            self.country,
            "an ISO 3166-1 alpha-2 code such as MX, or world",
        )


def admin1_codes(value) -> list[str] | None:
    """``data.admin1`` as a list of codes, or None for the whole country."""
    allowed = "a code such as 77, a list such as [77,78], or null (or all) for the whole country; 'agglo regions CC' lists them"
    if value is None or (isinstance(value, str) and value.lower() == "all"):
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    try:
        codes = [str(v) for v in value if v is not None and not isinstance(v, (bool, list, dict))]
        given = list(value)
    except TypeError:
        raise UserError(f"data.admin1 = {value!r}; allowed: {allowed}") from None
    need(bool(given) and len(codes) == len(given), "data.admin1", given, allowed)
    return codes


@dataclass
class CoresConfig:
    min_population: float = 100000.0
    ids: list[Any] = field(default_factory=list)
    missing: str = "error"  # a forced core not among the towns: error, or drop (an experiment's ids; see resolve)

    def check(self) -> None:
        need(self.missing in ("error", "drop"), "cores.missing", self.missing, "error, drop")
        need(
            finite(self.min_population) and self.min_population >= 0,
            "cores.min_population",
            self.min_population,
            "a finite number >= 0",
        )


@dataclass
class ModeConfig:
    model: str = "gravity"
    speed_kmh: float = 60.0
    circuity: float = 1.3
    cap_min: float = 60.0
    decay: str = "power"
    beta: float = 2.0
    alpha: float = 1.0
    gamma: float = 1.0
    threshold: float = 0.15
    self_time_min: float | None = 10.0
    min_time_min: float = 1.0
    travel_times: str | None = None  # a travel-time table (CSV or Parquet; docs/model.md, "Travel-time tables")
    time_factor: float = 1.0  # the table's minutes times this (a scenario of slower or faster roads)

    def check(self, mode: str) -> None:
        k = mode + "."
        need(
            finite(self.time_factor) and self.time_factor > 0,
            k + "time_factor",
            self.time_factor,
            "a finite number > 0 (it multiplies the minutes of " + k + "travel_times)",
        )
        need(
            self.travel_times is not None or self.time_factor == 1.0,
            k + "time_factor",
            self.time_factor,
            "1 without " + k + "travel_times (the built-in times scale with speed_kmh and circuity)",
        )
        need(
            self.travel_times is None or bool(str(self.travel_times).strip()),
            k + "travel_times",
            self.travel_times,
            "null, or the path of a CSV or Parquet table with columns origin, destination, minutes",
        )
        need(self.model in MODELS, k + "model", self.model, ", ".join(MODELS))
        need(self.decay in DECAYS, k + "decay", self.decay, ", ".join(DECAYS))
        need(finite(self.speed_kmh) and self.speed_kmh > 0, k + "speed_kmh", self.speed_kmh, "a finite number > 0")
        need(finite(self.circuity) and self.circuity >= 1, k + "circuity", self.circuity, "a finite number >= 1")
        need(finite(self.cap_min) and self.cap_min >= 0, k + "cap_min", self.cap_min, "a finite number >= 0 (minutes)")
        need(finite(self.beta) and self.beta >= 0, k + "beta", self.beta, "a finite number >= 0")
        need(finite(self.alpha), k + "alpha", self.alpha, "a finite number")
        need(finite(self.gamma), k + "gamma", self.gamma, "a finite number")
        need(finite(self.threshold) and 0 <= self.threshold <= 1, k + "threshold", self.threshold, "a number in [0, 1]")
        need(
            finite(self.min_time_min) and self.min_time_min > 0,
            k + "min_time_min",
            self.min_time_min,
            "a finite number > 0 (minutes)",
        )
        need(
            self.self_time_min is None or (finite(self.self_time_min) and self.self_time_min > 0),
            k + "self_time_min",
            self.self_time_min,
            "null or a finite number > 0 (minutes)",
        )


@dataclass
class SweepConfig:
    grid: dict[str, list[Any]] = field(default_factory=dict)
    table: str | None = None
    sampler: str | None = None
    bounds: dict[str, list[Any]] = field(default_factory=dict)
    n: int = 64
    seed: int = 0


@dataclass
class StoreConfig:
    path: str | None = None  # null: results/<the data's name>.zarr (see default_store_path)
    mode: str = "resume"
    lease_timeout_s: float = 120.0  # a writer lease without a heartbeat for this long is stale (engine/store/lease.py)

    def check(self) -> None:
        from agglo.engine.store.lease import MIN_TIMEOUT_S

        need(self.mode in ("resume", "overwrite", "fail"), "store.mode", self.mode, "resume, overwrite, fail")
        need(
            self.lease_timeout_s >= MIN_TIMEOUT_S,
            "store.lease_timeout_s",
            self.lease_timeout_s,
            f"at least {MIN_TIMEOUT_S:g} (seconds; four heartbeats)",
        )
        need(bool(self.path), "store.path", self.path, "a path or URL, or null for results/<the data's name>.zarr")
        if str(self.path).startswith("file://"):
            self.path = str(self.path)[len("file://") :]


@dataclass
class SecurityConfig:
    """TLS files for ``executor.kind=address`` (Dask's tls_ca_file / tls_client_cert / tls_client_key)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def check(self) -> None:
        given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k)]
        if given and len(given) != 3:
            missing = sorted({"ca_file", "cert_file", "key_file"} - set(given))[0]
            raise UserError(
                f"executor.security.{missing} = None; allowed: all three of ca_file, cert_file, key_file, or none"
            )
        for k in given:
            path = getattr(self, k)
            if not Path(path).is_file():
                raise UserError(f"executor.security.{k} = {path!r}: no such file; allowed: an existing PEM file")


@dataclass
class ExecutorConfig:
    kind: str = "auto"  # auto: local where the machine gives it two worker processes, else synchronous
    n_workers: int | None = None
    threads_per_worker: int | None = None  # null: 2 (1 on a machine of one core); see executors/dask.py
    memory_limit: str = "auto"
    address: str | None = None
    batch_size: int = 64
    network_cache_gib: float = 4.0  # the on-disk network cache's budget (engine/network/cache.py); 0: off
    worker_timeout_s: float = 60.0  # how long a run waits for a worker to join once every worker is gone
    compute_while_starting: bool = True  # local: the driver computes batches until the cluster is up
    cluster_pays_s: float = 10.0  # auto: start the local cluster only once the sweep has more than this left
    device: str = "cpu"  # cpu (the reference), or cuda: the gravity passes on an NVIDIA GPU (kernels/cuda.py)
    network_beside_store: bool = False  # address: write the network next to the store for workers sharing its disk
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def check(self) -> None:
        self.security.check()
        need(
            self.kind in ("auto", "synchronous", "local", "address"),
            "executor.kind",
            self.kind,
            "auto, synchronous, local, address",
        )
        need(
            self.n_workers is None or self.n_workers >= 1,
            "executor.n_workers",
            self.n_workers,
            "null (one per two cores) or an integer >= 1",
        )
        need(
            self.threads_per_worker is None or self.threads_per_worker >= 1,
            "executor.threads_per_worker",
            self.threads_per_worker,
            "null (2 per worker) or an integer >= 1",
        )
        need(
            finite(self.worker_timeout_s) and self.worker_timeout_s > 0,
            "executor.worker_timeout_s",
            self.worker_timeout_s,
            "a number of seconds > 0",
        )
        need(
            finite(self.cluster_pays_s) and self.cluster_pays_s >= 0,
            "executor.cluster_pays_s",
            self.cluster_pays_s,
            "a number of seconds >= 0 (0: auto starts the cluster at once)",
        )
        need(self.device in ("cpu", "cuda"), "executor.device", self.device, "cpu, cuda")
        need(self.batch_size >= 1, "executor.batch_size", self.batch_size, "an integer >= 1")
        need(
            self.network_cache_gib >= 0,
            "executor.network_cache_gib",
            self.network_cache_gib,
            "a number of GiB >= 0 (0: no network cache)",
        )
        if self.kind == "address":
            need(
                bool(self.address),
                "executor.address",
                self.address,
                "a scheduler address such as tcp://127.0.0.1:8786 when executor.kind=address",
            )


@dataclass
class AggloConfig:
    data: DataConfig = field(default_factory=DataConfig)
    cores: CoresConfig = field(default_factory=CoresConfig)
    commute: ModeConfig = field(default_factory=lambda: ModeConfig(speed_kmh=60.0, cap_min=60.0, beta=2.0))
    freight: ModeConfig = field(default_factory=lambda: ModeConfig(speed_kmh=50.0, cap_min=240.0, beta=1.0))
    borders: str = "open"
    sweep: SweepConfig = field(default_factory=SweepConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        self.data.check()
        self.cores.check()
        # Not a key: the path as given (None: named after the data), for the YAML a cube records.
        self.store.given_path = self.store.path
        if self.store.path is None:
            self.store.path = default_store_path(self.data)
        for mode in MODES:
            getattr(self, mode).check(mode)
        need(self.borders in ("open", "closed"), "borders", self.borders, "open, closed")
        self.store.check()
        self.executor.check()

    def mode(self, name: str) -> ModeConfig:
        return getattr(self, name)


def default_store_path(data: DataConfig) -> str:
    """Where a run writes when ``store.path`` is null: named after its data
    (``results/PL-77.zarr``, ``results/MX.zarr``, ``results/towns.zarr`` for towns.csv)."""
    if data.source == "geonames":
        name = data.country.upper() if data.country.lower() != "world" else "world"
        if data.admin1:
            name += "-" + "-".join(data.admin1)
    elif data.source == "table":
        name = Path(str(data.path)).name.split(".")[0] or "towns"
    else:
        name = f"synthetic-{data.n}-{data.seed}"
    return f"results/{name}.zarr"


# Keys a sweep may vary: everything that changes a scenario but not the towns.
# (A mode's travel_times is not: it shapes the network, as the towns do.)
SWEEPABLE = tuple(
    [f"{m}.{f}" for m in MODES for f in ModeConfig.__dataclass_fields__ if f != "travel_times"]
    + ["cores.min_population", "borders"]
)
