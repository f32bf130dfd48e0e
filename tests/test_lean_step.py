"""``LSTM.step`` without autograd runs one compiled call per layer
(:mod:`lstmkit._lean_step`); with autograd it runs the general path. The two must give
the same numbers for every option, layout and dtype, draw the same random masks, and
the lean one must run exactly where it claims to."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not importable")

D64 = torch.float64

CASES = [
    dict(),
    dict(num_layers=2),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.6),
    dict(activation="softsign", recurrent_activation="hardsigmoid"),
    dict(layer_norm=True, num_layers=2, proj_size=3),
    dict(zoneout=(0.3, 0.1), num_layers=2),
    dict(recurrent_dropout=0.4, num_layers=2, dropout=0.3),
    dict(layer_norm=True, peephole=True, gate_clip=1.0, zoneout=0.2, recurrent_dropout=0.3,
         proj_size=2, num_layers=2, activation="relu"),
]  # fmt: skip


def _perturb_(lstm: lstmkit.LSTM) -> None:
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def _steps(lstm, xs, hx, masks, grad: bool, seed: int):
    """Every step's output and the final state, on the general path (``grad``) or not."""
    torch.manual_seed(seed)
    outs, state = [], hx
    with torch.set_grad_enabled(grad):
        for x_t in xs:
            y, state = lstm.step(x_t, state, recurrent_masks=masks)
            outs.append(y)
    return [t.detach() for t in (torch.stack(outs), *state)]


@pytest.mark.parametrize("dtype", [D64, torch.float32], ids=str)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_lean_step_equals_the_general_path(
    options: dict, training: bool, dtype: torch.dtype, lean_calls: list[int]
) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 5, dtype=dtype, **options).train(training)
    _perturb_(lstm)
    L, B, P = lstm.num_layers, 3, lstm.proj_size or 5
    xs = torch.randn(4, B, 4, dtype=dtype)
    hx = (torch.randn(L, B, P, dtype=dtype), torch.randn(L, B, 5, dtype=dtype))
    masks = lstm.recurrent_dropout_masks(B)
    want = _steps(lstm, xs, hx, masks, grad=True, seed=5)
    assert not lean_calls
    got = _steps(lstm, xs, hx, masks, grad=False, seed=5)
    assert len(lean_calls) == 4  # one call a step, every layer in it
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == D64 else dict(rtol=2e-5, atol=2e-6)
    for name, a, b in zip(("outputs", "h_n", "c_n"), got, want):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_lean_step_unbatched_and_without_state(lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, num_layers=2, proj_size=2, dtype=D64)
    _perturb_(lstm)
    x_t = torch.randn(4, dtype=D64)
    with torch.no_grad():
        y, (h, c) = lstm.step(x_t)
    assert lean_calls and y.shape == (2,) and h.shape == (2, 2) and c.shape == (2, 5)
    want_y, (want_h, want_c) = lstm.step(x_t)  # with grad: the general path
    for a, b in zip((y, h, c), (want_y, want_h, want_c)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


def test_lean_step_output_does_not_alias_the_state(lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, dtype=D64)
    with torch.no_grad():
        y, (h, _) = lstm.step(torch.randn(2, 4, dtype=D64))
    before = h.clone()
    y.zero_()
    assert lean_calls and torch.equal(h, before)


def test_lean_step_sees_weight_updates_between_calls(lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, dtype=D64)
    x_t = torch.randn(2, 4, dtype=D64)
    with torch.no_grad():
        first = lstm.step(x_t)[0]
        lstm.weight_ih_l0.data = torch.randn_like(lstm.weight_ih_l0)  # a new storage
        second = lstm.step(x_t)[0]
    want = lstm.step(x_t)[0].detach()
    assert not torch.equal(first, second)
    torch.testing.assert_close(second, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: m.step(x, (torch.zeros(2, 2, 5, dtype=D64),) * 2),  # wrong layer count
        lambda m, x: m.step(x[:, :3]),  # wrong input size
        lambda m, x: m.step(x.float()),  # dtype unlike the weights
    ],
)
def test_bad_inputs_get_the_general_paths_errors(call, lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, dtype=D64)
    x_t = torch.randn(2, 4, dtype=D64)
    with pytest.raises((RuntimeError, ValueError)) as general:
        call(lstm, x_t)
    with torch.no_grad(), pytest.raises(general.type) as lean:
        call(lstm, x_t)
    assert str(lean.value) == str(general.value) and not lean_calls


def _broken_weight(lstm: lstmkit.LSTM) -> None:
    """Layer 1's recurrent weight one column short (a shape no kernel may read past)."""
    lstm.weight_hh_l1 = torch.nn.Parameter(lstm.weight_hh_l1.detach()[:, :-1].clone())


