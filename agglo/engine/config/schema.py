"""Typed configuration: Hydra structured schemas for every key of docs/model.md, checked once.

YAML files in ``configs/`` hold values; these dataclasses hold the types, the docs/model.md
defaults and the range checks. :func:`resolve` turns command-line overrides (Hydra's
grammar, sweep syntax included) into a checked :class:`AggloConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from agglo.engine.errors import UserError
from agglo.engine.planning.scenario_file import read_scenario_table

MODES = ("commute", "freight")
MODELS = ("gravity", "attraction", "doubly", "radiation")
DECAYS = ("power", "exponential")


def _need(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"{key} = {value!r} is out of range; allowed: {allowed}")


def _finite(x: Any) -> bool:
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

    def check(self) -> None:
        _need(
            self.source in ("geonames", "table", "synthetic"), "data.source", self.source, "geonames, table, synthetic"
        )
        self.admin1 = admin1_codes(self.admin1)
        _need(
            _finite(self.min_population) and self.min_population >= 0,
            "data.min_population",
            self.min_population,
            "a finite number >= 0",
        )
        if self.source == "table":
            _need(bool(self.path), "data.path", self.path, "a CSV or Parquet file when data.source=table")
        _need(self.n >= 1, "data.n", self.n, "an integer >= 1")
        _need(
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
    _need(bool(given) and len(codes) == len(given), "data.admin1", given, allowed)
    return codes


@dataclass
class CoresConfig:
    min_population: float = 100000.0
    ids: list[Any] = field(default_factory=list)
    missing: str = "error"  # a forced core not among the towns: error, or drop (an experiment's ids; see resolve)

    def check(self) -> None:
        _need(self.missing in ("error", "drop"), "cores.missing", self.missing, "error, drop")
        _need(
            _finite(self.min_population) and self.min_population >= 0,
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
        _need(
            _finite(self.time_factor) and self.time_factor > 0,
            k + "time_factor",
            self.time_factor,
            "a finite number > 0 (it multiplies the minutes of " + k + "travel_times)",
        )
        _need(
            self.travel_times is not None or self.time_factor == 1.0,
            k + "time_factor",
            self.time_factor,
            "1 without " + k + "travel_times (the built-in times scale with speed_kmh and circuity)",
        )
        _need(
            self.travel_times is None or bool(str(self.travel_times).strip()),
            k + "travel_times",
            self.travel_times,
            "null, or the path of a CSV or Parquet table with columns origin, destination, minutes",
        )
        _need(self.model in MODELS, k + "model", self.model, ", ".join(MODELS))
        _need(self.decay in DECAYS, k + "decay", self.decay, ", ".join(DECAYS))
        _need(_finite(self.speed_kmh) and self.speed_kmh > 0, k + "speed_kmh", self.speed_kmh, "a finite number > 0")
        _need(_finite(self.circuity) and self.circuity >= 1, k + "circuity", self.circuity, "a finite number >= 1")
        _need(
            _finite(self.cap_min) and self.cap_min >= 0, k + "cap_min", self.cap_min, "a finite number >= 0 (minutes)"
        )
        _need(_finite(self.beta) and self.beta >= 0, k + "beta", self.beta, "a finite number >= 0")
        _need(_finite(self.alpha), k + "alpha", self.alpha, "a finite number")
        _need(_finite(self.gamma), k + "gamma", self.gamma, "a finite number")
        _need(
            _finite(self.threshold) and 0 <= self.threshold <= 1, k + "threshold", self.threshold, "a number in [0, 1]"
        )
        _need(
            _finite(self.min_time_min) and self.min_time_min > 0,
            k + "min_time_min",
            self.min_time_min,
            "a finite number > 0 (minutes)",
        )
        _need(
            self.self_time_min is None or (_finite(self.self_time_min) and self.self_time_min > 0),
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

        _need(self.mode in ("resume", "overwrite", "fail"), "store.mode", self.mode, "resume, overwrite, fail")
        _need(
            self.lease_timeout_s >= MIN_TIMEOUT_S,
            "store.lease_timeout_s",
            self.lease_timeout_s,
            f"at least {MIN_TIMEOUT_S:g} (seconds; four heartbeats)",
        )
        _need(bool(self.path), "store.path", self.path, "a path or URL, or null for results/<the data's name>.zarr")
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
        _need(
            self.kind in ("auto", "synchronous", "local", "address"),
            "executor.kind",
            self.kind,
            "auto, synchronous, local, address",
        )
        _need(
            self.n_workers is None or self.n_workers >= 1,
            "executor.n_workers",
            self.n_workers,
            "null (one per two cores) or an integer >= 1",
        )
        _need(
            self.threads_per_worker is None or self.threads_per_worker >= 1,
            "executor.threads_per_worker",
            self.threads_per_worker,
            "null (2 per worker) or an integer >= 1",
        )
        _need(
            _finite(self.worker_timeout_s) and self.worker_timeout_s > 0,
            "executor.worker_timeout_s",
            self.worker_timeout_s,
            "a number of seconds > 0",
        )
        _need(
            _finite(self.cluster_pays_s) and self.cluster_pays_s >= 0,
            "executor.cluster_pays_s",
            self.cluster_pays_s,
            "a number of seconds >= 0 (0: auto starts the cluster at once)",
        )
        _need(self.device in ("cpu", "cuda"), "executor.device", self.device, "cpu, cuda")
        _need(self.batch_size >= 1, "executor.batch_size", self.batch_size, "an integer >= 1")
        _need(
            self.network_cache_gib >= 0,
            "executor.network_cache_gib",
            self.network_cache_gib,
            "a number of GiB >= 0 (0: no network cache)",
        )
        if self.kind == "address":
            _need(
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
        if self.store.path is None:
            self.store.path = default_store_path(self.data)
        for mode in MODES:
            getattr(self, mode).check(mode)
        _need(self.borders in ("open", "closed"), "borders", self.borders, "open, closed")
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


ConfigStore.instance().store(name="agglo_schema", node=AggloConfig)

# Keys a sweep may vary: everything that changes a scenario but not the towns.
# (A mode's travel_times is not: it shapes the network, as the towns do.)
SWEEPABLE = tuple(
    [f"{m}.{f}" for m in MODES for f in ModeConfig.__dataclass_fields__ if f != "travel_times"]
    + ["cores.min_population", "borders"]
)
# Keys a mode on a travel-time table does not read (its times are the table's, times time_factor).
TABLE_IGNORES = ("speed_kmh", "circuity")
# Swept keys whose values are text, not numbers.
STRING_KEYS = ("borders",) + tuple(f"{m}.{f}" for m in MODES for f in ("model", "decay"))
# Keys that do not change results: excluded when comparing a run with a store.
NOT_RESULTS = ("store", "executor")


def _first_line(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        text = str(exc).strip()
        if text:
            parts.append(text.splitlines()[0])
        exc = exc.__cause__ or exc.__context__
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return ": ".join(seen[:2]) if seen else "invalid configuration"


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Separate Hydra sweep overrides (``a=1,2``, ``range()``, ``choice()``) from plain ones."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # noqa: BLE001 - Hydra raises its own grammar errors
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        bad = getattr(exc, "override", None)
        raise UserError(
            f"command line: cannot parse {bad!r} ({text}); allowed: {OVERRIDE_GRAMMAR}"
            if bad
            else f"command line: {text}; allowed: {OVERRIDE_GRAMMAR}"
        ) from None
    plain: list[str] = []
    grid: dict[str, list[Any]] = {}
    for ov in parsed:
        key = ov.key_or_group
        if key in ("sweep.grid", "sweep.bounds") and not ov.is_sweep_override():
            # Keys of these maps are dotted config keys, which Hydra's merge would read as paths.
            value = ov.value()
            if not isinstance(value, dict):
                raise UserError(f"{key} = {value!r}; allowed: a mapping such as {{commute.cap_min:[30,60]}}")
            grid[key] = value
            continue
        if ov.is_sweep_override():
            if type(ov.value()).__name__ == "IntervalSweep":
                raise UserError(
                    f"{ov.key_or_group}: interval() sweeps are for optimisers; allowed: a list, range() or choice()"
                )
            grid[ov.key_or_group] = list(ov.sweep_iterator())
        else:
            plain.append(ov.input_line)
    return plain, grid


OVERRIDE_GRAMMAR = (
    "key=value, key=a,b,c, key=range(start,stop,step), key=choice(a,b), key=[a,b], key={k: v}; "
    "quote a value with spaces, brackets or commas: \"key='my (towns).csv'\""
)
TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "String": "text"}


def _typed(exc: BaseException) -> str | None:
    """'KEY = VALUE: not TYPE; allowed: ...' for OmegaConf's type errors, else None."""
    cause = exc
    while cause is not None:
        key = getattr(cause, "full_key", None)
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        if key and "could not be converted to" in text:
            target = text.rsplit("could not be converted to", 1)[1].strip()
            value = text.split("'")[1] if text.count("'") >= 2 else "?"
            return f"{key} = {value!r}: not {TYPE_WORDS.get(target, target)}; allowed: {TYPE_WORDS.get(target, target)}"
        cause = cause.__cause__ or cause.__context__
    return None


