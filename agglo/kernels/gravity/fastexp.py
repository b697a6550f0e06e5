"""Float32 ``exp2`` and ``exp`` that LLVM can vectorise.

This llvmlite has no SVML, so ``np.exp`` inside a loop stays a scalar libm call and
the loop is not vectorised. :func:`exp2_32` is branch-free float32 arithmetic, so a
loop over a row or over a batch of scenarios becomes SIMD code:

- ``x`` is rounded to the nearest integer ``n`` by adding ``1.5 · 2^23 + 127``: the
  sum's low mantissa bits are then ``n + 127``, the biased exponent of ``2^n``, and
  ``r = x - n`` is exact (|r| <= 1/2);
- ``2^r`` is a degree-5 polynomial fitted for the least largest relative error on
  [-1/2, 1/2] (Lawson iterations on Chebyshev nodes: 9.1e-8 before float32 rounding,
  1.6e-7 with it), evaluated by explicit FMAs (the same bits in scalar and vector code);
- ``2^n`` is the sum's bits shifted left by 23.

Callers that need ``exp`` fold ``log2 e`` into their constants (the gravity kernels
do: one multiplication and the Cody-Waite reduction less per term); :func:`exp32`
does it for one value.

Arguments below -125.5 are raised to it: the result is then about 2^-125.5 (2e-38),
a normal float, instead of a subnormal, which no sum in this engine can tell from 0.
Arguments must stay at or below 127 (no upper clamp, to save an instruction): callers
shift them so that the largest is about 0 (origin terms) or log2(population) (inflow).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from agglo.kernels.jit import strict

LOG2E = np.float32(1.44269504088896341)
LOWEST = np.float32(-125.5)
ROUNDER = np.float32(12583039.0)  # 1.5 · 2^23 + 127
# 2^r = 1 + r (C1 + r (C2 + r (C3 + r (C4 + r C5)))) on |r| <= 1/2.
C1 = np.float32(0.6931470036506653)
C2 = np.float32(0.24022242426872253)
C3 = np.float32(0.05550733581185341)
C4 = np.float32(0.009671512991189957)
C5 = np.float32(0.001326472731307149)
ONE = np.float32(1.0)


@intrinsic
def _exponent_bits(typingctx, t):
    """The float32 whose bits are those of ``t`` shifted left by 23: 2^n when the low
    bits of ``t`` hold ``n + 127`` in [1, 254]."""
    if t != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        return builder.bitcast(builder.shl(bits, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def fma32(typingctx, a, b, c):
    """a · b + c rounded once (llvm.fma): the same bits in scalar and vector code."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@strict
def exp2_32(x):
    """2^x for a float32 ``x``, in float32 (no fast-math: every FMA is explicit)."""
    x = max(x, LOWEST)
    t = x + ROUNDER
    r = x - (t - ROUNDER)
    p = fma32(C5, r, C4)
    p = fma32(p, r, C3)
    p = fma32(p, r, C2)
    p = fma32(p, r, C1)
    p = fma32(p, r, ONE)
    return p * _exponent_bits(t)


@strict
def exp32(x):
    """exp(x) for a float32 ``x``: :func:`exp2_32` of ``x · log2 e``."""
    return exp2_32(x * LOG2E)