def _half_peepholes(lstm: lstmkit.LSTM) -> None:
    """Layer 1 without its input-gate peephole: a layer holding part of an option."""
    lstm.weight_ci_l1 = None


def _no_recurrent_weights(lstm: lstmkit.LSTM) -> None:
    """No ``W_hh`` in any layer (the kernel takes its shapes from it)."""
    lstm.weight_hh_l0 = lstm.weight_hh_l1 = None


def _no_projection_weights(lstm: lstmkit.LSTM) -> None:
    """``proj_size`` set but no ``W_hr`` in any layer (the general path then runs unprojected)."""
    lstm.weight_hr_l0 = lstm.weight_hr_l1 = None


def _negative_view(lstm: lstmkit.LSTM) -> None:
    """A weight whose memory holds the negated values (a negative-bit view)."""
    w = lstm.weight_hh_l0.detach().clone()
    del lstm._parameters["weight_hh_l0"]
    lstm.weight_hh_l0 = torch._neg_view(w)


def _bad_dropout(lstm: lstmkit.LSTM) -> None:
    """A dropout probability set out of range after construction."""
    lstm.dropout = 1.5


def _dropout_no_number(lstm: lstmkit.LSTM) -> None:
    """A dropout probability that is no number, set after construction."""
    lstm.dropout = "half"


