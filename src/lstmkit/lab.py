"""``lstmkit lab``: the lab "The LSTM layer", cell by cell, run with lstmkit.LSTM.

Each cell does what the lab's cell does, prints what the lab prints (reprs, shapes),
and checks lstmkit against ``torch.nn.LSTM`` holding the same weights (copied with
``load_state_dict``), printing the largest absolute difference. Where the lab
contradicts itself, the walkthrough does the consistent thing and says so in a line
starting with ``note:``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .lstm import LSTM

TOLERANCE = 1e-5


@dataclass
class Walkthrough:
    """Prints the cells and collects each cell's largest difference from nn.LSTM."""

    write: Callable[[str], None] = print
    diffs: dict[str, float] = field(default_factory=dict)

    def cell(self, title: str) -> None:
        self.write(f"\n== {title} ==")

    def show(self, line: str) -> None:
        self.write(f"  {line}")

    def note(self, line: str) -> None:
        self.write(f"  note: {line}")

    def compare(self, name: str, ours: object, theirs: object) -> float:
        """Largest |lstmkit - nn.LSTM| over matching (nested) tensors; printed and recorded."""
        diff = max(
            (a - b).abs().max().item() if a.numel() else 0.0
            for a, b in zip(_tensors(ours), _tensors(theirs), strict=True)
        )
        self.diffs[name] = diff
        verdict = "ok" if diff < TOLERANCE else "MISMATCH"
        self.write(f"  max |lstmkit - nn.LSTM| = {diff:.2e}  [{verdict}]")
        return diff


def _tensors(value: object) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    return [t for item in value for t in _tensors(item)]  # type: ignore[attr-defined]


def twin(lstm: LSTM) -> nn.LSTM:
    """An nn.LSTM with the same configuration and the same weights (the oracle)."""
    return lstm.to_torch()


def engine(backend: str, steps: int, batch: int, hidden_size: int) -> str:
    """The backend that runs a float32 CPU call of ``steps`` x ``batch`` for ``backend``:
    itself, or the one ``auto`` picks; NotImplementedError if an explicit one cannot."""
    from .backends import BACKENDS, select

    run = select(backend, torch.zeros(steps, batch, 4 * hidden_size))  # xg: (T, B, 4H)
    return next((name for name, b in BACKENDS.items() if b.run is run), backend)


def _says_backend(lab: Walkthrough, backend: str, T: int, B: int, H: int) -> None:
    whole, step = engine(backend, T, B, H), engine(backend, 1, B, H)
    if backend != "auto":
        lab.write(
            f"lstmkit backend: {backend} (asked for), on {torch.get_num_threads()} torch threads"
        )
        return
    lab.write(
        f"lstmkit backend: auto, which runs {whole!r} on these float32 CPU sequences "
        f"and {step!r} for one step at a time ({torch.get_num_threads()} torch threads)"
    )


