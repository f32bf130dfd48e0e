"""lstmkit in torch's ecosystem: torch.func transforms, torch.compile, nn.LSTM round trips."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, stack_module_state, vmap

import lstmkit


def test_vmap_over_independent_inputs_equals_a_loop() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    xs = torch.randn(5, 6, 2, 3)  # five independent (T, B, I) inputs
    out, (h, c) = vmap(lstm)(xs)
    for k, x in enumerate(xs):
        ref_out, (ref_h, ref_c) = lstm(x)
        torch.testing.assert_close(out[k], ref_out)
        torch.testing.assert_close(h[k], ref_h)
        torch.testing.assert_close(c[k], ref_c)


def test_vmap_over_stacked_parameters_is_an_ensemble() -> None:
    models = [lstmkit.LSTM(3, 4, proj_size=2) for _ in range(4)]
    params, buffers = stack_module_state(models)
    x = torch.randn(6, 2, 3)

    def run(p, b):
        return functional_call(models[0], (p, b), (x,))[0]

    out = vmap(run)(params, buffers)
    for k, model in enumerate(models):
        torch.testing.assert_close(out[k], model(x)[0])


def test_grad_and_jacrev_agree_with_autograd() -> None:
    lstm = lstmkit.LSTM(3, 4, dtype=torch.float64)
    params = {k: v.detach() for k, v in lstm.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def loss(p, x):
        return functional_call(lstm, p, (x,))[0].square().sum()

    g = grad(loss)(params, x)
    ref = torch.autograd.grad(lstm(x)[0].square().sum(), list(lstm.parameters()))
    for name, r in zip(params, ref):
        torch.testing.assert_close(g[name], r)
    jac = jacrev(lambda x: lstm(x)[1][0])(x)  # d h_n / d x: (1, 2, 4, 5, 2, 3)
    xr = x.clone().requires_grad_()
    row = torch.autograd.grad(lstm(xr)[1][0][0, 1, 2], xr)[0]
    torch.testing.assert_close(jac[0, 1, 2], row)


@pytest.mark.parametrize("backend", ["fused", "compiled"])
def test_explicit_fast_backends_refuse_transforms_clearly(backend: str) -> None:
    lstm = lstmkit.LSTM(3, 4, backend=backend)
    with pytest.raises(NotImplementedError, match=r"torch\.func transforms"):
        vmap(lstm)(torch.randn(2, 5, 1, 3))


def test_torch_compile_fullgraph_matches_eager() -> None:
    """nn.LSTM graph-breaks here; lstmkit compiles as one graph (auto runs its engine as
    one custom op per layer-direction), with equal outputs and gradients."""
    torch._dynamo.reset()
    lstm = lstmkit.LSTM(3, 4)
    x = torch.randn(3, 2, 3, requires_grad=True)
    compiled = torch.compile(lstm, fullgraph=True, dynamic=False)
    out, (h, c) = compiled(x)
    ref_out, (ref_h, ref_c) = lstm(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(c, ref_c)
    g = torch.autograd.grad(out.sum() + h.sum(), [x, lstm.weight_hh_l0])
    ref = torch.autograd.grad(ref_out.sum() + ref_h.sum(), [x, lstm.weight_hh_l0])
    for a, b in zip(g, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.2),
        dict(proj_size=2, bias=False),
    ],
)
def test_from_torch_and_to_torch_round_trip(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nn.LSTM(3, 5, dtype=torch.float64, **kwargs).eval()
    ours = lstmkit.LSTM.from_torch(theirs)
    assert repr(ours) == repr(theirs) and not ours.training
    assert ours.weight_ih_l0.dtype == torch.float64
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])
    back = ours.to_torch()
    assert isinstance(back, nn.LSTM) and repr(back) == repr(theirs) and not back.training
    for a, b in zip(back.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)


def test_torch_export_with_a_dynamic_batch() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        lstm, (torch.randn(5, 2, 3),), dynamic_shapes={"input": {1: batch}}
    )
    x = torch.randn(5, 7, 3)
    out, (h, c) = program.module()(x)
    ref_out, (ref_h, ref_c) = lstm(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)


def test_to_torch_refuses_options_nn_lstm_lacks() -> None:
    with pytest.raises(ValueError, match=r"nn\.LSTM has no peephole, gate_clip"):
        lstmkit.LSTM(3, 4, peephole=True, gate_clip=1.0).to_torch()
    assert isinstance(lstmkit.LSTM(3, 4, forget_bias=1.0).to_torch(), nn.LSTM)