@pytest.mark.parametrize(
    "spoil",
    [_broken_weight, _half_peepholes, _no_recurrent_weights, _no_projection_weights,
     _negative_view, _bad_dropout, _dropout_no_number],
    ids=["shape", "partial", "no-W_hh", "no-W_hr", "negative-bit", "dropout", "dropout-type"],
)  # fmt: skip
def test_a_spoilt_module_takes_the_general_path(spoil, lean_calls: list[int]) -> None:
    """Every layer's weights are checked before the kernel reads them through their
    addresses: a weight missing, of the wrong shape or whose memory is not its values,
    a layer holding part of an option, or a bad dropout in a two-layer stack run the
    general path (its result or its error), drawing nothing first."""
    lstm = lstmkit.LSTM(4, 5, num_layers=2, peephole=True, proj_size=3, zoneout=0.2, dtype=D64)
    _perturb_(lstm)
    spoil(lstm)
    x_t = torch.randn(2, 4, dtype=D64)

    def outcome(grad: bool) -> tuple:
        torch.manual_seed(4)
        try:
            with torch.set_grad_enabled(grad):
                y, (h, c) = lstm.step(x_t)
        except (RuntimeError, ValueError, AttributeError, TypeError) as error:
            return (type(error), str(error), torch.rand(2))
        return (y.detach(), h.detach(), c.detach(), torch.rand(2))

    want, got = outcome(True), outcome(False)
    assert not lean_calls
    assert len(got) == len(want)
    for a, b in zip(got, want):
        if isinstance(b, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        else:
            assert a == b


def test_dropout_of_one_between_layers(lean_calls: list[int]) -> None:
    """``dropout=1`` zeroes the upper layer's input and draws nothing (as ``F.dropout``):
    the lean step gives the general path's numbers, and the random stream after it."""
    lstm = lstmkit.LSTM(4, 5, num_layers=3, dropout=1.0, zoneout=0.3, dtype=D64).train()
    _perturb_(lstm)
    xs = torch.randn(3, 2, 4, dtype=D64)
    want = [*_steps(lstm, xs, None, None, grad=True, seed=3), torch.rand(3)]
    got = [*_steps(lstm, xs, None, None, grad=False, seed=3), torch.rand(3)]
    assert len(lean_calls) == 3
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_table_columns_follow_the_layer_weights() -> None:
    """The step kernel reads a layer's weights from its table row by position: the first
    columns are :class:`~lstmkit.functional.LayerWeights`' fields, in order."""
    from lstmkit.backends.numba import step
    from lstmkit.functional import LayerWeights

    assert step.SLOTS[: len(LayerWeights._fields)] == LayerWeights._fields


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_an_explicit_backend_is_honoured(backend: str, lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, backend=backend)
    with torch.no_grad():
        lstm.step(torch.randn(2, 4))
    assert not lean_calls


def test_transforms_and_forward_ad_take_the_general_path(lean_calls: list[int]) -> None:
    import torch.autograd.forward_ad as fwAD

    lstm = lstmkit.LSTM(4, 5, dtype=D64)
    x_t, tangent = torch.randn(2, 4, dtype=D64), torch.randn(2, 4, dtype=D64)
    with torch.no_grad(), fwAD.dual_level():
        y, _ = lstm.step(fwAD.make_dual(x_t, tangent))
        got = fwAD.unpack_dual(y).tangent
    _, want = torch.func.jvp(lambda v: lstm.step(v)[0], (x_t,), (tangent,))
    assert got is not None and not lean_calls
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        batched = torch.func.vmap(lambda v: lstm.step(v)[0])(x_t)
    torch.testing.assert_close(batched, lstm.step(x_t)[0].detach(), rtol=1e-12, atol=1e-12)
    assert not lean_calls


def test_a_mask_of_another_dtype_gets_the_general_paths_error(lean_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, recurrent_dropout=0.5)  # float32, training
    masks = [m.double() for m in lstm.recurrent_dropout_masks(2)]
    with pytest.raises(RuntimeError) as general:
        lstm.step(torch.randn(2, 4), recurrent_masks=masks)
    with torch.no_grad(), pytest.raises(RuntimeError) as lean:
        lstm.step(torch.randn(2, 4), recurrent_masks=masks)
    assert str(lean.value) == str(general.value) and not lean_calls


@pytest.mark.parametrize("backend", ["auto", "compiled", "fused"])
def test_forward_mode_ad_through_a_sequence_is_exact_or_refused(backend: str) -> None:
    """Forward-mode AD (tangents on the tensors, even under no_grad) needs the reference
    loop's torch ops: ``auto`` runs it, an explicit hand-written backend refuses."""
    import torch.autograd.forward_ad as fwAD

    lstm = lstmkit.LSTM(4, 5, dtype=D64, backend=backend)
    x, tangent = torch.randn(6, 2, 4, dtype=D64), torch.randn(6, 2, 4, dtype=D64)
    want = torch.func.jvp(lambda v: lstm.to_torch()(v)[0], (x,), (tangent,))[1]
    with torch.no_grad(), fwAD.dual_level():
        dual = fwAD.make_dual(x, tangent)
        if backend != "auto":
            with pytest.raises(NotImplementedError, match="forward-mode AD"):
                lstm(dual)
            return
        got = fwAD.unpack_dual(lstm(dual)[0]).tangent
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 6, 20], ids=["one-row", "six-rows", "twenty-rows"])
def test_float32_products_on_every_block(batch: int, lean_calls: list[int]) -> None:
    """float32 steps run their products on the dot-product blocks (4 x 4 while four rows
    remain, then 1 x 16 a row; the projection's 7 columns as plain sums; 20 rows as two
    row ranges where torch has two threads): 1, 6 or 20 rows of
    37 inputs and 20 hidden units (80 gate columns) with a projection, layer norm,
    peepholes and zoneout, one of the weights stored transposed (not contiguous),
    against the general path in float64."""
    torch.manual_seed(2)
    options = dict(peephole=True, layer_norm=True, proj_size=7, num_layers=2, zoneout=0.2)
    lstm = lstmkit.LSTM(37, 20, **options).eval()
    _perturb_(lstm)
    with torch.no_grad():  # the same values, stored column-major
        lstm.weight_hh_l1.data = lstm.weight_hh_l1.detach().t().contiguous().t()
    assert not lstm.weight_hh_l1.is_contiguous()
    want_lstm = lstmkit.LSTM(37, 20, dtype=D64, **options).eval()
    want_lstm.load_state_dict(lstm.state_dict())
    xs = torch.randn(3, batch, 37)
    hx = (torch.randn(2, batch, 7), torch.randn(2, batch, 20))
    got = _steps(lstm, xs, hx, None, grad=False, seed=0)
    assert len(lean_calls) == 3  # one call a step, both layers in it
    want = _steps(want_lstm, xs.double(), tuple(s.double() for s in hx), None, True, seed=0)
    for name, a, b in zip(("outputs", "h_n", "c_n"), got, want):
        torch.testing.assert_close(
            a.double(), b, rtol=1e-4, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_an_input_that_requires_grad_steps_without_autograd(lean_calls: list[int]) -> None:
    """Under ``no_grad`` an input that requires grad still takes the lean step (its
    values, not its graph)."""
    lstm = lstmkit.LSTM(4, 5, dtype=D64)
    x_t = torch.randn(2, 4, dtype=D64, requires_grad=True)
    hx = (torch.randn(1, 2, 5, dtype=D64, requires_grad=True),) * 2
    with torch.no_grad():
        y, (h, c) = lstm.step(x_t, hx)
    assert lean_calls and not y.requires_grad
    want_y, (want_h, want_c) = lstm.step(x_t, hx)
    for a, b in zip((y, h, c), (want_y, want_h, want_c)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
