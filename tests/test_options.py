"""Cell options: peepholes, gate_clip, cell_clip (the ONNX LSTM operator's options).

Checked against the equations written out here (float64), against ONNX (onnx's reference
evaluator for peepholes, onnxruntime for clip), and each backend against the reference,
gradients included.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from onnx_node import onnx_lstm
from torch.func import functional_call

import lstmkit
from lstmkit.backends.numba import engine
from lstmkit.interop import load_onnx

D64 = torch.float64
COMBOS = [
    dict(peephole=True),
    dict(gate_clip=0.6),
    dict(cell_clip=0.3),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.5),
]


def by_equations(lstm, x, h0, c0):
    """One layer, forward direction, the equations as written in the docs: (T, B, H)."""
    W, R = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    H = lstm.hidden_size
    gc = lstm.gate_clip if lstm.gate_clip is not None else float("inf")
    cc = lstm.cell_clip if lstm.cell_clip is not None else float("inf")
    zero = torch.zeros(H, dtype=x.dtype)
    w_ci, w_cf, w_co = (getattr(lstm, f"weight_c{g}_l0") if lstm.peephole else zero
                        for g in "ifo")  # fmt: skip
    h, c, ys = h0, c0, []
    for x_t in x:
        z = x_t @ W.T + b + h @ R.T
        zi, zf, zg, zo = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        i = torch.sigmoid((zi + w_ci * c).clamp(-gc, gc))
        f = torch.sigmoid((zf + w_cf * c).clamp(-gc, gc))
        g = torch.tanh(zg.clamp(-gc, gc))
        c = (f * c + i * g).clamp(-cc, cc)
        o = torch.sigmoid((zo + w_co * c).clamp(-gc, gc))
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


@pytest.mark.parametrize("options", COMBOS, ids=str)
def test_options_follow_their_equations(options: dict, backend: str) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 4, dtype=D64, backend=backend, **options)
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(4)  # large pre-activations: the clips are active
    x, h0, c0 = (
        torch.randn(6, 2, 3, dtype=D64),
        torch.randn(1, 2, 4, dtype=D64),
        torch.randn(1, 2, 4, dtype=D64),
    )
    out, (h, c) = lstm(x, (h0, c0))
    ys, h_ref, c_ref = by_equations(lstm, x, h0[0], c0[0])
    torch.testing.assert_close(out, ys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c[0], c_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[0], h_ref, rtol=1e-12, atol=1e-12)
    if "cell_clip" in options:
        assert c.abs().max() <= options["cell_clip"] + 1e-12


GRID = list(itertools.product(COMBOS, (1, 2), (False, True), (0, 2), (False, True)))


@pytest.mark.parametrize("fast", ["fused", "compiled"])
@pytest.mark.parametrize("options, layers, bidirectional, proj, lengths", GRID, ids=str)
def test_fast_backends_match_reference_with_options(
    options, layers, bidirectional, proj, lengths, fast
):
    g = torch.Generator().manual_seed(layers + proj)
    kwargs = dict(
        num_layers=layers, bidirectional=bidirectional, proj_size=proj, dtype=D64, **options
    )
    ref = lstmkit.LSTM(3, 5, backend="reference", **kwargs)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(3)
    fused = lstmkit.LSTM(3, 5, backend=fast, **kwargs)
    fused.load_state_dict(ref.state_dict())
    # two layers: enough rows for compiled to split them across two threads (when torch has 2+)
    batch = 4 if layers == 1 else 2 * engine.MIN_ROWS_PER_THREAD
    x = torch.randn(5, batch, 3, generator=g, dtype=D64, requires_grad=True)
    lens = torch.tensor([5, 2, 4, 1] * (batch // 4)) if lengths else None
    results = []
    for model in (ref, fused):
        out, (h, c), st = model(x, lengths=lens, return_states=True)
        w = torch.Generator().manual_seed(2)
        loss = sum(
            (t * torch.randn(t.shape, generator=w, dtype=D64)).sum() for t in (out, h, c, st.c)
        )
        results.append([out, h, c, *torch.autograd.grad(loss, [x, *model.parameters()])])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"tensor {k}")


@pytest.mark.parametrize("options", COMBOS, ids=str)
def test_gradcheck_and_gradgradcheck_with_options(options: dict, backend: str) -> None:
    torch.manual_seed(1)
    lstm = lstmkit.LSTM(2, 3, bidirectional=True, dtype=D64, backend=backend, **options)
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, *params):
        out, (_, c) = functional_call(lstm, dict(zip(names, params)), (x,))
        return out, c

    x = torch.randn(3, 2, 2, dtype=D64, requires_grad=True) * 2
    params = [(p.detach() * 3).requires_grad_() for p in lstm.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))
    # the double backward along random directions (v^T J u, fast mode): any wrong second
    # derivative shows; the whole Jacobian is checked for plain cells in test_gradcheck.py
    assert torch.autograd.gradgradcheck(f, (x, *params), fast_mode=True)


def test_auto_runs_the_options_on_the_compiled_backend() -> None:
    from lstmkit.backends import BACKENDS, select

    x = torch.zeros(2, 1, 16)
    assert select("auto", x, ("peephole", "gate_clip", "cell_clip")) is BACKENDS["compiled"].run


def test_cell_and_step_with_options_equal_the_layer(backend: str) -> None:
    opts = dict(peephole=True, gate_clip=0.7, cell_clip=0.4)
    lstm = lstmkit.LSTM(3, 4, dtype=D64, **opts)
    cell = lstmkit.LSTMCell(3, 4, dtype=D64, backend=backend, **opts)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=D64) * 3
    out, (h_n, c_n) = lstm(x)
    h = c = torch.zeros(2, 4, dtype=D64)
    state, steps = None, []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        y, state = lstm.step(x_t, state)
        steps.append(y)
    torch.testing.assert_close(h, h_n[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, c_n[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.stack(steps), out, rtol=1e-12, atol=1e-12)


def test_parameters_and_repr() -> None:
    lstm = lstmkit.LSTM(3, 4, bidirectional=True, peephole=True, gate_clip=2.0, cell_clip=3)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:7] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_ci_l0",
        "weight_cf_l0",
        "weight_co_l0",
    ]
    assert "weight_co_l0_reverse" in names and lstm.weight_ci_l0.shape == (4,)
    assert repr(lstm) == (
        "LSTM(3, 4, bidirectional=True, peephole=True, gate_clip=2.0, cell_clip=3.0)"
    )
    assert [n for n, _ in lstmkit.LSTMCell(3, 4, peephole=True).named_parameters()][-3:] == [
        "weight_ci",
        "weight_cf",
        "weight_co",
    ]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(gate_clip=0),
            ValueError,
            "gate_clip should be a positive finite number or None, got 0",
        ),
        (dict(cell_clip=-1.0), ValueError, "cell_clip should be a positive finite number"),
        (dict(gate_clip="1"), TypeError, "gate_clip should be a positive number or None, got: str"),
        (dict(peephole=1), TypeError, "peephole should be of type bool, got: int"),
    ],
)
def test_option_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        lstmkit.LSTM(3, 4, **kwargs)
    with pytest.raises(error, match=message):
        lstmkit.LSTMCell(3, 4, **kwargs)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_onnx_operator_peepholes_and_clip(clip: float | None, backend: str) -> None:
    """Random W, R, B, P in ONNX's layout: onnx's reference evaluator (peepholes; it
    ignores clip) and onnxruntime (peepholes and clip) agree with lstmkit."""
    rng = np.random.default_rng(3)
    T, Bt, I, H, D = 5, 3, 4, 6, 2
    x = rng.standard_normal((T, Bt, I)).astype(np.float32)
    W, R = (rng.standard_normal((D, 4 * H, k)).astype(np.float32) for k in (I, H))
    B, P = (
        rng.standard_normal((D, 8 * H)).astype(np.float32),
        rng.standard_normal((D, 3 * H)).astype(np.float32),
    )
    runtime = "reference" if clip is None else "onnxruntime"
    y, y_h, y_c = onnx_lstm(x, W, R, B, P, clip, runtime)
    lstm = lstmkit.LSTM(I, H, bidirectional=True, peephole=True, gate_clip=clip, backend=backend)
    load_onnx(lstm, W, R, B, P)
    with torch.no_grad():
        out, (h, c) = lstm(torch.from_numpy(x))
    expected = torch.from_numpy(y).permute(0, 2, 1, 3).reshape(T, Bt, D * H)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, torch.from_numpy(y_h), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, torch.from_numpy(y_c), rtol=1e-5, atol=1e-5)


def test_onnx_backend_test_vector_with_peepholes(backend: str) -> None:
    """The ONNX operator's own `with_peepholes` case (onnx/backend/test/case/node/lstm.py,
    expected output from its LSTMHelper); note its constant weights, which would hide a
    gate swap, hence the randomized ONNX test above."""
    lstm_case = pytest.importorskip("onnx.backend.test.case.node.lstm")
    x = np.array([[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]], np.float32)  # (T=1, B=2, 4)
    H = 3
    W = 0.1 * np.ones((1, 4 * H, 4), np.float32)
    R = 0.1 * np.ones((1, 4 * H, H), np.float32)
    B = np.zeros((1, 8 * H), np.float32)
    P = 0.1 * np.ones((1, 3 * H), np.float32)
    zeros = np.zeros((1, 2, H), np.float32)
    _, y_h, _ = lstm_case.LSTMHelper(
        X=x, W=W, R=R, B=B, P=P, initial_c=zeros, initial_h=zeros
    ).step()
    lstm = lstmkit.LSTM(4, H, peephole=True, backend=backend)
    load_onnx(lstm, W, R, B, P)
    with torch.no_grad():
        _, (h, _) = lstm(torch.from_numpy(x))
    torch.testing.assert_close(
        h, torch.from_numpy(np.asarray(y_h, np.float32)), rtol=1e-5, atol=1e-6
    )
