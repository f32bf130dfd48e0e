"""Benchmark results: the table (text or markdown), JSON, the machine they came from, the
rows that were skipped and why, and a warning when the rounds say the machine was busy."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field

from .shapes import Shape

#: A row whose slowest round took this many times its fastest was disturbed: on an idle
#: machine rounds agree within a few tens of percent.
BUSY_SPREAD = 2.0


@dataclass
class Row:
    shape: str
    impl: str
    mode: str  # "forward", "train" (forward+backward) or "step"
    seconds: float  # the median over rounds
    ratio: float | None  # to torch in the same run
    gemm_percent: float | None  # achieved GEMM FLOP/s as % of the measured fp32 rate
    spread: float  # slowest round / fastest round


@dataclass
class Results:
    machine: dict[str, object]
    gemm_gflops: float
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, float] = field(default_factory=dict)  # seconds, e.g. compile times
    skipped: dict[str, str] = field(default_factory=dict)  # implementation -> why, the fix

    def add(self, shape: Shape, mode: str, rounds: dict[str, list[float]]) -> None:
        """Rows for one shape and mode from every implementation's round times."""
        medians = {impl: statistics.median(s) for impl, s in rounds.items()}
        base = medians.get("torch")
        flops = shape.gemm_flops() * (3 if mode == "train" else 1)
        for impl, s in medians.items():
            ratio = s / base if base else None
            percent = 100 * flops / s / (self.gemm_gflops * 1e9) if mode != "step" else None
            spread = max(rounds[impl]) / max(min(rounds[impl]), 1e-12)
            self.rows.append(Row(shape.label(), impl, mode, s, ratio, percent, spread))

    def warnings(self) -> list[str]:
        """A warning when the rounds of some row disagree by :data:`BUSY_SPREAD` or more."""
        worst = max(self.rows, key=lambda r: r.spread, default=None)
        if worst is None or worst.spread < BUSY_SPREAD:
            return []
        return [
            f"warning: rounds disagree: {worst.shape} {worst.impl} {worst.mode}'s slowest round "
            f"took {worst.spread:.1f}x its fastest, so something else was using the CPU; "
            "times and ratios from this run are unreliable. Rerun on an idle machine (or try "
            "--threads 1 if other processes must share the cores)."
        ]

    def notes(self) -> list[str]:
        """Compile times, skipped rows and warnings, one line each."""
        lines = [f"{what}: {seconds:.1f} s" for what, seconds in self.setup.items()]
        lines += [f"skipped {impl}: {why}" for impl, why in self.skipped.items()]
        return lines + self.warnings()

    def header(self) -> str:
        """The machine in one line: CPU, cores, torch and its threads, the GEMM rate."""
        m = self.machine
        route = f"; CPU engine route: {m['route']}" if "route" in m else ""
        if "threads_route" in m:
            route += (
                f", row ranges (small batches without autograd: hidden units, where timed "
                f"faster) on {m['threads_route']} threads"
            )
        threads = f"{m['torch_threads']} thread" + ("s" if m["torch_threads"] != 1 else "")
        return (
            f"# {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({threads}){route}; "
            f"fp32 GEMM rate measured: {self.gemm_gflops:.0f} GFLOP/s"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "machine": self.machine,
                "gemm_gflops": self.gemm_gflops,
                "rows": [asdict(r) for r in self.rows],
                "setup_seconds": self.setup,
                "skipped": self.skipped,
                "warnings": self.warnings(),
            },
            indent=2,
        )

    def table(self, markdown: bool = False) -> str:
        """The header line, the rows, then the notes."""
        header = ["shape", "implementation", "mode", "ms", "ratio to torch", "% of GEMM rate"]
        lines = []
        for r in self.rows:
            lines.append(
                [
                    r.shape,
                    r.impl,
                    r.mode,
                    f"{r.seconds * 1e3:.3f}",
                    "" if r.ratio is None else f"{r.ratio:.2f}",
                    "" if r.gemm_percent is None else f"{r.gemm_percent:.0f}%",
                ]
            )
        notes = self.notes()
        if markdown:
            out = [self.header(), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(line) + " |" for line in lines]
            return "\n".join(out + [""] * bool(notes) + [f"- {n}" for n in notes])
        widths = [max(len(x) for x in col) for col in zip(header, *lines)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([self.header(), *(fmt.format(*x) for x in [header, *lines]), *notes])


def _cpu_model() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def _route(name: str = "route") -> str | None:
    """The CPU engine's GEMM route (``route``) or what runs its row ranges at once
    (``threads_route``), when :mod:`lstmkit.backends.compiled` reports it through an
    optional function of that name."""
    from ..backends import compiled

    route = getattr(compiled, name, None)
    return str(route()) if callable(route) else None


def machine() -> dict[str, object]:
    """What ran the benchmark: CPU model, cores, torch's threads, torch and Python
    versions, the GPU if any, and the CPU engine's routes (products, row ranges) where it
    reports them."""
    import torch

    info: dict[str, object] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    for key, name in (("route", "route"), ("threads_route", "threads_route")):
        found = _route(name)
        if found is not None:
            info[key] = found
    return info
