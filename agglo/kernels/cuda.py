"""The gravity passes on an NVIDIA GPU (``numba.cuda``): per scenario and town, its reach,
its share denominator and its best core; per scenario and town, its inflow
(docs/model.md, "Reachability", "Deterrence", "Shares", "Cores and assignment").

Notes
-----
One block per (scenario, town), its threads striding over the town's neighbourhood row
(the same :class:`~agglo.kernels.records.Rows` the CPU passes read), then a tree
reduction in shared memory: no warp shuffles or votes, so Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs the same kernels on the CPU for the tests.

Everything is float64 and written from the model as it reads: the travel time from the
haversine distance with the operations of :mod:`agglo.kernels.reach` (so the reach is
the CPU's, pair for pair, but where the GPU's fused multiply-adds move ``t_ij`` across
the cap by an ulp), the weights ``w_ij = mass_j^gamma f(t_ij)`` (mass: the destination mass) relative to the
row's largest log mass (``lp_max``, so that they neither overflow nor
underflow), the self term, and the best core (largest weight, ties: lower index).

The contract with the CPU passes (which sum float32 terms in base 2): the same
``n_reachable`` but for pairs within ``EDGE`` (relative) of the cap, shares within
``SHARE_RTOL``, and the same core but where the two best candidates' weights, or the
best share and the threshold, lie within ``SHARE_RTOL`` of one another. The origin pass
marks those towns (``near``), so a run counts where the CPU might choose otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

EARTH_RADIUS_KM = 6371.0088
DEG = math.pi / 180.0
BLOCK = 32  # threads a block on a GPU; the simulator's tests pick fewer (see passes())
SHARE_RTOL = 1e-5
EDGE = 1e-9
POWER = 0


@cuda.jit(device=True)
def _minutes(lat, lon, i, j, circuity, speed_kmh):
    """t_ij as agglo.kernels.reach computes it (haversine_pre, then 60 · c · d / v)."""
    phi_i = lat[i] * DEG
    phi_j = lat[j] * DEG
    half_dphi = math.sin((phi_j - phi_i) / 2.0)
    half_dlam = math.sin((lon[j] * DEG - lon[i] * DEG) / 2.0)
    h = half_dphi * half_dphi + math.cos(phi_i) * math.cos(phi_j) * half_dlam * half_dlam
    h = min(max(h, 0.0), 1.0)
    km = 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
    return 60 * circuity * km / speed_kmh


@cuda.jit(device=True)
def _log_f(t, decay, beta, min_time):
    if decay == POWER:
        return -beta * math.log(max(t, min_time))
    return -beta * t


@cuda.jit(device=True)
def _scenario(params, s):
    """Scenario ``s``'s row of the parameter table (see :func:`mode_table`), the self time left out."""
    return params[s, 0], params[s, 1], params[s, 2], int(params[s, 3]), params[s, 4], params[s, 5], params[s, 7]


@cuda.jit(device=True)
def _reduce_block(t_id, width, sums, counts, best_w, best_j, second_w):
    """The block's threads' partial sums, counts and best (and second-best) cores, folded
    into slot 0 by halving (the lower index wins an exact tie)."""
    step = width // 2
    while step > 0:
        if t_id < step:
            o = t_id + step
            sums[t_id] += sums[o]
            counts[t_id] += counts[o]
            a_w, a_j, b_w, b_j = best_w[t_id], best_j[t_id], best_w[o], best_j[o]
            if b_j >= 0 and (a_j < 0 or b_w > a_w or (b_w == a_w and b_j < a_j)):
                second_w[t_id] = max(max(second_w[t_id], second_w[o]), a_w)
                best_w[t_id] = b_w
                best_j[t_id] = b_j
            else:
                second_w[t_id] = max(max(second_w[t_id], second_w[o]), b_w)
        cuda.syncthreads()
        step //= 2


@cuda.jit
def origin_kernel(
    offsets, neighbour, lat, lon, log_mass, lp_max, region, params, closed, is_core, n_reachable, denominator,
    best_core, best_weight, near,
):  # fmt: skip
    """Block (s, i) = (blockIdx.y, blockIdx.x). ``params`` (S, 8): circuity, speed_kmh,
    cap_min, decay, beta, gamma, self_time_min (NaN: none), min_time_min."""
    i = cuda.blockIdx.x
    s = cuda.blockIdx.y
    t_id = cuda.threadIdx.x
    width = cuda.blockDim.x
    sums = cuda.shared.array(BLOCK, dtype=np.float64)
    counts = cuda.shared.array(BLOCK, dtype=np.int64)
    best_w = cuda.shared.array(BLOCK, dtype=np.float64)
    best_j = cuda.shared.array(BLOCK, dtype=np.int64)
    second_w = cuda.shared.array(BLOCK, dtype=np.float64)
    circuity, speed, cap, decay, beta, gamma, min_time = _scenario(params, s)
    home = region[i]
    top = lp_max[i]
    total = 0.0
    count = 0
    bw = -1.0
    bj = -1
    sw = -1.0
    for p in range(offsets[i] + t_id, offsets[i + 1], width):
        j = neighbour[p]
        if closed[s] and region[j] != home:
            continue
        t = _minutes(lat, lon, i, j, circuity, speed)
        if not t <= cap:
            continue
        w = math.exp(gamma * (log_mass[j] - top) + _log_f(t, decay, beta, min_time))
        total += w
        count += 1
        if is_core[s, j]:
            if w > bw or (w == bw and j < bj):
                sw = max(sw, bw)
                bw = w
                bj = j
            else:
                sw = max(sw, w)
    sums[t_id] = total
    counts[t_id] = count
    best_w[t_id] = bw
    best_j[t_id] = bj
    second_w[t_id] = sw
    cuda.syncthreads()
    _reduce_block(t_id, width, sums, counts, best_w, best_j, second_w)
    if t_id == 0:
        total = sums[0]
        self_time = params[s, 6]
        if not math.isnan(self_time):
            total += math.exp(gamma * (log_mass[i] - top) + _log_f(self_time, decay, beta, min_time))
        n_reachable[s, i] = counts[0]
        denominator[s, i] = total
        best_core[s, i] = best_j[0]
        best_weight[s, i] = best_w[0] if best_j[0] >= 0 else 0.0
        near[s, i] = best_j[0] >= 0 and second_w[0] >= best_w[0] * (1.0 - SHARE_RTOL)