def _compose(overrides: list[str]):
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="agglo.configs", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - composition errors are the user's overrides
        typed = _typed(exc)
        if typed:
            raise UserError(typed) from None
        hint = "; allowed: the keys that 'agglo config' prints" if "not in" in _first_line(exc) else ""
        raise UserError(f"configuration: {_first_line(exc)}{hint}") from None


def to_object(cfg) -> AggloConfig:
    try:
        return OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - omegaconf type errors
        cause = exc
        while cause.__cause__ is not None or isinstance(cause.__context__, UserError):
            cause = cause.__cause__ or cause.__context__
            if isinstance(cause, UserError):
                raise cause from None
        raise UserError(f"configuration: {_first_line(exc)}") from None


def resolve(overrides: list[str] | tuple[str, ...] = ()) -> tuple[AggloConfig, Any]:
    """Compose ``configs/config.yaml`` with the overrides; return the checked config and
    its OmegaConf form. Command-line sweeps join ``sweep.grid`` (and replace a YAML entry
    for the same key)."""
    plain, cli_grid = split_overrides(list(overrides))
    cfg = _compose(plain)
    _user_values_win(cfg, plain)
    for mapping in ("sweep.grid", "sweep.bounds"):
        if mapping in cli_grid:
            node = cfg.sweep.grid if mapping == "sweep.grid" else cfg.sweep.bounds
            with open_dict(node):
                node.clear()
                for k, v in cli_grid.pop(mapping).items():
                    node[k] = v
    with open_dict(cfg.sweep.grid):
        for key, values in cli_grid.items():
            cfg.sweep.grid[key] = values
    checked = to_object(cfg)
    cfg.data.admin1 = checked.data.admin1  # one spelling (77, [77], '77') in the stored config
    check_sweep(cfg)
    return checked, cfg


