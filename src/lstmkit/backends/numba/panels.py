"""A register-blocked float32 product kernel of our own, generated as LLVM IR.

``block(A, lda, Wp, C_W, C, ldc, K)`` computes one ``4 x C_W`` block of ``C = A W``: four
rows of ``A`` times one *panel* of ``W`` (``C_W`` = :data:`COLUMNS` columns, stored as
``K`` contiguous rows), with the 16 accumulators (4 rows x 4 vectors of ``V`` lanes) held
in registers across the whole ``K`` loop::

    for k in range(K):                       # acc[r][j]: <V x float>
        w_j = Wp[k, Vj : Vj + V]             # 4 vector loads
        acc[r][j] += A[r, k] * w_j           # 16 fused multiply-adds (a broadcast per row)
    C[r, Vj : Vj + V] = acc[r][j]

The vectors are as wide as the host's registers: 16 lanes (64-column panels) where the
CPU has AVX-512, else 8 (32 columns). LLVM compiles the kernel for the host CPU
(AVX-512/AVX2 FMA on x86, NEON on ARM); numba's generic loops cannot keep such a block
in registers (they reach ~25 GFLOP/s). On one Zen 4 core (``(16, 256) @ (256, 1024)``)
the 8-lane block ran at 98 GFLOP/s and the 16-lane one at 112, the core's peak being
~115. :mod:`.blas` calls it through the symbol
``lstmkit_sblock`` from the panel driver in :mod:`.loops`. ``K >= 1``.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import llvmlite.ir as ir
from numba import njit


def _lanes() -> int:
    """float32 lanes of the host's widest vector registers (16 with AVX-512, else 8)."""
    llvm.initialize_native_target()
    return 16 if llvm.get_host_cpu_features().get("avx512f", False) else 8


LANES = _lanes()
ROWS, COLUMNS = 4, 4 * LANES  # the block; COLUMNS is the panel width
SYMBOL = "lstmkit_sblock"


def block_function(symbol: str, lanes: int) -> tuple[ir.Function, ir.Function]:
    """A new module's kernel ``symbol`` with the block kernels' signature ``void(A, lda,
    W, ldw, C, ldc, K)`` (float32 pointers, int64 strides) and the module's fused
    multiply-add of ``lanes`` float32 (``llvm.fmuladd``)."""
    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec, ptr = ir.VectorType(f32, lanes), f32.as_pointer()
    mod = ir.Module(name=symbol)
    mod.triple = llvm.get_process_triple()
    signature = ir.FunctionType(ir.VoidType(), [ptr, i64, ptr, i64, ptr, i64, i64])
    fmuladd_type = ir.FunctionType(vec, [vec, vec, vec])
    fmuladd = ir.Function(mod, fmuladd_type, name=f"llvm.fmuladd.v{lanes}f32")
    return ir.Function(mod, signature, name=symbol), fmuladd


#: Single-row kernels ``C[0, :V n] = A[0, :] W[:, :V n]`` (``n`` vectors of ``V``
#: lanes, ``W`` read at its row stride ``ldw``): (symbol, n). A batch-1 product has no
#: second row to share a weight load with; these keep one row's whole strip of columns
#: in registers instead (:func:`.loops.row_product`).
ROW_KERNELS = (("lstmkit_srow8", 8), ("lstmkit_srow1", 1))


def _module(symbol: str = SYMBOL, rows: int = ROWS, vectors: int = COLUMNS // LANES) -> ir.Module:
    """The kernel ``symbol``: a ``rows x (vectors * V)`` block (the docstring's, by
    default), its accumulators in registers for the whole ``K`` loop."""
    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec = ir.VectorType(f32, LANES)
    fn, fmuladd = block_function(symbol, LANES)
    mod = fn.module
    a, lda, w, ldw, c, ldc, k_total = fn.args
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vec, [0.0] * LANES)
    splat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    b.branch(loop)
    b.position_at_end(loop)
    k = b.phi(i64, "k")
    k.add_incoming(ir.Constant(i64, 0), entry)
    acc = [[b.phi(vec) for _ in range(vectors)] for _ in range(rows)]
    for row in acc:
        for x in row:
            x.add_incoming(zero, entry)
    w_row = b.gep(w, [b.mul(k, ldw)])
    w_vec = [b.load(b.bitcast(b.gep(w_row, [ir.Constant(i64, LANES * j)]), vec.as_pointer()),
                    align=4) for j in range(vectors)]  # fmt: skip
    new = []
    for r in range(rows):
        a_rk = b.load(b.gep(a, [b.add(b.mul(ir.Constant(i64, r), lda), k)]))
        one = b.insert_element(ir.Constant(vec, ir.Undefined), a_rk, ir.Constant(ir.IntType(32), 0))
        a_vec = b.shuffle_vector(one, ir.Constant(vec, ir.Undefined), splat)
        new.append([b.call(fmuladd, [a_vec, w_vec[j], acc[r][j]]) for j in range(vectors)])
    k_next = b.add(k, ir.Constant(i64, 1))
    k.add_incoming(k_next, loop)
    for r in range(rows):
        for j in range(vectors):
            acc[r][j].add_incoming(new[r][j], loop)
    b.cbranch(b.icmp_signed("<", k_next, k_total), loop, done)
    b.position_at_end(done)
    for r in range(rows):
        c_row = b.gep(c, [b.mul(ir.Constant(i64, r), ldc)])
        for j in range(vectors):
            out = b.bitcast(b.gep(c_row, [ir.Constant(i64, LANES * j)]), vec.as_pointer())
            b.store(new[r][j], out, align=4)
    b.ret_void()
    return mod


def compile_block() -> tuple[llvm.ExecutionEngine, int]:
    """The block kernel compiled for this CPU: its execution engine (keep it alive) and
    the function's address."""
    return compile_module(_module(), SYMBOL)


def compile_rows() -> list[tuple[str, llvm.ExecutionEngine, int]]:
    """The single-row kernels of :data:`ROW_KERNELS` compiled for this CPU: (symbol,
    execution engine (keep it alive), address) each."""
    return [(name, *compile_module(_module(name, 1, n), name)) for name, n in ROW_KERNELS]


def compile_module(module: ir.Module, symbol: str) -> tuple[llvm.ExecutionEngine, int]:
    """``module`` compiled for the host CPU: its execution engine (keep it alive) and the
    address of its function ``symbol``."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )
    engine = llvm.create_mcjit_compiler(parsed, target)
    engine.finalize_object()
    return engine, engine.get_function_address(symbol)


@njit(cache=True, nogil=True)
def pack(w, transpose, out):
    """``out (count, K, COLUMNS)``: the operand ``W (K, N)`` of ``A W`` cut into panels,
    zero past column ``N``: ``W = w^T`` for ``w (N, K)`` when ``transpose``, else ``w``.
    One pass over ``w``, a panel's rows at a time (a whole transposed copy first would
    stride across all of ``w``: 5x slower at 1024 x 512)."""
    count, K, C = out.shape
    N = w.shape[0] if transpose else w.shape[1]
    for p in range(count):
        n0 = p * C
        width = min(C, N - n0)
        panel = out[p]
        if transpose:
            for c in range(width):
                row = w[n0 + c]
                for k in range(K):
                    panel[k, c] = row[k]
        else:
            for k in range(K):
                for c in range(width):
                    panel[k, c] = w[k, n0 + c]
        for k in range(K):
            for c in range(width, C):
                panel[k, c] = 0.0