@cuda.jit
def inflow_kernel(
    offsets, neighbour, lat, lon, log_mass, lp_max, population, region, params, closed, denominator, inflow
):
    """Block (s, j): inflow_j = Σ_{i that reach j} population_i · w_ij / denominator_i,
    over j's own row (reach is symmetric: the same distance both ways, one region test)."""
    j = cuda.blockIdx.x
    s = cuda.blockIdx.y
    t_id = cuda.threadIdx.x
    width = cuda.blockDim.x
    sums = cuda.shared.array(BLOCK, dtype=np.float64)
    circuity, speed, cap, decay, beta, gamma, min_time = _scenario(params, s)
    total = 0.0
    for p in range(offsets[j] + t_id, offsets[j + 1], width):
        i = neighbour[p]
        if closed[s] and region[i] != region[j]:
            continue
        t = _minutes(lat, lon, i, j, circuity, speed)
        if not t <= cap:
            continue
        w = math.exp(gamma * (log_mass[j] - lp_max[i]) + _log_f(t, decay, beta, min_time))
        total += population[i] * w / denominator[s, i]
    sums[t_id] = total
    cuda.syncthreads()
    step = width // 2
    while step > 0:
        if t_id < step:
            sums[t_id] += sums[t_id + step]
        cuda.syncthreads()
        step //= 2
    if t_id == 0:
        inflow[s, j] = sums[0]


def mode_table(mode) -> np.ndarray:
    """The (S, 8) parameter table of a :class:`~agglo.kernels.records.ModeParams` the kernels read."""
    return np.ascontiguousarray(
        np.stack(
            [
                mode.circuity,
                mode.speed_kmh,
                mode.cap_min,
                mode.decay.astype(np.float64),
                mode.beta,
                mode.gamma,
                mode.self_time_min,
                mode.min_time_min,
            ],
            axis=1,
        ).astype(np.float64)
    )


def _to_device(rows, places, mode, closed, is_core) -> dict:
    """What the kernels read, copied to the device."""
    host = {
        "offsets": rows.offsets, "neighbour": rows.neighbour, "lat": places.lat, "lon": places.lon,
        "log_mass": places.log_mass, "lp_max": places.lp_max, "population": places.population,
        "region": places.region, "params": mode_table(mode), "closed": np.asarray(closed, dtype=np.bool_),
        "is_core": np.asarray(is_core, dtype=np.bool_),
    }  # fmt: skip
    return {name: cuda.to_device(np.ascontiguousarray(value)) for name, value in host.items()}


def gravity_passes(rows, places, mode, closed, is_core, block: int = BLOCK, timings: dict | None = None) -> dict:
    """The gravity model's passes for one mode on the GPU: ``n_reachable``, ``best_core``,
    ``best_weight``, ``denominator``, ``inflow`` as the CPU passes return them (weights
    relative to each row's largest log population), and ``near`` (S, N): the towns whose
    core the CPU might choose otherwise (see the module's notes). ``block``: threads a
    block, a power of two up to 32. ``timings``: filled with the seconds of the transfers
    to the device, the kernels and the transfers back (the benchmark's split)."""
    import time

    clock = [time.perf_counter()]

    def lap(name):
        if timings is not None:
            cuda.synchronize()
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - clock[0]
            clock[0] = now

    if block < 1 or block > BLOCK or block & (block - 1):
        raise ValueError(f"block = {block}: a power of two from 1 to {BLOCK}")
    n_scen, n = is_core.shape
    shape = (n, n_scen)
    d = _to_device(rows, places, mode, closed, is_core)
    n_reachable = cuda.device_array((n_scen, n), dtype=np.int32)
    denominator = cuda.device_array((n_scen, n), dtype=np.float64)
    best_core = cuda.device_array((n_scen, n), dtype=np.int32)
    best_weight = cuda.device_array((n_scen, n), dtype=np.float64)
    near = cuda.device_array((n_scen, n), dtype=np.bool_)
    inflow = cuda.device_array((n_scen, n), dtype=np.float64)
    lap("to_device_s")
    if n and n_scen:
        origin_kernel[shape, block](
            d["offsets"], d["neighbour"], d["lat"], d["lon"], d["log_mass"], d["lp_max"], d["region"], d["params"],
            d["closed"], d["is_core"], n_reachable, denominator, best_core, best_weight, near,
        )  # fmt: skip
        inflow_kernel[shape, block](
            d["offsets"], d["neighbour"], d["lat"], d["lon"], d["log_mass"], d["lp_max"], d["population"],
            d["region"], d["params"], d["closed"], denominator, inflow,
        )  # fmt: skip
    lap("kernels_s")
    out = {
        "n_reachable": n_reachable.copy_to_host(),
        "best_core": best_core.copy_to_host(),
        "best_weight": best_weight.copy_to_host(),
        "denominator": denominator.copy_to_host(),
        "inflow": inflow.copy_to_host(),
        "near": near.copy_to_host(),
    }
    lap("to_host_s")
    return out
