"""Matrix products callable from inside compiled (numba) loops, with weights prepared once.

The ``compiled`` engine runs a whole layer-direction, GEMMs included, in one compiled call.
Its loops call the products through C symbols with the signature of MKL's
``cblas_?gemm_compute``::

    gemm(layout, trans_a, trans_b, M, N, K, A, lda, W, ldw, beta, C, ldc)
    C (M, N) = A (M, K) @ W (K, N) + beta * C          # row-major; A and C plain arrays

where ``W`` is a weight *prepared* for its route (:func:`prepared`, once per call). Routes:

* ``MKL`` (``lstmkit_sgemm_mkl``): MKL's packed GEMM from torch's own ``libtorch_cpu``
  (x86 wheels export ``cblas_sgemm_pack``/``cblas_sgemm_compute``): the weight is packed
  once into MKL's panel layout and every step reuses it; float32 only.
* ``PANELS`` (``lstmkit_sblock``, driven by :func:`.loops.panel_product`): our own
  register-blocked kernel (:mod:`.panels`, LLVM IR compiled for the host CPU) over the
  weight cut into panels of 32 or 64 columns; float32, every platform.
* ``LOOPS`` (``lstmkit_sgemm_loops``, ``lstmkit_dgemm_loops``): a compiled
  row-times-matrix loop (a numba ``cfunc``, vectorised along ``N``): float64, and
  float32 where it measures fastest (a single row).
* ``DOTS`` (``lstmkit_sdots4x4``, ``lstmkit_sdots1x16``, driven by
  :func:`.loops.dot_product`): register-blocked blocks of dot products (:mod:`.dots`)
  over the weight in torch's own layout (``W^T`` rows are ``weight`` rows), so a forward
  product needs no preparation at all; float32, every platform.
* ``ROWS`` (``lstmkit_srow8``, ``lstmkit_srow1``, driven by :func:`.loops.row_product`):
  row by row, a strip of up to 128 columns of ``W (K, N)`` (64 without AVX-512) in
  registers over the whole ``K`` (:mod:`.panels`' single-row kernels): for the one or
  few rows of a streaming step, where no second row shares a weight load; float32,
  every platform.

The loops link the symbols by name, so numba's on-disk cache stays valid in every
process. Which route a float32 product of a given shape takes is **measured** the first
time that shape is seen (:func:`choose`: each runs on random data, in the threading the
call will use, and its preparation is timed too; the least total for the call's number
of products wins): the libraries' speeds differ by CPU (MKL's kernels run at
different fractions of peak on Intel and AMD), so no threshold is written down.
``LSTMKIT_GEMM=loops`` forces our own kernels (no MKL), ``=mkl`` forces MKL (and fails
loudly without it); :func:`route` describes what runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from llvmlite import binding as llvm
from numba import carray, cfunc, types
from torch import Tensor

from . import dots, panels

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162


def _signature(dtype: types.Float) -> types.Signature:
    ptr, i32 = types.CPointer(dtype), types.int32
    return types.void(i32, i32, i32, i32, i32, i32, ptr, i32, ptr, i32, dtype, ptr, i32)


SGEMM_SIGNATURE = _signature(types.float32)
DGEMM_SIGNATURE = _signature(types.float64)


def _gemm_loops(layout, trans_a, trans_b, M, N, K, a, lda, w, ldw, beta, c, ldc):
    """``C = A W + beta C`` with ``W`` a plain row-major (K, N) matrix: for each row of A
    the rows of W stream through once and the ``N`` loop vectorises."""
    A = carray(a, (M, lda))
    W = carray(w, (K, ldw))
    C = carray(c, (M, ldc))
    for i in range(M):
        row = C[i]
        if beta == 0:
            for n in range(N):
                row[n] = 0
        elif beta != 1:
            for n in range(N):
                row[n] *= beta
        for k in range(K):
            aik = A[i, k]
            wk = W[k]
            for n in range(N):
                row[n] += aik * wk[n]


_FLAGS = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy", "cache": True}
_sgemm_loops = cfunc(SGEMM_SIGNATURE, **_FLAGS)(_gemm_loops)
_dgemm_loops = cfunc(DGEMM_SIGNATURE, **_FLAGS)(_gemm_loops)


def _mkl() -> ctypes.CDLL | None:
    """torch's ``libtorch_cpu`` when it exports MKL's packed GEMM, else None."""
    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        lib = ctypes.CDLL(str(path))
        for name in ("cblas_sgemm_pack_get_size", "cblas_sgemm_pack", "cblas_sgemm_compute",
                     "mkl_set_num_threads_local"):  # fmt: skip
            getattr(lib, name)
    except (OSError, AttributeError):
        return None
    lib.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
    lib.cblas_sgemm_pack_get_size.argtypes = [ctypes.c_int] * 4
    lib.cblas_sgemm_pack.restype = None
    lib.cblas_sgemm_pack.argtypes = [ctypes.c_int] * 6 + [
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
    ]  # fmt: skip
    lib.mkl_set_num_threads_local.restype = ctypes.c_int
    # torch's build exports it with the Fortran convention (the same address as
    # MKL_SET_NUM_THREADS_LOCAL): the count is passed by reference
    lib.mkl_set_num_threads_local.argtypes = [ctypes.POINTER(ctypes.c_int)]
    return lib


def _choose() -> tuple[str, ctypes.CDLL | None]:
    """What ``LSTMKIT_GEMM`` asks (``auto``, ``mkl`` or ``loops``; ``loops`` when MKL is
    missing) and MKL's library."""
    asked = os.environ.get("LSTMKIT_GEMM", "auto")
    if asked not in ("auto", "mkl", "loops"):
        raise ValueError(f"LSTMKIT_GEMM must be 'auto', 'mkl' or 'loops', got {asked!r}")
    lib = None if asked == "loops" else _mkl()
    if asked == "mkl" and lib is None:
        raise RuntimeError(
            "LSTMKIT_GEMM=mkl, but this torch build exports no MKL packed GEMM "
            "(cblas_sgemm_compute in libtorch_cpu); unset it to use the portable route"
        )
    return (asked if lib is not None else "loops"), lib


