"""A register-blocked float32 kernel for ``A W^T`` with ``W`` in torch's own layout,
generated as LLVM IR: the products of the forward (``x W_ih^T``, ``h W_hh^T``) need no
preparation of the weight at all.

``block(A, lda, W, ldw, C, ldc, K)`` computes one block ``C[r, j] = A[r, :] . W[j, :]``
of ``R`` rows of ``A`` against ``J`` rows of ``W`` (``4 x 4``, and ``1 x 16`` for a
single row), 16 accumulators of ``V`` lanes along ``K``, reduced at the end by a
butterfly (pairs of vectors folded into one four times, 15 shuffles-and-adds for all 16
sums instead of 60)::

    for k in range(0, K - K % V, V):         # acc[r][j]: <V x float>
        a_r = A[r, k : k + V]; w_j = W[j, k : k + V]     # R + J vector loads
        acc[r][j] += a_r * w_j                            # 16 fused multiply-adds
    s[J r + j] = sum(acc[r][j]) + A[r, tail] . W[j, tail] # butterfly, then the K % V tail
    C[r, j] = s[J r + j]

``V`` is 16 where the CPU has AVX-512, else 8 (as :mod:`.panels`). The driver
(:func:`.loops.dot_columns`) covers the last rows and columns.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import llvmlite.ir as ir

from .panels import LANES, block_function, compile_module

#: The kernels: (symbol, rows of A, rows of W); 16 accumulators each.
SHAPES = (("lstmkit_sdots4x4", 4, 4), ("lstmkit_sdots1x16", 1, 16))
_F32, _I64, _I32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)


def _fold(b: ir.IRBuilder, vectors: list, lanes: int) -> list:
    """The butterfly: adjacent vectors folded pairwise until each lane holds one whole
    sum; returns vectors whose lanes, in order, are the sums of the inputs in order."""
    group = lanes // 2
    while group >= 1:
        lo = [i for i in range(2 * lanes) if (i // group) % 2 == 0]
        hi = [i for i in range(2 * lanes) if (i // group) % 2 == 1]
        folded = []
        for x, y in zip(vectors[::2], vectors[1::2]):
            low = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, lanes), lo))
            high = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, lanes), hi))
            folded.append(b.fadd(low, high))
        vectors, group = folded, group // 2
    return vectors


def _module(lanes: int, symbol: str, a_rows: int, w_rows: int) -> ir.Module:
    vec = ir.VectorType(_F32, lanes)
    fn, fmuladd = block_function(symbol, lanes)
    mod = fn.module
    a, lda, w, ldw, c, ldc, k_total = fn.args
    entry, loop, reduce_, tail, done = (
        fn.append_basic_block(n) for n in ("entry", "loop", "reduce", "tail", "done")
    )
    b = ir.IRBuilder(entry)
    k_vec = b.mul(b.sdiv(k_total, ir.Constant(_I64, lanes)), ir.Constant(_I64, lanes))
    rows_a = [b.gep(a, [b.mul(ir.Constant(_I64, r), lda)]) for r in range(a_rows)]
    rows_w = [b.gep(w, [b.mul(ir.Constant(_I64, j), ldw)]) for j in range(w_rows)]
    zero = ir.Constant(vec, [0.0] * lanes)
    b.cbranch(b.icmp_signed(">", k_vec, ir.Constant(_I64, 0)), loop, reduce_)

    b.position_at_end(loop)  # the vector loop over K
    k = b.phi(_I64)
    k.add_incoming(ir.Constant(_I64, 0), entry)
    acc = [b.phi(vec) for _ in range(a_rows * w_rows)]
    for x in acc:
        x.add_incoming(zero, entry)

    def load(row: ir.Value) -> ir.Value:
        return b.load(b.bitcast(b.gep(row, [k]), vec.as_pointer()), align=4)

    av, wv = [load(r) for r in rows_a], [load(r) for r in rows_w]
    new = [b.call(fmuladd, [av[r], wv[j], acc[r * w_rows + j]]) for r in range(a_rows)
           for j in range(w_rows)]  # fmt: skip
    k_next = b.add(k, ir.Constant(_I64, lanes))
    k.add_incoming(k_next, loop)
    for x, y in zip(acc, new):
        x.add_incoming(y, loop)
    b.cbranch(b.icmp_signed("<", k_next, k_vec), loop, reduce_)

    b.position_at_end(reduce_)  # 16 sums, in vectors of `lanes`
    sums_in = []
    for i in range(a_rows * w_rows):
        phi = b.phi(vec)
        phi.add_incoming(zero, entry)
        phi.add_incoming(new[i], loop)
        sums_in.append(phi)
    sums = _fold(b, sums_in, lanes)
    b.cbranch(b.icmp_signed("<", k_vec, k_total), tail, done)

    b.position_at_end(tail)  # the last K % lanes terms, one k at a time, as vectors
    kt = b.phi(_I64)
    kt.add_incoming(k_vec, reduce_)
    acc_t = [b.phi(vec) for _ in sums]
    for x, s in zip(acc_t, sums):
        x.add_incoming(s, reduce_)
    a_k = [b.load(b.gep(row, [kt])) for row in rows_a]
    w_k = [b.load(b.gep(row, [kt])) for row in rows_w]
    new_t = []
    for v, x in enumerate(acc_t):
        av_t, wv_t = ir.Constant(vec, ir.Undefined), ir.Constant(vec, ir.Undefined)
        for lane in range(lanes):
            s = v * lanes + lane  # sum s is C[s // w_rows, s % w_rows]
            at = ir.Constant(_I32, lane)
            av_t = b.insert_element(av_t, a_k[s // w_rows], at)
            wv_t = b.insert_element(wv_t, w_k[s % w_rows], at)
        new_t.append(b.call(fmuladd, [av_t, wv_t, x]))
    kt_next = b.add(kt, ir.Constant(_I64, 1))
    kt.add_incoming(kt_next, tail)
    for x, y in zip(acc_t, new_t):
        x.add_incoming(y, tail)
    b.cbranch(b.icmp_signed("<", kt_next, k_total), tail, done)

    b.position_at_end(done)
    final = []
    for v in range(len(sums)):
        phi = b.phi(vec)
        phi.add_incoming(sums[v], reduce_)
        phi.add_incoming(new_t[v], tail)
        final.append(phi)
    for s in range(a_rows * w_rows):
        value = b.extract_element(final[s // lanes], ir.Constant(_I32, s % lanes))
        r, j = divmod(s, w_rows)
        b.store(value, b.gep(c, [b.add(b.mul(ir.Constant(_I64, r), ldc), ir.Constant(_I64, j))]))
    b.ret_void()
    return mod


def compile_blocks() -> list[tuple[str, llvm.ExecutionEngine, int]]:
    """Each kernel of :data:`SHAPES` compiled for this CPU: its symbol, its execution
    engine (keep it alive) and its address."""
    return [(name, *compile_module(_module(LANES, name, rows, cols), name))
            for name, rows, cols in SHAPES]  # fmt: skip
