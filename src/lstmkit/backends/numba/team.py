"""Run a call's row ranges (or its parts, :func:`run_shared`) at once on torch's own
OpenMP threads.

The compiled loops split a call's rows across threads, each running the whole time loop
on its range (:func:`.engine.row_ranges`). The threads that run them are torch's own
OpenMP team: its library (``libgomp``, or Intel's ``libiomp5``, which speaks the same
entry points) is already loaded, and ``GOMP_parallel`` hands each team thread a
callback that runs its ranges. Separate threads of our own would share the cores with
torch's team, whose threads keep spinning for milliseconds after each torch op (the
OpenMP default): measured on Zen 4, S2's forward took 8.2 ms on a thread pool of ours
right after an nn.LSTM call, against 4.1 ms alone.

Each range runs with MKL single-threaded (:func:`.blas.products_alone`); the team
may be smaller than asked (an enclosing parallel region), so every thread takes every
``size``-th range and no range is ever left out. Where torch's OpenMP library cannot be
found, and in a child forked after the import (GNU OpenMP's team does not survive
``fork``: torch's own parallel ops hang there), a pool of Python threads runs the ranges
instead (the same results: ranges are independent); the parts of :func:`run_shared`,
which wait for each other, get threads of their own.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from . import blas

_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _openmp() -> ctypes.CDLL | None:
    """torch's loaded OpenMP library when it exports ``GOMP_parallel``, else None (the
    one in torch's own ``lib`` folder first, where another package loaded its own)."""
    try:
        with open("/proc/self/maps") as maps:
            found = re.findall(r"(/\S*/lib(?:gomp|iomp5)[^/\s]*\.so[.\d]*)\s*$", maps.read(), re.M)
        torch_lib = str(Path(torch.__file__).parent / "lib")
        found.sort(key=lambda path: not path.startswith(torch_lib))
        lib = ctypes.CDLL(found[0])
        lib.GOMP_parallel.argtypes = [_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        lib.GOMP_parallel.restype = None
        lib.omp_get_thread_num.restype = lib.omp_get_num_threads.restype = ctypes.c_int
    except (OSError, IndexError, AttributeError):
        return None
    return lib


_LIB = _openmp()
_PID = os.getpid()  # a forked child's OpenMP team is broken (torch's own ops hang there)
_lock = threading.Lock()  # one parallel region at a time (the work list is shared)


def _after_fork_in_child() -> None:
    """A fresh lock in a forked child: the parent's may have been held by another thread
    at the fork, and would stay held forever."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
_work: list[Callable[[], None]] = []
_errors: list[BaseException] = []


def _body(_: object) -> None:
    """What each team thread runs: its share of :data:`_work`, MKL single-threaded."""
    try:
        me, size = _LIB.omp_get_thread_num(), _LIB.omp_get_num_threads()
        with blas.products_alone(True):
            for call in _work[me::size]:
                call()
    except BaseException as error:  # re-raised by run_all, in the caller
        _errors.append(error)


_CALLBACK = _BODY(_body)  # kept alive for the library's whole life
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def run_all(calls: Sequence[Callable[[], None]]) -> None:
    """Run every call once, at the same time, one per thread; returns when all are done
    and re-raises the first error any raised."""
    if _LIB is None or os.getpid() != _PID:
        _run_on_pool(calls)
        return
    with _lock:
        _work[:], _errors[:] = calls, []
        try:
            _LIB.GOMP_parallel(_CALLBACK, None, len(calls), 0)
        finally:
            errors, _work[:] = list(_errors), []
    if errors:
        raise errors[0]


def run_shared(call: Callable[[int, int], None], threads: int, abort: Callable[[], None]) -> None:
    """Run ``call(part, parts)`` once on each thread of a team of ``threads`` at most,
    all at once: ``parts`` is the size of the team the call really got (an enclosing
    parallel region or a thread limit can make it smaller), so work that threads share
    step by step (:mod:`.units`) is divided among threads that run. When any part
    fails, or a thread cannot be started, ``abort()`` runs first (it must release every
    wait of the parts, which then end); re-raises the first error. Without torch's
    OpenMP team each call starts threads of its own: parts queued on a shared pool
    could wait for each other behind another call's parts."""
    if _LIB is None or os.getpid() != _PID:
        _run_own_threads(call, threads, abort)
        return
    with _lock:
        _work[:], _errors[:] = [(call, abort)], []
        try:
            _LIB.GOMP_parallel(_SHARED_CALLBACK, None, threads, 0)
        finally:
            errors, _work[:] = list(_errors), []
    if errors:
        raise errors[0]


def _shared_body(_: object) -> None:
    """What each team thread runs for :func:`run_shared`: its part, MKL single-threaded."""
    call, abort = _work[0]
    try:
        me, size = _LIB.omp_get_thread_num(), _LIB.omp_get_num_threads()
        with blas.products_alone(True):
            call(me, size)
    except BaseException as error:  # re-raised by run_shared, in the caller
        abort()
        _errors.append(error)


_SHARED_CALLBACK = _BODY(_shared_body)


def _run_own_threads(call: Callable[[int, int], None], threads: int,
                     abort: Callable[[], None]) -> None:  # fmt: skip
    """:func:`run_shared` on ``threads - 1`` new threads and this one."""
    errors: list[BaseException] = []

    def run(part: int) -> None:
        try:
            with blas.products_alone(True):
                call(part, threads)
        except BaseException as error:
            abort()
            errors.append(error)

    started: list[threading.Thread] = []
    try:
        for part in range(1, threads):
            thread = threading.Thread(target=run, args=(part,), name="lstmkit", daemon=True)
            thread.start()
            started.append(thread)
        run(0)
        for thread in started:
            thread.join()
    except BaseException:
        abort()
        for thread in started:
            thread.join()
        raise
    if errors:
        raise errors[0]


def _run_on_pool(calls: Sequence[Callable[[], None]]) -> None:
    """The fallback: the first call here, the others on a pool of Python threads (a
    forked child makes its own: threads do not survive ``fork``)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool._max_workers < len(calls) or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(len(calls), "lstmkit")
            _pool_pid = os.getpid()
        pool = _pool
    futures = [pool.submit(_alone, call) for call in calls[1:]]
    try:
        _alone(calls[0])
    finally:
        for future in futures:
            future.result()


def _alone(call: Callable[[], None]) -> None:
    with blas.products_alone(True):
        call()


def route() -> str:
    """What runs a call's row ranges: ``"openmp"`` (torch's team) or ``"threads"``."""
    return "threads" if _LIB is None or os.getpid() != _PID else "openmp"