_ASKED, _LIB = _choose()
MKL, LOOPS, PANELS, DOTS, ROWS = 0, 1, 2, 3, 4  # route codes, as the loops take them
_mkl_address = (
    ctypes.cast(_LIB.cblas_sgemm_compute, ctypes.c_void_p).value
    if _LIB is not None else _sgemm_loops.address  # never chosen without MKL
)  # fmt: skip
llvm.add_symbol("lstmkit_sgemm_mkl", _mkl_address)
llvm.add_symbol("lstmkit_sgemm_loops", _sgemm_loops.address)
llvm.add_symbol("lstmkit_dgemm_loops", _dgemm_loops.address)
_block_engine, _block_address = panels.compile_block()  # the engine must stay alive
llvm.add_symbol(panels.SYMBOL, _block_address)
_dots_engines = dots.compile_blocks()
_row_engines = panels.compile_rows()
for _name, _, _address in (*_dots_engines, *_row_engines):
    llvm.add_symbol(_name, _address)

#: The symbols the compiled loops call (see the module docstring).
sgemm_mkl = types.ExternalFunction("lstmkit_sgemm_mkl", SGEMM_SIGNATURE)
sgemm_loops = types.ExternalFunction("lstmkit_sgemm_loops", SGEMM_SIGNATURE)
dgemm_loops = types.ExternalFunction("lstmkit_dgemm_loops", DGEMM_SIGNATURE)
_fp, _i64 = types.CPointer(types.float32), types.int64
_block_signature = types.void(_fp, _i64, _fp, _i64, _fp, _i64, _i64)
sblock = types.ExternalFunction(panels.SYMBOL, _block_signature)
sdots4x4 = types.ExternalFunction("lstmkit_sdots4x4", _block_signature)
sdots1x16 = types.ExternalFunction("lstmkit_sdots1x16", _block_signature)
srow8 = types.ExternalFunction("lstmkit_srow8", _block_signature)
srow1 = types.ExternalFunction("lstmkit_srow1", _block_signature)


def available() -> tuple[int, ...]:
    """The float32 route codes this process can run (``MKL`` only with torch's MKL)."""
    ours = (LOOPS, PANELS, DOTS, ROWS)
    return ours if _LIB is None else (MKL, *ours)