@torch.no_grad()
def run_lab(
    seed: int = 0,
    write: Callable[[str], None] = print,
    plot: Path | None = None,
    backend: str = "auto",
) -> Walkthrough:
    """Run every cell of the lab with lstmkit's ``backend``; returns the walkthrough with
    its recorded differences. With ``plot``, also write ``gates.png`` there: the
    exercise's first sample through each layer (gates i, f, g, o, cell state c, output h
    over time; needs matplotlib). An explicit ``backend`` that cannot run here raises
    NotImplementedError before anything is printed."""
    torch.manual_seed(seed)
    lab = Walkthrough(write)
    H, I = 64, 128  # hidden_size, input_size
    _says_backend(lab, backend, 5, 4, H)

    lab.cell("1. Creating an LSTM layer")
    lstm = LSTM(input_size=I, hidden_size=H, batch_first=True, backend=backend)
    oracle = twin(lstm)
    lab.show(f"print(lstm)   -> {lstm}")
    lab.show(f"nn.LSTM repr  -> {oracle}  (identical: {repr(lstm) == repr(oracle)})")
    lab.note(
        "the lab's text says batch_first=False, but its code builds batch_first=True and "
        "every shape it prints is batch-first; we follow the code."
    )

    lab.cell("2. Input formats: seq first (T, B, I) and batch first (B, T, I)")
    T, B = 5, 4
    x = torch.randn(B, T, I)
    seq_first = LSTM(I, H, backend=backend)
    seq_first.load_state_dict(lstm.state_dict())
    out_bf, _ = lstm(x)
    out_sf, _ = seq_first(x.transpose(0, 1))
    lab.show(f"batch first: input {tuple(x.shape)} -> output {tuple(out_bf.shape)}")
    lab.show(f"seq first:   input {tuple(x.transpose(0, 1).shape)} -> output {tuple(out_sf.shape)}")
    lab.show(
        "same weights, same numbers in either layout: "
        f"max diff {(out_bf - out_sf.transpose(0, 1)).abs().max().item():.1e}"
    )
    lab.compare(
        "input formats", (out_bf, out_sf), (oracle(x)[0], twin(seq_first)(x.transpose(0, 1))[0])
    )

    lab.cell("3. Creating the input (batch 4, length 5)")
    inputs = torch.randn(B, T, I)
    lab.show(f"Shape of input tensor: {inputs.shape}")
    lab.note(
        "the lab calls this layout (seq_len, batch, input) but builds (batch, seq_len, input)."
    )

    lab.cell("4. Initializing hidden and cell states")
    L = 1  # number of layers
    states = (torch.randn(L, B, H), torch.randn(L, B, H))
    lab.show(f"shape of init_hidden: {states[0].shape}")
    lab.show(f"shape of init_cell: {states[1].shape}")
    lab.note("the lab's manual names the cell states o_0 and o_n; they are c_0 and c_n.")

    lab.cell("5. Performing inference")
    output, (out_hidden_state, out_cell_state) = lstm(inputs, states)
    lab.show(f"Shape of out: {output.shape}")
    lab.show(f"Shape of last hidden state: {out_hidden_state.shape}")
    lab.show(f"Shape of last cell state: {out_cell_state.shape}")
    lab.note(
        "the lab says the output is (seq_len, batch, hidden); with batch_first=True it is "
        "(batch, seq_len, hidden), as printed."
    )
    lab.compare("inference", (output, out_hidden_state, out_cell_state), oracle(inputs, states))

    lab.cell("6. Input sequences of length 20, 30 and 50")
    lab.note(
        "the lab builds torch.randn(length, B, I) for this batch-first layer, i.e. `length` "
        f"sequences of length {B}; we build (B, length, I): sequences of that length."
    )
    for length in (20, 30, 50):
        x = torch.randn(B, length, I)
        out, _ = lstm(x)  # don't care about the output states
        lab.show(f"length {length}: print(out.shape) -> {out.shape}")
        lab.compare(f"length {length}", out, oracle(x)[0])

    lab.cell("7. One time step at a time, for all samples (the seq-first loop)")
    x = torch.randn(T, B, I)  # seq first
    state = states
    steps = []
    for x_t in x.unbind(0):  # x_t: (B, I)
        y_t, state = seq_first.step(x_t, state)
        steps.append(y_t)
    stepped = torch.stack(steps)
    whole, whole_state = seq_first(x, states)
    lab.show(f"looped lstm.step over {T} steps: output {tuple(stepped.shape)}")
    lab.show(
        "equals the whole-sequence call: max diff "
        f"{(stepped - whole).abs().max().item():.1e} (output), "
        f"{(state[0] - whole_state[0]).abs().max().item():.1e} (h_n)"
    )
    lab.compare("step loop", (stepped, state), twin(seq_first)(x, states))

    lab.cell("Exercise: batch first, batch 16, length 25, input 1024, hidden 128, 2 layers")
    T, B, hidden_size, input_size, num_layers = 25, 16, 128, 1024, 2
    lstm = LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True, backend=backend)
    x = torch.randn(B, T, input_size)
    init_hidden_states = torch.randn(num_layers, B, hidden_size)
    init_cell_states = torch.randn(num_layers, B, hidden_size)
    output, (h_n, c_n) = lstm(x, (init_hidden_states, init_cell_states))
    lab.show(f"print(lstm) -> {lstm}")
    lab.show(f"(1) output sequence: {output.shape}")
    lab.show(f"(2) output hidden state: {h_n.shape}")
    lab.show(f"(3) output cell state: {c_n.shape}")
    lab.note("the lab names the hidden size `hidden_states = 128`; it is hidden_size.")
    lab.compare(
        "exercise",
        (output, h_n, c_n),
        twin(lstm)(x, (init_hidden_states, init_cell_states)),
    )

    if plot is not None:
        from .trace import trace
        from .train.plots import gates

        lab.cell("Inside the cell: the exercise's first sample, step by step")
        path = gates(
            trace(lstm, x[0]), Path(plot) / "gates.png", "lab exercise (random weights): sample 0"
        )
        lab.show(f"gates i, f, g, o, cell state c and output h per layer over time: {path}")

    worst = max(lab.diffs.values())
    status = "all cells match nn.LSTM" if worst < TOLERANCE else "MISMATCH with nn.LSTM"
    lab.write(f"\n{status}: largest difference {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return lab
