"""A row sum in 32 float64 lanes, in a fixed order: the same bits for any loop shape.

A row's float32 terms are added into 32 float64 lanes, lane ``q mod 32`` for term ``q``,
in row order, and the lanes are combined pairwise in a fixed tree (:func:`lane_total`).
The pair-loop shape sums a row at once (:func:`lane_sum`); the scenario-innermost shape
keeps a (32, S) accumulator and reads one scenario's lanes back (:func:`lanes_of`). Each
lane receives exactly the same IEEE additions in the same order (no fast-math flag), so a
row sum does not depend on the batch size nor on the number of threads.

Written with scalar accumulators, LLVM keeps one scalar chain per lane (its SLP
vectoriser does not pack loop-carried sums); :func:`lane_sums32` is that loop written as
four explicit vector chains of 8 lanes, with the same additions as the scalar loop.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from agglo.kernels.jit import inlined

WIDTH = 8
CHAINS = 4
LANES = WIDTH * CHAINS


@intrinsic
def lane_sums32(typingctx, terms, full):
    """Tuple of 32 float64: lane L = Σ float64(terms[q]) over q = L, L+32, ... < full,
    added in that order. ``terms`` is a contiguous float32 array; ``full`` a multiple
    of 32 no larger than its length (not checked)."""
    if not (isinstance(terms, types.Array) and terms.dtype == types.float32 and terms.layout == "C"):
        return None
    if not isinstance(full, types.Integer):
        return None
    result = types.UniTuple(types.float64, WIDTH * CHAINS)

    def codegen(context, builder, signature, args):
        arr_val, full_val = args
        ary = context.make_array(signature.args[0])(context, builder, arr_val)
        intp = context.get_value_type(types.intp)
        full_val = context.cast(builder, full_val, signature.args[1], types.intp)
        f8 = ir.VectorType(ir.FloatType(), WIDTH)
        d8 = ir.VectorType(ir.DoubleType(), WIDTH)
        zero_vec = ir.Constant(d8, [0.0] * WIDTH)
        start = builder.block
        header = builder.append_basic_block("lanes.header")
        body = builder.append_basic_block("lanes.body")
        done = builder.append_basic_block("lanes.done")
        builder.branch(header)
        builder.position_at_end(header)
        q = builder.phi(intp)
        q.add_incoming(ir.Constant(intp, 0), start)
        accs = []
        for _ in range(CHAINS):
            acc = builder.phi(d8)
            acc.add_incoming(zero_vec, start)
            accs.append(acc)
        builder.cbranch(builder.icmp_signed("<", q, full_val), body, done)
        builder.position_at_end(body)
        new = []
        for c in range(CHAINS):
            at = builder.add(q, ir.Constant(intp, c * WIDTH))
            ptr = builder.bitcast(cgutils.gep(builder, ary.data, at), f8.as_pointer())
            new.append(builder.fadd(accs[c], builder.fpext(builder.load(ptr, align=4, typ=f8), d8)))
        step = builder.add(q, ir.Constant(intp, WIDTH * CHAINS))
        q.add_incoming(step, body)
        for acc, value in zip(accs, new):
            acc.add_incoming(value, body)
        builder.branch(header)
        builder.position_at_end(done)
        out = context.get_constant_undef(result)
        for c in range(CHAINS):
            for i in range(WIDTH):
                lane = builder.extract_element(accs[c], ir.Constant(ir.IntType(32), i))
                out = builder.insert_value(out, lane, c * WIDTH + i)
        return out

    return result(terms, full), codegen


@inlined
def lane_total(lanes):
    """The fixed combination of the lane sums: pairwise, (0+1), (2+3), ... then again."""
    width = LANES
    while width > 1:
        width //= 2
        for i in range(width):
            lanes[i] = lanes[2 * i] + lanes[2 * i + 1]
    return lanes[0]


@inlined
def lane_sum(terms, n, lanes):
    """Σ terms[:n] by 32 lanes (q mod 32, in order), combined by :func:`lane_total`; the
    full blocks of 32 by :func:`lane_sums32`. ``lanes`` is a float64 scratch of 32."""
    full = n - n % LANES
    sums = lane_sums32(terms, full)
    for i in range(LANES):
        lanes[i] = sums[i]
    for q in range(full, n):
        lanes[q - full] += np.float64(terms[q])
    return lane_total(lanes)


@inlined
def lanes_of(acc, s, lanes):
    """The row sum of scenario ``s`` from a (32, S) lane accumulator."""
    for q in range(LANES):
        lanes[q] = acc[q, s]
    return lane_total(lanes)
