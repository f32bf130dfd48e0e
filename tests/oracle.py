"""Helpers that run lstmkit and torch.nn.LSTM side by side and compare everything.

Both models hold the same random weights (lstmkit's own init, copied into nn.LSTM with
``load_state_dict``); inputs and initial states are fresh random tensors; the loss is a
random projection of every output so that every gradient is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmkit
from lstmkit.backends import BACKENDS

LAYOUTS = ("batched", "unbatched", "packed_sorted", "packed_unsorted")

#: The backends every generic test runs on: all but ``triton``, whose kernels run on the
#: CPU only through the interpreter (far too slow for these); tests/test_triton.py covers it.
GENERIC_BACKENDS = sorted(set(BACKENDS) - {"triton"})


@dataclass(frozen=True)
class Config:
    input_size: int = 3
    hidden_size: int = 5
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    layout: str = "batched"
    batch: int = 3
    steps: int = 4
    with_hx: bool = True

    def module_kwargs(self) -> dict:
        return dict(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
        )


def twin_modules(
    cfg: Config, dtype: torch.dtype = torch.float64, **kwargs: object
) -> tuple[lstmkit.LSTM, nn.LSTM]:
    ours = lstmkit.LSTM(**cfg.module_kwargs(), dtype=dtype, **kwargs)
    theirs = nn.LSTM(**cfg.module_kwargs(), dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@dataclass
class Inputs:
    """Leaf tensors (for gradients) and how to build each model's call from them."""

    x: Tensor
    h0: Tensor | None
    c0: Tensor | None
    lengths: Tensor | None
    cfg: Config

    def leaves(self) -> list[Tensor]:
        return [t for t in (self.x, self.h0, self.c0) if t is not None]

    def call_args(self) -> tuple[object, tuple[Tensor, Tensor] | None]:
        x: object = self.x
        if self.lengths is not None:
            sorted_ = self.cfg.layout == "packed_sorted"
            x = pack_padded_sequence(
                self.x, self.lengths, batch_first=self.cfg.batch_first, enforce_sorted=sorted_
            )
        hx = None if self.h0 is None else (self.h0, self.c0)
        return x, hx


def make_inputs(cfg: Config, dtype: torch.dtype = torch.float64, seed: int = 0) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    T, B = cfg.steps, cfg.batch
    D = 2 if cfg.bidirectional else 1
    P = cfg.proj_size or cfg.hidden_size
    shape = (T, B, cfg.input_size)
    if cfg.layout == "unbatched":
        shape = (T, cfg.input_size)
    elif cfg.batch_first:
        shape = (B, T, cfg.input_size)
    x = torch.randn(shape, generator=g, dtype=dtype, requires_grad=True)
    lengths = None
    if cfg.layout.startswith("packed"):
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[int(torch.randint(0, B, (1,), generator=g))] = T  # the pad must be tight
        if cfg.layout == "packed_sorted":
            lengths = lengths.sort(descending=True).values
    h0 = c0 = None
    if cfg.with_hx:
        rows = (cfg.num_layers * D,) if cfg.layout == "unbatched" else (cfg.num_layers * D, B)
        h0 = torch.randn(*rows, P, generator=g, dtype=dtype, requires_grad=True)
        c0 = torch.randn(*rows, cfg.hidden_size, generator=g, dtype=dtype, requires_grad=True)
    return Inputs(x, h0, c0, lengths, cfg)


def run_with_grads(
    model: nn.Module, inputs: Inputs, seed: int = 1
) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs ``[output, h_n, c_n]`` and gradients of every input leaf and parameter."""
    for t in inputs.leaves():
        t.grad = None
    model.zero_grad(set_to_none=True)
    x, hx = inputs.call_args()
    out, (h_n, c_n) = model(x, hx)
    if isinstance(out, PackedSequence):
        out = out.data
    outs = [out, h_n, c_n]
    g = torch.Generator().manual_seed(seed)
    loss = sum(
        (o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in outs
    )
    leaves = inputs.leaves() + list(model.parameters())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else []
    grads = [torch.zeros_like(t) if g_ is None else g_ for t, g_ in zip(leaves, grads)]
    return [o.detach() for o in outs], grads


def assert_matches_torch(
    cfg: Config, dtype: torch.dtype = torch.float64, seed: int = 0, **kwargs: object
) -> None:
    """lstmkit equals nn.LSTM on ``cfg``: outputs, states and every gradient."""
    ours, theirs = twin_modules(cfg, dtype, **kwargs)
    inputs = make_inputs(cfg, dtype, seed)
    outs_a, grads_a = run_with_grads(ours, inputs)
    outs_b, grads_b = run_with_grads(theirs, inputs)
    tol = tolerance(dtype, cfg.steps * cfg.num_layers)
    names = ["output", "h_n", "c_n"]
    names += ["grad x", "grad h0", "grad c0"][: len(inputs.leaves())]
    names += [f"grad {n}" for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, outs_a + grads_a, outs_b + grads_b, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m} ({cfg})")


def tolerance(dtype: torch.dtype, depth: int) -> dict[str, float]:
    """float64 within 1e-10; float32 within assert_close's defaults scaled by the depth."""
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10}
    return {"rtol": 1.3e-6 * depth, "atol": 1e-5 * depth}
