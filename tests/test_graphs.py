"""lstmkit under graph tracers: torch.compile, torch.export and torch.jit.trace record one
custom op per layer-direction (``lstmkit::recurrence``) running the eager engine, with
its hand-written backward; results and gradients equal eager's.

Most tests compile with ``backend="aot_eager"`` (AOTAutograd, where gradients are
assembled, without inductor's code generation: seconds instead of tens of seconds); one
runs the default inductor backend end to end: only inductor handed ``bias_ih`` and
``bias_hh`` one gradient storage (checked: that test fails without the fix).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.export import Dim

import lstmkit
from lstmkit import functional

FAST = ["auto", "fused", "compiled"]


class Tagger(nn.Module):
    """Embedding -> lstmkit.LSTM -> Linear, as in a word-level language model."""

    def __init__(self, **lstm_kwargs: object) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 3)
        self.lstm = lstmkit.LSTM(3, 5, num_layers=2, **lstm_kwargs)
        width = (self.lstm.proj_size or 5) * (2 if self.lstm.bidirectional else 1)
        self.head = nn.Linear(width, 4)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad for n, p in model.named_parameters()}


def _train_twice(model: nn.Module, run, tokens: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Two accumulated backwards, then clip_grad_norm_: what a training loop does."""
    model.zero_grad(set_to_none=True)
    for _ in range(2):
        ((run(tokens) - target) ** 2).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    return {n: g.clone() for n, g in _grads(model).items()}


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(
    "options",
    [{}, {"bidirectional": True, "proj_size": 2}, {"peephole": True, "layer_norm": True,
     "gate_clip": 2.0, "cell_clip": 1.5, "activation": "softsign"}],
    ids=["plain", "bidirectional-proj", "cell-options"],
)  # fmt: skip
def test_compiled_training_equals_eager(backend: str, options: dict) -> None:
    """Distinct .grad tensors (bias_ih and bias_hh once were one storage), accumulation and
    clip_grad_norm_ as eager, for every parameter."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Tagger(backend=backend, **options).double()
    tokens, target = torch.randint(0, 11, (6, 3)), torch.randn(6, 3, 4, dtype=torch.float64)
    eager = _train_twice(model, model, tokens, target)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    got = _train_twice(model, compiled, tokens, target)
    storages = {g.untyped_storage().data_ptr() for g in _grads(model).values()}
    assert len(storages) == len(eager)
    for name in eager:
        torch.testing.assert_close(got[name], eager[name], rtol=1e-10, atol=1e-12, msg=name)


def test_inductor_training_equals_eager() -> None:
    torch._dynamo.reset()
    torch.manual_seed(1)
    model = Tagger()
    tokens, target = torch.randint(0, 11, (7, 2)), torch.randn(7, 2, 4)
    eager = _train_twice(model, model, tokens, target)
    got = _train_twice(model, torch.compile(model, fullgraph=True), tokens, target)
    assert len({g.data_ptr() for g in _grads(model).values()}) == len(eager)
    for name in eager:
        torch.testing.assert_close(got[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)


def _graph_of(fn, *args) -> torch.fx.Graph:
    graphs: list[torch.fx.GraphModule] = []

    def keep(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
        graphs.append(gm)
        return gm

    torch._dynamo.reset()
    torch.compile(fn, backend=keep, fullgraph=True)(*args)
    assert len(graphs) == 1
    return graphs[0].graph


def test_graph_does_not_grow_with_length() -> None:
    """T = 200 traces to the same graph as T = 5: one op per layer-direction, no unrolled
    loop (the reference loop took 93 s to compile at T = 35)."""
    lstm = lstmkit.LSTM(4, 6, num_layers=2, bidirectional=True)
    sizes = []
    for steps in (5, 200):
        graph = _graph_of(lambda x: lstm(x)[0].sum(), torch.randn(steps, 2, 4))
        ops = [n for n in graph.nodes if "lstmkit.recurrence" in str(n.target)]
        assert len(ops) == 4  # L * D
        sizes.append(len(graph.nodes))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("backend", FAST)
def test_compiled_masks_and_states_equal_eager(backend: str) -> None:
    """Recurrent-dropout masks and zoneout keep weights as data, lengths, every step's
    states: through the op's forward and backward, against eager, every gradient."""
    torch._dynamo.reset()
    torch.manual_seed(2)
    T, B, I, H = 5, 3, 2, 4
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    w = [functional.LayerWeights(
        torch.randn(4 * H, I, dtype=torch.float64, requires_grad=True),
        torch.randn(4 * H, H, dtype=torch.float64, requires_grad=True),
        torch.randn(4 * H, dtype=torch.float64, requires_grad=True),
        torch.randn(4 * H, dtype=torch.float64, requires_grad=True),
        weight_ci=torch.randn(H, dtype=torch.float64, requires_grad=True),
        weight_cf=torch.randn(H, dtype=torch.float64, requires_grad=True),
        weight_co=torch.randn(H, dtype=torch.float64, requires_grad=True),
    )]  # fmt: skip
    hx = (torch.randn(1, B, H, dtype=torch.float64, requires_grad=True),
          torch.randn(1, B, H, dtype=torch.float64, requires_grad=True))  # fmt: skip
    masks = [torch.rand(B, H, dtype=torch.float64).lt(0.7).double() / 0.7]
    keep = [(torch.rand(T, B, H).lt(0.2).double(), torch.rand(T, B, H).lt(0.3).double())]
    lengths = torch.tensor([5, 2, 4])

    def run(x, hx):
        out, (h, c), states = functional.lstm(
            x, hx, w, lengths=lengths, backend=backend, return_states=True,
            recurrent_masks=masks, zoneout_keep=keep, training=True,
        )  # fmt: skip
        return (out * 1.3).sum() + h.sum() + (c * c).sum() + states.c.sin().sum()

    leaves = [x, *hx, *(t for t in w[0] if t is not None)]
    eager = torch.autograd.grad(run(x, hx), leaves)
    got = torch.autograd.grad(torch.compile(run, backend="aot_eager", fullgraph=True)(x, hx),
                              leaves)  # fmt: skip
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class _WithLengths(nn.Module):
    def __init__(self, lstm: lstmkit.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, (h, c) = self.lstm(x, lengths=lengths)
        return out, h, c


@pytest.mark.parametrize("backend", FAST)
def test_export_dynamic_batch_and_length(backend: str) -> None:
    torch.manual_seed(3)
    lstm = lstmkit.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3, peephole=True,
                        layer_norm=True, backend=backend).eval()  # fmt: skip
    model = _WithLengths(lstm)
    T, B = Dim("T", min=2, max=64), Dim("B", min=2, max=64)
    program = torch.export.export(
        model, (torch.randn(6, 3, 4), torch.tensor([6, 2, 5])),
        dynamic_shapes={"x": {0: T, 1: B}, "lengths": {0: B}},
    )  # fmt: skip
    ops = [n for n in program.graph.nodes if "lstmkit.recurrence" in str(n.target)]
    assert len(ops) == 4
    for steps, lengths in ((11, [11, 3, 7, 1, 9]), (3, [2, 3])):
        x = torch.randn(steps, len(lengths), 4)
        got, want = program.module()(x, torch.tensor(lengths)), model(x, torch.tensor(lengths))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


def test_jit_trace_records_the_computation() -> None:
    """Not a constant: the traced module follows new inputs of other shapes."""
    torch.manual_seed(4)
    lstm = lstmkit.LSTM(4, 5, num_layers=2, batch_first=True, cell_clip=1.0)
    traced = torch.jit.trace(lstm, (torch.randn(2, 6, 4),))
    assert "lstmkit::recurrence" in str(traced.graph)
    for shape in ((3, 9, 4), (1, 2, 4)):
        x = torch.randn(shape)
        got, want = traced(x), lstm(x)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1][1], want[1][1])