def _user_values_win(cfg, plain: list[str]) -> None:
    """What the command line sets, it sets: one value for a key that the experiment sweeps
    (or samples) replaces that sweep; forced cores the user did not set (an experiment's)
    are dropped where they are not among the towns instead of stopping the run."""
    keys = {_key_of(line) for line in plain}
    for mapping in (cfg.sweep.grid, cfg.sweep.bounds):
        for key in [k for k in mapping if k in keys]:
            with open_dict(mapping):
                del mapping[key]
    if "cores.ids" not in keys and "cores.missing" not in keys and len(cfg.cores.ids) > 0:
        cfg.cores.missing = "drop"


def _key_of(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def check_sweep(cfg) -> None:
    """Every swept key exists and is sweepable; every swept value passes the checks."""
    sweep = cfg.sweep
    probe = _Probe(cfg)
    kinds = [
        name
        for name, on in (
            ("sweep.grid", len(sweep.grid) > 0),
            ("sweep.table", sweep.table is not None),
            ("sweep.sampler", sweep.sampler is not None),
        )
        if on
    ]
    if len(kinds) > 1:
        raise UserError(
            f"{kinds[1]} is set together with {kinds[0]}; allowed: one kind of sweep at a time "
            f"(set the other to null or {{}})"
        )
    if sweep.table is not None:
        for key, values in scenario_table(cfg).items():
            if key not in SWEEPABLE:
                raise UserError(f"{sweep.table}: column '{key}' cannot be swept; allowed: {', '.join(SWEEPABLE)}")
            _refuse_unread(cfg, key, f"{sweep.table}: column '{key}'")
            first_row: dict = {}
            for k, v in enumerate(values.tolist()):
                first_row.setdefault(repr(v), (k, v))
            for k, v in first_row.values():
                try:
                    probe.check(key, None if (isinstance(v, float) and math.isnan(v)) else v)
                except UserError as err:
                    raise UserError(f"{sweep.table}, row {k + 2}: column '{key}': {err}") from None
        return
    if sweep.sampler is not None:
        _need(sweep.sampler in ("sobol", "morris", "lhs"), "sweep.sampler", sweep.sampler, "null, sobol, morris, lhs")
        _need(len(sweep.bounds) > 0, "sweep.bounds", dict(sweep.bounds), "key -> [low, high] for every sampled key")
        _need(sweep.n >= 1, "sweep.n", sweep.n, "an integer >= 1")
        keys = list(sweep.bounds.keys())
    else:
        keys = list(sweep.grid.keys())
    for key in keys:
        where = f"sweep.{'bounds' if sweep.sampler else 'grid'}.{key}"
        if key not in SWEEPABLE:
            raise UserError(f"{where}: '{key}' cannot be swept; allowed: {', '.join(SWEEPABLE)}")
        _refuse_unread(cfg, key, where)
    for key, values in sweep.grid.items():
        values = list(values) if OmegaConf.is_list(values) or isinstance(values, list) else [values]
        if not values:
            raise UserError(f"sweep.grid.{key} = []: no values; allowed: a non-empty list")
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"sweep.grid.{key} = {list(values)!r}: repeated value; allowed: distinct values")
        for v in values:
            probe.check(key, v)
    for key, bounds in sweep.bounds.items():
        b = list(bounds)
        ok = len(b) == 2 and all(_finite(x) for x in b) and b[0] < b[1]
        _need(ok, f"sweep.bounds.{key}", b, "[low, high] with low < high")
        if ok:
            probe.check(key, b[0])
            probe.check(key, b[1])


