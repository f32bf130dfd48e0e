"""One benchmark run: every implementation on every shape, forward and train, interleaved."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import catalog
from .impls import Problem, available
from .report import Results, machine
from .shapes import Shape
from .timing import gemm_rate, interleaved


def run(
    shapes: Sequence[Shape],
    rounds: int = 10,
    impls: Sequence[str] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> Results:
    """Time forward (no grad) and forward+backward of the implementations ``impls`` (names
    of :data:`~.catalog.ALL`; default :func:`~.catalog.default_names`) on ``shapes``.

    ``on_progress(description, rounds_done)`` is called after every round. Names this
    machine cannot run are left out and listed in ``Results.skipped`` with the reason;
    ``lstmkit-torch.compile``'s compile times are in ``Results.setup``.
    """
    chosen, skipped = available(impls if impls is not None else catalog.default_names())
    results = Results(machine(), gemm_rate(min(rounds, 5)) / 1e9, skipped=skipped)
    for shape in shapes:
        problem = Problem.make(shape)
        work = {name: build(problem) for name, build in chosen.items()}
        work = {name: w for name, w in work.items() if w is not None}  # (no such workload)
        for name, w in work.items():
            for what, seconds in w.setup_seconds.items():
                results.setup[f"{shape.name} {name} {what}"] = seconds
        sequence = shape.kind == "sequence"
        modes = [("forward" if sequence else shape.kind, {n: w.forward for n, w in work.items()})]
        if sequence:
            modes.append(("train", {n: w.train for n, w in work.items() if w.train is not None}))
        for mode, fns in modes:
            done = [0]

            def tick(what: str = f"{shape.name} {mode}", done: list[int] = done) -> None:
                done[0] += 1
                if on_progress is not None:
                    on_progress(what, done[0])

            results.add(shape, mode, interleaved(fns, rounds, on_round=tick))
    return results
