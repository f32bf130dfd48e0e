"""A progress counter two threads share, for compiled code: one thread publishes how
far it got, the other waits until it got far enough. numba has no atomics on the CPU, so
the two operations are LLVM IR functions, compiled for the host like :mod:`.panels`::

    publish(counter, n)     store n, release: everything written before is visible
                            to a thread that then reads n
    wait_for(counter, n)    spin until the counter holds at least n (acquire), return it

The waiting thread spins (with the CPU's pause hint on x86, and a ``sched_yield`` every
:data:`YIELD_EVERY` spins): it is meant for hand-offs of microseconds between threads
that run at once, such as the input projection of :mod:`.layer` running ahead of the
time loop, or the threads of :mod:`.units` that wait for each other every step. A wait
whose publisher can never run would spin forever, so callers make sure it runs: the
pipeline's publisher never waits (:func:`.engine._pipeline`); every thread of a units
split runs at once (:func:`.team.run_shared`), and a thread that fails marks every step
done for the others.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import llvmlite.ir as ir
from numba import types

from .panels import compile_module

PUBLISH, WAIT_FOR = "lstmkit_publish", "lstmkit_wait_for"

#: Spins between two ``sched_yield`` calls of a wait (a power of two; Linux and macOS):
#: where there are more threads than free cores (a CPU quota, another process), the
#: thread being waited for gets the core instead of a spinning one.
YIELD_EVERY = 1024
_I64 = ir.IntType(64)


def _module() -> ir.Module:
    mod = ir.Module(name="lstmkit_sync")
    ptr = _I64.as_pointer()
    publish = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, _I64]), PUBLISH)
    b = ir.IRBuilder(publish.append_basic_block("entry"))
    b.store_atomic(publish.args[1], publish.args[0], "release", 8)
    b.ret_void()

    wait = ir.Function(mod, ir.FunctionType(_I64, [ptr, _I64]), WAIT_FOR)
    counter, target = wait.args
    entry, loop, spin, give, done = (
        wait.append_basic_block(n) for n in ("entry", "loop", "spin", "give", "done")
    )
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    spins = b.phi(_I64)
    spins.add_incoming(ir.Constant(_I64, 0), entry)
    seen = b.load_atomic(counter, "acquire", 8)
    b.cbranch(b.icmp_signed(">=", seen, target), done, spin)
    b.position_at_end(spin)
    triple = llvm.get_process_triple()
    if triple.startswith(("x86_64", "i686", "i386")):
        pause = ir.Function(mod, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        b.call(pause, [])
    more = b.add(spins, ir.Constant(_I64, 1))
    spins.add_incoming(more, spin)
    if "linux" in triple or "darwin" in triple:  # now and then, let a waiting thread run
        due = b.icmp_signed("==", b.and_(more, ir.Constant(_I64, YIELD_EVERY - 1)),
                            ir.Constant(_I64, 0))  # fmt: skip
        b.cbranch(due, give, loop)
        b.position_at_end(give)
        b.call(ir.Function(mod, ir.FunctionType(ir.IntType(32), []), "sched_yield"), [])
        spins.add_incoming(more, give)
    b.branch(loop)
    b.position_at_end(done)
    b.ret(seen)
    return mod


def _compile() -> tuple[llvm.ExecutionEngine, int, int]:
    engine, publish = compile_module(_module(), PUBLISH)
    return engine, publish, engine.get_function_address(WAIT_FOR)


_ENGINE, _PUBLISH_ADDRESS, _WAIT_ADDRESS = _compile()  # the engine must stay alive
llvm.add_symbol(PUBLISH, _PUBLISH_ADDRESS)
llvm.add_symbol(WAIT_FOR, _WAIT_ADDRESS)

_counter = types.CPointer(types.int64)
#: ``publish(counter.ctypes, n)`` and ``wait_for(counter.ctypes, n)`` in compiled code,
#: ``counter`` an int64 array (its first element is the counter).
publish = types.ExternalFunction(PUBLISH, types.void(_counter, types.int64))
wait_for = types.ExternalFunction(WAIT_FOR, types.int64(_counter, types.int64))
