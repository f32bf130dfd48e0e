"""Matrix products callable from inside compiled (numba) loops, with weights prepared once.

The ``compiled`` engine runs a whole layer-direction, GEMMs included, in one compiled call.
Its loops call one C symbol per dtype, ``lstmkit_sgemm`` / ``lstmkit_dgemm``, with the
signature of MKL's ``cblas_?gemm_compute``::

    gemm(layout, trans_a, trans_b, M, N, K, A, lda, W, ldw, beta, C, ldc)
    C (M, N) = A (M, K) @ W (K, N) + beta * C          # row-major; A and C plain arrays

where ``W`` is a *prepared* weight (:func:`prepared`). Which code the symbol runs is the
**route**, fixed when this module is imported (the loops link against the symbol's name,
so numba's on-disk cache stays valid whichever route a process takes):

* ``"mkl-packed"``: MKL's packed GEMM from torch's own ``libtorch_cpu`` (x86 wheels
  export ``cblas_sgemm_pack``/``cblas_sgemm_compute``): the weight is packed once into
  MKL's internal panel layout, and every step's product reuses it. MKL threads the
  product over torch's OpenMP threads (``torch.set_num_threads``); float32 only.
* ``"loops"``: a compiled row-times-matrix loop of our own (a numba ``cfunc``,
  vectorised along ``N``), single-threaded: every platform, float64 always (MKL's
  packed GEMM has no exported double form), and float32 where MKL is missing.

``LSTMKIT_GEMM=loops`` in the environment forces the portable route (``=mkl`` insists on
MKL and fails loudly without it); :func:`route` says which route float32 runs.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
from llvmlite import binding as llvm
from numba import carray, cfunc, types
from torch import Tensor

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
    asked = os.environ.get("LSTMKIT_GEMM", "auto")
    if asked not in ("auto", "mkl", "loops"):
        raise ValueError(f"LSTMKIT_GEMM must be 'auto', 'mkl' or 'loops', got {asked!r}")
    lib = None if asked == "loops" else _mkl()
    if asked == "mkl" and lib is None:
        raise RuntimeError(
            "LSTMKIT_GEMM=mkl, but this torch build exports no MKL packed GEMM "
            "(cblas_sgemm_compute in libtorch_cpu); unset it to use the portable route"
        )
    return ("mkl-packed" if lib is not None else "loops"), lib


_ROUTE, _LIB = _choose()
if _LIB is not None:
    _address = ctypes.cast(_LIB.cblas_sgemm_compute, ctypes.c_void_p).value
    llvm.add_symbol("lstmkit_sgemm", _address)
else:
    llvm.add_symbol("lstmkit_sgemm", _sgemm_loops.address)
llvm.add_symbol("lstmkit_dgemm", _dgemm_loops.address)

#: The symbols the compiled loops call (see the module docstring).
sgemm = types.ExternalFunction("lstmkit_sgemm", SGEMM_SIGNATURE)
dgemm = types.ExternalFunction("lstmkit_dgemm", DGEMM_SIGNATURE)


def route(dtype: torch.dtype = torch.float32) -> str:
    """The route the compiled loops' products take for ``dtype``: ``"mkl-packed"`` or
    ``"loops"`` (float64 is always ``"loops"``)."""
    return _ROUTE if dtype == torch.float32 else "loops"


def set_thread_products(threads: int) -> int:
    """How many threads MKL may use for products called from this thread (0: torch's
    setting); returns the previous value. The loops route is single-threaded anyway."""
    if _LIB is None:
        return 0
    return _LIB.mkl_set_num_threads_local(ctypes.byref(ctypes.c_int(threads)))


def _prepare(weight: Tensor, transpose: bool, rows: int) -> np.ndarray:
    """``weight (N, K)`` as the route's ``W`` operand of ``A @ W``: ``weight^T`` (K, N)
    when ``transpose`` (for ``x W^T``), else ``weight`` itself (for ``x W``)."""
    w = weight.detach().contiguous().numpy()
    if route(weight.dtype) == "loops":
        return np.ascontiguousarray(w.T if transpose else w)
    n, k = (w.shape[0], w.shape[1]) if transpose else (w.shape[1], w.shape[0])
    size = _LIB.cblas_sgemm_pack_get_size(B_MATRIX, rows, n, k)
    packed = np.empty((1, size // 4 + 1), np.float32)  # 2-D like the loops route's
    _LIB.cblas_sgemm_pack(
        ROW_MAJOR, B_MATRIX, TRANS if transpose else NO_TRANS, rows, n, k, 1.0,
        w.ctypes.data, w.shape[1], packed.ctypes.data,
    )  # fmt: skip
    return packed


#: Prepared weights by parameter: id -> (weak reference, {(version, data pointer, rows,
#: transpose): array}); an entry leaves with its tensor.
_cache: dict[int, tuple[weakref.ref, dict[tuple, np.ndarray]]] = {}
_lock = threading.Lock()


def _entries(weight: Tensor) -> dict[tuple, np.ndarray]:
    """The prepared values cached for ``weight`` (created empty on first use)."""
    key = id(weight)
    with _lock:
        held = _cache.get(key)
        if held is None or held[0]() is not weight:
            held = (weakref.ref(weight, lambda _, key=key: _cache.pop(key, None)), {})
            _cache[key] = held
    return held[1]


def prepared(weight: Tensor, transpose: bool, rows: int) -> np.ndarray:
    """:func:`_prepare`, done once per weight value: cached for the tensor and rebuilt
    when it changes (an in-place update bumps its ``_version``; ``load_state_dict`` and
    optimizers write in place; ``.to()`` and parametrizations give a new tensor). A
    weight that is not a leaf (a parametrization's output) is prepared per call."""
    if not weight.is_leaf:
        return _prepare(weight, transpose, rows)
    entries = _entries(weight)
    key = (weight._version, weight.data_ptr(), rows, transpose)
    got = entries.get(key)
    if got is None:
        got = _prepare(weight, transpose, rows)
        with _lock:
            for old in [k for k in entries if k[:2] != key[:2]]:  # the weight changed
                del entries[old]
            entries[key] = got
    return got
