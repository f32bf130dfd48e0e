"""``lstmkit bench``: lstmkit's backends against nn.LSTM, in one process, interleaved."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .impls import Problem, registry
from .report import Results, machine
from .shapes import QUICK, SHAPES, STEP_SHAPES, Shape, find
from .timing import gemm_rate, interleaved

__all__ = ["QUICK", "SHAPES", "STEP_SHAPES", "Results", "find", "run"]


def run(
    shapes: Sequence[Shape],
    rounds: int = 10,
    impls: Sequence[str] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    include_compile: bool = False,
    include_options: bool = False,
) -> Results:
    """Time forward (no grad) and forward+backward of every implementation on ``shapes``.

    ``on_progress(description, rounds_done)`` is called after every round;
    ``include_compile`` adds lstmkit under ``torch.compile`` and records its compile times;
    ``include_options`` adds lstmkit with each cell option (peephole, clips) on.
    """
    table = registry(include_compile=include_compile, include_options=include_options)
    chosen = {name: table[name] for name in (impls or table) if name in table}
    results = Results(machine(), gemm_rate() / 1e9)
    for shape in shapes:
        stepping = shape.name.startswith("step")
        problem = Problem.make(shape)
        work = {name: build(problem, stepping) for name, build in chosen.items()}
        for name, w in work.items():
            for what, seconds in w.setup_seconds.items():
                results.setup[f"{shape.name} {name} {what}"] = seconds
        modes = [("step" if stepping else "forward", {n: w.forward for n, w in work.items()})]
        if not stepping:
            modes.append(("train", {n: w.train for n, w in work.items() if w.train is not None}))
        for mode, fns in modes:
            done = [0]

            def tick(what: str = f"{shape.name} {mode}", done: list[int] = done) -> None:
                done[0] += 1
                if on_progress is not None:
                    on_progress(what, done[0])

            results.add(shape, mode, interleaved(fns, rounds, on_round=tick))
    return results
