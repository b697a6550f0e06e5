"""Explicit SIMD where LLVM will not find it by itself.

A row sum in :mod:`agglo.kernels.gravity` adds its float32 terms into 32 float64 lanes,
lane ``q mod 32`` for term ``q``, in row order. Written with scalar accumulators,
LLVM keeps one scalar chain per lane (its SLP vectoriser does not pack loop-carried
sums); :func:`lane_sums32` is that loop written as four vector chains of 8 lanes.
Each lane still receives exactly the same IEEE additions in the same order (no
fast-math flag), so the bits equal those of a scalar loop and of the batched kernels.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

WIDTH = 8
CHAINS = 4


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