def route(dtype: torch.dtype = torch.float32) -> str:
    """What the compiled loops' products run on for ``dtype``: ``"loops"`` (float64),
    ``"panels"`` (float32 forced or without MKL), ``"mkl-packed"`` (forced), or
    ``"mkl-packed|panels|loops|dots|rows (measured per shape)"``."""
    if dtype != torch.float32:
        return "loops"
    if _ASKED == "loops":
        return "panels"
    if _ASKED == "mkl":
        return "mkl-packed"
    return "mkl-packed|panels|loops|dots|rows (measured per shape)"


def forced() -> bool:
    """Whether ``LSTMKIT_GEMM`` (or a torch without MKL) fixes the route: then
    :func:`choose` measures nothing."""
    return _ASKED != "auto"


def set_thread_products(threads: int) -> int:
    """How many threads MKL may use for products called from this thread (0: torch's
    setting); returns the previous value. The loops route is single-threaded anyway."""
    if _LIB is None:
        return 0
    return _LIB.mkl_set_num_threads_local(ctypes.byref(ctypes.c_int(threads)))


def prepared(weight: Tensor, transpose: bool, rows: int, way: int) -> np.ndarray:
    """``weight (N, K)`` as route ``way``'s ``W`` operand of ``A @ W``: ``weight^T``
    (K, N) when ``transpose`` (for ``x W^T``), else ``weight`` itself (for ``x W``).

    Done once per call (for every step and thread of it), not cached across calls: a
    cache keyed on the tensor's version misses writes through ``.data`` (gradcheck's
    perturbations, some training code), and checking the values costs as much as
    preparing them (one pass over the weight, well under 1% of a call)."""
    w = weight.detach().contiguous().numpy()
    if way == DOTS:  # rows of W^T: the weight itself for x W^T, else its transpose
        return w if transpose else np.ascontiguousarray(w.T)
    if way == PANELS:  # (K, N) cut into panels of COLUMNS, zero-padded
        n = w.shape[0] if transpose else w.shape[1]
        count = -(-n // panels.COLUMNS)
        cut = np.empty((count, w.shape[1] if transpose else w.shape[0], panels.COLUMNS), w.dtype)
        panels.pack(w, transpose, cut)
        return cut.reshape(-1, panels.COLUMNS)
    if way in (LOOPS, ROWS):
        return np.ascontiguousarray(w.T if transpose else w)
    n, k = (w.shape[0], w.shape[1]) if transpose else (w.shape[1], w.shape[0])
    size = _LIB.cblas_sgemm_pack_get_size(B_MATRIX, rows, n, k)
    packed = np.empty((1, size // 4 + 1), np.float32)  # 2-D like the loops route's
    _LIB.cblas_sgemm_pack(
        ROW_MAJOR, B_MATRIX, TRANS if transpose else NO_TRANS, rows, n, k, 1.0,
        w.ctypes.data, w.shape[1], packed.ctypes.data,
    )  # fmt: skip
    return packed


#: The float32 routes :func:`choose` measures (without MKL, all but MKL).
CANDIDATES = tuple(way for way in (MKL, PANELS, LOOPS, DOTS, ROWS) if way in available())

#: Rows below which a product may run row by row (``ROWS``): the others share each weight
#: load among four rows (the dot-product and panel blocks' height).
ROW_BY_ROW = 4


def candidates(rows: int) -> tuple[int, ...]:
    """The routes measured for products of ``rows`` rows: :data:`CANDIDATES`, less
    ``ROWS`` from :data:`ROW_BY_ROW` rows on (it would only lose, and cost the time of
    measuring it)."""
    return CANDIDATES if rows < ROW_BY_ROW else _BLOCK_CANDIDATES


_BLOCK_CANDIDATES = tuple(w for w in CANDIDATES if w != ROWS)

#: The most rows :func:`choose` times a product at: a longer product (a whole input
#: projection) is timed at this many rows and its time scaled by its rows, in proportion.
MEASURED_ROWS = 256

#: Per (rows, K, N, threads the product may use, transpose): each route's measured
#: seconds to prepare the weight once and to run one product, in :func:`candidates` order.
_measured: dict[tuple[int, int, int, int, bool], list[tuple[float, float]]] = {}


def choose(
    dtype: torch.dtype, rows: int, k: int, n: int, alone: bool, steps: int = 1,
    transpose: bool = True, among: tuple[int, ...] | None = None,
) -> int:  # fmt: skip
    """The route for ``steps`` products ``(rows, k) @ (k, n)`` of ``dtype`` with one
    weight prepared once (from ``weight (n, k)`` when ``transpose``, the forward's
    ``x W^T``, else from ``weight (k, n)``); ``alone``: the products run single-threaded
    (a row range on its own thread), else on torch's threads. The least in total
    (preparing the weight, then ``steps`` products) by times measured once per shape (a
    few milliseconds at most) and remembered; ``among``: the routes the caller can use
    (default: all)."""
    if dtype != torch.float32:
        return LOOPS
    if forced():  # forced, or no MKL
        return MKL if _ASKED == "mkl" else PANELS
    threads = 1 if alone else torch.get_num_threads()
    sample = max(1, min(rows, MEASURED_ROWS))  # a product's time grows with its rows
    key = (sample, k, n, threads, transpose)
    times = _measured.get(key)
    if times is None:
        times = _measured[key] = _measure(sample, k, n, alone, transpose)
    scale = steps * rows / sample
    ways = candidates(sample)
    totals = {way: prep + scale * product for way, (prep, product) in zip(ways, times)}
    return min((way for way in totals if among is None or way in among), key=totals.__getitem__)


def fastest(run: Callable[[], object], warm_up: bool = True) -> float:
    """Seconds of ``run()`` at its fastest of three calls, after a first call that is not
    timed when ``warm_up`` (it compiles, and measures what it needs)."""
    if warm_up:
        run()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def products_alone(alone: bool) -> Iterator[None]:
    """MKL's products single-threaded from this thread meanwhile when ``alone`` (as on a
    row range's own thread), else as torch's threads allow."""
    previous = set_thread_products(1) if alone else None
    try:
        yield
    finally:
        if previous is not None:
            set_thread_products(previous)


def _measure(rows: int, k: int, n: int, alone: bool, transpose: bool) -> list[tuple[float, float]]:
    """Each route's time to prepare the weight and to run one product, on random data
    (:func:`fastest`)."""
    from .loops import products  # the compiled side; imported on first measure

    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, k, generator=g).numpy()
    w = torch.randn(*((n, k) if transpose else (k, n)), generator=g)
    c = np.empty((rows, n), np.float32)
    reps = int(min(50, max(2, 2e6 // max(1, rows * k * n))))
    measured = []
    with products_alone(alone):
        for way in candidates(rows):
            prepared_w = prepared(w, transpose, rows, way)
            product = fastest(functools.partial(products, a, prepared_w, c, way, reps)) / reps
            prep = fastest(functools.partial(prepared, w, transpose, rows, way), warm_up=False)
            measured.append((prep, product))
    return measured


#: Per (rows, K, N, torch's threads): whether a whole call's input projection runs faster
#: inside its compiled call, on one thread (:func:`.loops.dot_product`), than as torch's
#: GEMM on all of torch's threads.
_projection_measured: dict[tuple[int, int, int, int], bool] = {}


def project_in_loop(rows: int, k: int, n: int) -> bool:
    """Whether the input projection ``(rows, k) @ (k, n)`` of a call whose rows all run
    on one thread is faster inside the compiled call (single-threaded dot-product
    blocks, no torch dispatch) than as torch's GEMM on every thread: small projections
    are, large ones are not. Measured once per shape (at most 1024 rows: beyond, both
    times grow in proportion) and remembered."""
    if rows == 0:
        return True  # nothing to project
    sample = min(rows, 1024)
    key = (sample, k, n, torch.get_num_threads())
    found = _projection_measured.get(key)
    if found is None:
        found = _projection_measured[key] = _measure_projection(sample, k, n)
    return found


def _measure_projection(rows: int, k: int, n: int) -> bool:
    from .loops import products  # the compiled side; imported on first measure

    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(rows, k, generator=g), torch.randn(n, k, generator=g)
    bias = torch.randn(n, generator=g)  # (never the global generator: seeded runs repeat)
    c = np.empty((rows, n), np.float32)
    reps = int(min(50, max(2, 2e6 // max(1, rows * k * n))))
    a_, w_ = a.numpy(), w.numpy()
    mine = fastest(lambda: products(a_, w_, c, DOTS, reps))
    theirs = fastest(lambda: [torch.nn.functional.linear(a, w, bias) for _ in range(reps)])
    return mine < theirs