def _refuse_unread(cfg, key: str, where: str) -> None:
    """A swept speed_kmh or circuity of a mode on a travel-time table would give scenarios
    that differ in name only: refused."""
    mode, _, name = key.partition(".")
    if mode in MODES and name in TABLE_IGNORES and OmegaConf.select(cfg, f"{mode}.travel_times") is not None:
        raise UserError(
            f"{where}: {mode}.{name} is not read when {mode}.travel_times is set; allowed: sweep "
            f"{mode}.time_factor (the table's minutes times it: 1.2 is roads 20 % slower)"
        )


def scenario_table(cfg) -> dict:
    """The values of ``sweep.table`` (key -> one value per scenario), read and typed."""
    return read_scenario_table(cfg.sweep.table, SWEEPABLE, STRING_KEYS)


class _Probe:
    """The config without its sweep, typed once; ``check`` sets one key to a swept value,
    runs every check of the typed config, and puts the key back (building a typed config
    per value cost ~30 ms each, most of a sweep's start)."""

    def __init__(self, cfg) -> None:
        self.cfg = None
        self.source = cfg

    def check(self, key: str, value: Any) -> None:
        if self.cfg is None:
            probe = OmegaConf.masked_copy(self.source, [k for k in self.source.keys() if k != "sweep"])
            self.cfg = OmegaConf.merge(OmegaConf.structured(AggloConfig), probe)
        original = OmegaConf.select(self.cfg, key)
        try:
            OmegaConf.update(self.cfg, key, value, merge=True)
        except Exception as exc:  # noqa: BLE001
            typed = _typed(exc)
            why = typed.split(": ", 1)[1] if typed else _first_line(exc)
            raise UserError(f"sweep.grid.{key}: value {value!r}: {why}") from None
        try:
            to_object(self.cfg)
        finally:
            OmegaConf.update(self.cfg, key, original, merge=True)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def result_keys(cfg) -> dict:
    """The configuration that determines the results (store and executor left out)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_RESULTS:
        plain.pop(key, None)
    return plain


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict) and not (prefix == "sweep." and key == "grid"):
            out.extend(diff_keys(va, vb, name + "."))
        elif va != vb:
            out.append(name)
    return out
