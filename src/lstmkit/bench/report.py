"""Benchmark results: the table (text or markdown), JSON, and the machine they came from."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field

import torch

from .shapes import Shape


@dataclass
class Row:
    shape: str
    impl: str
    mode: str  # "forward", "train" (forward+backward) or "step"
    seconds: float
    ratio: float | None  # to torch in the same run
    gemm_percent: float | None  # achieved GEMM FLOP/s as % of the measured fp32 rate


@dataclass
class Results:
    machine: dict[str, object]
    gemm_gflops: float
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, float] = field(default_factory=dict)  # seconds, e.g. compile times

    def add(self, shape: Shape, mode: str, seconds: dict[str, float]) -> None:
        base = seconds.get("torch")
        flops = shape.gemm_flops() * (3 if mode == "train" else 1)
        for impl, s in seconds.items():
            ratio = s / base if base else None
            percent = 100 * flops / s / (self.gemm_gflops * 1e9) if mode != "step" else None
            self.rows.append(Row(shape.label(), impl, mode, s, ratio, percent))

    def to_json(self) -> str:
        return json.dumps(
            {
                "machine": self.machine,
                "gemm_gflops": self.gemm_gflops,
                "rows": [asdict(r) for r in self.rows],
                "setup_seconds": self.setup,
            },
            indent=2,
        )

    def table(self, markdown: bool = False) -> str:
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
        notes = [f"{what}: {seconds:.1f} s" for what, seconds in self.setup.items()]
        if markdown:
            out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(line) + " |" for line in lines]
            return "\n".join(out + [""] * bool(notes) + [f"- {n}" for n in notes])
        widths = [max(len(x) for x in col) for col in zip(header, *lines)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*line) for line in [header, *lines]] + notes)


def machine() -> dict[str, object]:
    """What ran the benchmark: CPU model, cores, threads, torch and Python versions."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
