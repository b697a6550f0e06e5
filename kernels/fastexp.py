"""A float32 ``exp`` that LLVM can vectorise.

This llvmlite has no SVML, so ``np.exp`` inside a loop stays a scalar libm call and
the loop is not vectorised. :func:`exp32` is Cephes' ``expf`` (range reduction by
ln 2, a polynomial, the power of two built from its exponent bits): about
1 ulp, branch-free, so a loop over a row becomes SIMD code.

Arguments below -87.5 are raised to it: the result is then the smallest normal float
(about 1e-38) instead of a subnormal, which no sum in this engine can tell from 0.
Arguments must stay at or below 88 (no upper clamp, to save an instruction): callers
shift them so that the largest is about 0 (origin terms) or log(population) (inflow).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from kernels.jit import strict

LOG2E = np.float32(1.44269504088896341)
HALF = np.float32(0.5)
LN2_HI = np.float32(0.693359375)
LN2_LO = np.float32(-2.12194440e-4)
LOWEST = np.float32(-87.5)
# exp(r) = 1 + r + r^2 q(r) on |r| <= ln2/2, q of degree 3 fitted for the least largest
# relative error (Lawson iterations on Chebyshev nodes): 1.05e-7 before float32 rounding.
C2 = np.float32(0.4999923)
C3 = np.float32(0.16667114)
C4 = np.float32(0.04189012)
C5 = np.float32(0.00831253)
ONE = np.float32(1.0)


@intrinsic
def _pow2(typingctx, n):
    """2^n for a float32 ``n`` holding an integer in [-126, 127], from its exponent bits.

    The bits ``(n + 127) << 23`` are made in float arithmetic, (n + 127) · 2^23 (exact:
    at most 254 · 2^23 < 2^31), then converted to int32 and reinterpreted: no integer
    vector instruction, which AVX without AVX2 would split in halves.
    """
    if n != types.float32:
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        biased = builder.fadd(args[0], ir.Constant(f32, 127.0))
        bits = builder.fmul(biased, ir.Constant(f32, 8388608.0))
        k = builder.fptosi(bits, ir.IntType(32))
        return builder.bitcast(k, f32)

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
def exp32(x):
    """exp(x) for a float32 ``x``, in float32 (no fast-math: every FMA is explicit)."""
    x = max(x, LOWEST)
    n = np.floor(fma32(x, LOG2E, HALF))
    r = fma32(n, -LN2_HI, x)
    r = fma32(n, -LN2_LO, r)
    p = fma32(C5, r, C4)
    p = fma32(p, r, C3)
    p = fma32(p, r, C2)
    p = fma32(p * r, r, r + ONE)
    return p * _pow2(n)
