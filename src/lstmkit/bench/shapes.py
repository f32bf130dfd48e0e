"""The benchmark shapes and their GEMM work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """An LSTM workload: ``T`` steps, batch ``B``, input ``I``, hidden ``H``, ``L`` layers;
    ``kind``: ``"sequence"`` (the module on the whole sequence, forward and training),
    ``"step"`` (``LSTM.step`` on its first step, no autograd) or ``"cell"`` (an
    ``LSTMCell`` on its first step, no autograd)."""

    name: str
    T: int
    B: int
    I: int
    H: int
    L: int = 1
    bidirectional: bool = False
    what: str = ""
    kind: str = "sequence"

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def gemm_flops(self) -> float:
        """Forward GEMM FLOPs: ``2 T B 4H (I_l + H)`` per layer-direction."""
        total = 0.0
        for layer in range(self.L):
            inputs = self.I if layer == 0 else self.H * self.directions
            total += self.directions * 2 * self.T * self.B * 4 * self.H * (inputs + self.H)
        return total

    def label(self) -> str:
        bi = " bi" if self.bidirectional else ""
        return f"{self.name} ({self.T},{self.B},{self.I},{self.H},{self.L}{bi})"


SHAPES: tuple[Shape, ...] = (
    Shape("S1", 5, 4, 128, 64, 1, what="lab intro"),
    Shape("S2", 25, 16, 1024, 128, 2, what="lab exercise"),
    Shape("S3", 1000, 1, 64, 64, 1, what="streaming"),
    Shape("S4", 100, 32, 256, 256, 2),
    Shape("S5", 200, 64, 512, 512, 1),
    Shape("S6", 100, 32, 256, 256, 2, bidirectional=True, what="S4 bidirectional"),
)

#: ``step()`` latency at batch 1: one time step per call (of one layer, or four).
STEP_SHAPES: tuple[Shape, ...] = (
    Shape("step-H64", 1, 1, 64, 64, 1, what="step() latency", kind="step"),
    Shape("step-H256", 1, 1, 256, 256, 1, what="step() latency", kind="step"),
    Shape("step-H64-L4", 1, 1, 64, 64, 4, what="step() latency, four layers", kind="step"),
)

#: ``LSTMCell`` without autograd, one call per step (against nn.LSTMCell).
CELL_SHAPES: tuple[Shape, ...] = (
    Shape("cell-B1", 1, 1, 64, 64, 1, what="LSTMCell latency", kind="cell"),
    Shape("cell-B32", 1, 32, 256, 256, 1, what="LSTMCell, a batch", kind="cell"),
)

#: ``--quick``: small shapes only, for CI.
QUICK: tuple[Shape, ...] = (
    Shape("S1", 5, 4, 128, 64, 1, what="lab intro"),
    Shape("S2", 25, 16, 1024, 128, 2, what="lab exercise"),
    Shape("S3q", 100, 1, 64, 64, 1, what="streaming, short"),
)


def _table() -> dict[str, Shape]:
    return {s.name: s for s in SHAPES + STEP_SHAPES + CELL_SHAPES + QUICK}


def find(names: str) -> tuple[Shape, ...]:
    """Shapes by comma-separated name (``S1,S4,step-H64``); ValueError naming the unknown
    ones and the valid ones.

    >>> [s.label() for s in find("S1,step-H64")]
    ['S1 (5,4,128,64,1)', 'step-H64 (1,1,64,64,1)']
    """
    table = _table()
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in table]
    if unknown or not wanted:
        raise ValueError(
            f"unknown shape(s) {', '.join(unknown) or repr(names)}; choose from {', '.join(table)}"
        )
    return tuple(table[n] for n in dict.fromkeys(wanted))


def describe() -> str:
    """One line per shape for ``--help``: name, ``(T,B,I,H,L)`` and what it stands for."""
    return "\n".join(f"  {s.label():<30} {s.what}".rstrip() for s in _table().values())
