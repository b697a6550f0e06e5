"""A float32 ``exp`` that LLVM can vectorise.

This llvmlite has no SVML, so ``np.exp`` inside a loop stays a scalar libm call and
the loop is not vectorised. :func:`exp32` is Cephes' ``expf`` (range reduction by
ln 2, a polynomial, the power of two built from its exponent bits): about
1 ulp, branch-free, so a loop over a row becomes SIMD code.

Arguments are clamped to [-87.5, 88]: below, the result is the smallest normal
float (about 1e-38) or less instead of a subnormal, which no sum in this engine can
tell from 0; callers shift their arguments so that the largest is about 0.
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
HIGHEST = np.float32(88.0)
P1 = np.float32(1.3981999507e-3)
P2 = np.float32(8.3334519073e-3)
P3 = np.float32(4.1665795894e-2)
P4 = np.float32(1.6666665459e-1)
P5 = np.float32(5.0000001201e-1)
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
    x = min(max(x, LOWEST), HIGHEST)
    n = np.floor(fma32(x, LOG2E, HALF))
    r = fma32(n, -LN2_HI, x)
    r = fma32(n, -LN2_LO, r)
    p = fma32(P1, r, P2)
    p = fma32(p, r, P3)
    p = fma32(p, r, P4)
    p = fma32(p, r, P5)
    p = fma32(p * r, r, r + ONE)
    return p * _pow2(n)
