"""agglo.kernels.gravity.fastexp against NumPy's float64 exp2/exp, and its scalar against its SIMD bits."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo.kernels.gravity.fastexp import LOWEST, exp2_32, exp32
from agglo.kernels.jit import strict

EXP2_RTOL = 2.5e-7  # measured 1.6e-7: the polynomial's 9.1e-8 plus float32 rounding


@strict
def _exp2_loop(x, out):
    for i in range(x.shape[0]):  # LLVM vectorises this loop (explicit FMAs: same bits)
        out[i] = exp2_32(x[i])


@strict
def _exp_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = exp32(x[i])


@strict
def _exp2_one(x):
    return exp2_32(x)


def _exp2(x):
    out = np.empty_like(x)
    _exp2_loop(x, out)
    return out


def test_exp2_is_within_its_bound_everywhere():
    # Every float32 step of 2^-12 over the whole allowed range, and the integers' neighbours.
    x = np.arange(-125.5, 127.0, 2.0**-12, dtype=np.float64).astype(np.float32)
    x = np.concatenate([x, np.nextafter(np.arange(-125, 127, dtype=np.float32), np.float32(np.inf))])
    got = _exp2(x).astype(np.float64)
    want = np.exp2(x.astype(np.float64))
    assert np.isfinite(got).all() and (got > 0).all()
    assert np.max(np.abs(got / want - 1.0)) <= EXP2_RTOL


def test_exp2_clamps_below_and_stays_normal():
    x = np.array([-125.5, -126.0, -200.0, -np.inf], dtype=np.float32)
    got = _exp2(x)
    assert np.all(got == got[0])
    assert got[0] >= np.finfo(np.float32).tiny  # a normal float, no subnormal
    assert abs(float(got[0]) / 2.0 ** float(LOWEST) - 1.0) <= EXP2_RTOL


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-125.5, 127.0, width=32), min_size=1, max_size=200))
def test_exp2_scalar_and_vector_bits_agree(values):
    x = np.asarray(values, dtype=np.float32)
    vector = _exp2(x)
    scalar = np.array([_exp2_one(v) for v in x], dtype=np.float32)
    assert np.array_equal(vector.view(np.int32), scalar.view(np.int32))


def test_exp_relative_error_grows_only_with_the_rounding_of_x_log2e():
    x = np.linspace(-86.9, 88.0, 400_001).astype(np.float32)  # above the clamp (-125.5 / log2 e)
    got = np.empty_like(x)
    _exp_loop(x, got)
    rel = np.abs(got.astype(np.float64) / np.exp(x.astype(np.float64)) - 1.0)
    # x · log2 e is rounded to float32: an absolute error of |x| · 2^-24 · log2 e in the exponent.
    bound = EXP2_RTOL + np.abs(x.astype(np.float64)) * np.log(2.0) * np.log2(np.e) * 2.0**-23
    assert np.all(rel <= bound)
