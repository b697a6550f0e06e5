"""The row sum of the pair-shaped kernels: 32 float64 lanes in a fixed order, bit for bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo.kernels.gravity.lanes import LANES
from agglo.kernels.gravity.lanes import lane_sum as _lane_sum


def _reference(terms, n):
    """Lane L = ((0 + t[L]) + t[L+32]) + ... in float64, then pairwise (0+1), (2+3), ..."""
    lanes = [0.0] * LANES
    for q in range(n):
        lanes[q % LANES] = lanes[q % LANES] + float(terms[q])
    while len(lanes) > 1:
        lanes = [lanes[2 * i] + lanes[2 * i + 1] for i in range(len(lanes) // 2)]
    return lanes[0]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 700), seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.0, 5.0, 30.0]))
def test_lane_sum_is_the_fixed_order_sum(n, seed, spread):
    rng = np.random.default_rng(seed)
    # A wide spread of magnitudes makes the float64 sum inexact, so a changed order shows.
    terms = np.minimum(rng.random(n + 40) * np.exp(rng.normal(0.0, spread, n + 40)), 1e30).astype(np.float32)
    lanes = np.zeros(LANES)
    got = _lane_sum(terms, n, lanes)
    assert got == _reference(terms, n)


def test_a_changed_order_would_show():
    # The check above can fail: the same terms summed in another order differ in the last bits.
    rng = np.random.default_rng(1)
    terms = np.minimum(rng.random(640) * np.exp(rng.normal(0.0, 5.0, 640)), 1e30).astype(np.float32)
    lanes = np.zeros(LANES)
    assert _lane_sum(terms, 640, lanes) != _reference(terms[::-1].copy(), 640)
