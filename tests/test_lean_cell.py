"""``LSTMCell`` without autograd runs the step kernel in one compiled call
(:func:`lstmkit._lean_step.lean_cell`); with autograd it runs the general path. The two
give the same numbers for every option, layout and dtype, draw the same random masks,
raise the same errors, and the lean one runs exactly where it claims to."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not importable")

D64 = torch.float64

CASES = [
    dict(),
    dict(bias=False),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.6),
    dict(activation="softsign", recurrent_activation="hardsigmoid"),
    dict(layer_norm=True),
    dict(zoneout=(0.3, 0.1)),
    dict(recurrent_dropout=0.4),
    dict(layer_norm=True, peephole=True, gate_clip=1.0, zoneout=0.2, recurrent_dropout=0.3,
         activation="relu"),
]  # fmt: skip


def _perturbed(options: dict, dtype: torch.dtype, training: bool) -> lstmkit.LSTMCell:
    """A cell whose every parameter (gains too) is random."""
    torch.manual_seed(0)
    cell = lstmkit.LSTMCell(4, 5, dtype=dtype, **options).train(training)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    return cell


def _steps(cell, xs, hx, mask, grad: bool, seed: int) -> list[torch.Tensor]:
    """Every step's h and c looping the cell, with autograd (the general path) or not."""
    torch.manual_seed(seed)
    hs, cs, state = [], [], hx
    with torch.set_grad_enabled(grad):
        for x_t in xs:
            state = cell(x_t, state, recurrent_mask=mask)
            hs.append(state[0])
            cs.append(state[1])
    return [torch.stack(hs).detach(), torch.stack(cs).detach()]


@pytest.mark.parametrize("layout", ["batched", "unbatched", "no-state"])
@pytest.mark.parametrize("dtype", [D64, torch.float32], ids=str)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_lean_cell_equals_the_general_path(
    options: dict, training: bool, dtype: torch.dtype, layout: str, lean_calls: list[int]
) -> None:
    cell = _perturbed(options, dtype, training)
    lead = () if layout == "unbatched" else (3,)
    xs = torch.randn(4, *lead, 4, dtype=dtype)
    hx = None if layout == "no-state" else tuple(torch.randn(*lead, 5, dtype=dtype) for _ in "hc")
    mask = cell.recurrent_dropout_mask(3)
    if mask is not None and layout == "unbatched":
        mask = mask[0]
    want = _steps(cell, xs, hx, mask, grad=True, seed=5)
    assert not lean_calls
    got = _steps(cell, xs, hx, mask, grad=False, seed=5)
    assert len(lean_calls) == 4
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == D64 else dict(rtol=2e-5, atol=2e-6)
    for name, a, b in zip(("h", "c"), got, want):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_rows_split_across_threads_match_float64(lean_calls: list[int]) -> None:
    """20 rows run as two row ranges on two threads (8 rows a thread at least), as
    one range on one thread, and in float64 on the general path: all agree."""
    cell = _perturbed(dict(peephole=True, zoneout=0.2), torch.float32, False)
    want_cell = _perturbed(dict(peephole=True, zoneout=0.2), D64, False)
    want_cell.load_state_dict(cell.state_dict())
    x = torch.randn(20, 4)
    hx = (torch.randn(20, 5), torch.randn(20, 5))
    before = torch.get_num_threads()
    got = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                got[threads] = cell(x, hx)
    finally:
        torch.set_num_threads(before)
    assert len(lean_calls) == 2
    want = want_cell(x.double(), tuple(s.double() for s in hx))
    for threads in (1, 2):
        for a, b in zip(got[threads], want):
            torch.testing.assert_close(a.double(), b.detach(), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: m(x, (torch.zeros(3, 5, dtype=D64),) * 2),  # wrong batch in hx
        lambda m, x: m(x[:, :3]),  # wrong input size
        lambda m, x: m(x.float()),  # dtype unlike the weights
        lambda m, x: m(x, recurrent_mask=torch.ones(2, 4, dtype=D64)),  # wrong mask shape
        lambda m, x: m(x, (torch.zeros(2, 5, dtype=D64), torch.zeros(5, dtype=D64))),
    ],
    ids=["hx-batch", "input-size", "dtype", "mask-shape", "hx-dims"],
)
def test_bad_inputs_get_the_general_paths_errors(call, lean_calls: list[int]) -> None:
    cell = lstmkit.LSTMCell(4, 5, dtype=D64)
    x = torch.randn(2, 4, dtype=D64)
    with pytest.raises((RuntimeError, ValueError, TypeError)) as general:
        call(cell, x)
    with torch.no_grad(), pytest.raises(general.type) as lean:
        call(cell, x)
    assert str(lean.value) == str(general.value) and not lean_calls


def test_a_wrong_weight_is_named_before_a_wrong_mask(lean_calls: list[int]) -> None:
    """With both a weight of the wrong shape and a mask of the wrong shape, the general
    path fails on the weight first (its product); so does the cell without autograd."""
    cell = lstmkit.LSTMCell(4, 5, dtype=D64)
    cell.weight_ih = torch.nn.Parameter(torch.randn(20, 3, dtype=D64))
    x, mask = torch.randn(2, 4, dtype=D64), torch.ones(2, 4, dtype=D64)
    with pytest.raises(RuntimeError) as general:
        cell(x, recurrent_mask=mask)
    with torch.no_grad(), pytest.raises(RuntimeError) as lean:
        cell(x, recurrent_mask=mask)
    assert str(lean.value) == str(general.value) and not lean_calls


def test_training_without_a_mask_gets_the_general_paths_error(lean_calls: list[int]) -> None:
    cell = lstmkit.LSTMCell(4, 5, recurrent_dropout=0.5)
    with pytest.raises(ValueError) as general:
        cell(torch.randn(2, 4))
    with torch.no_grad(), pytest.raises(ValueError) as lean:
        cell(torch.randn(2, 4))
    assert str(lean.value) == str(general.value) and not lean_calls


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_an_explicit_backend_is_honoured(backend: str, lean_calls: list[int]) -> None:
    cell = lstmkit.LSTMCell(4, 5, backend=backend)
    with torch.no_grad():
        cell(torch.randn(2, 4))
    assert not lean_calls


def test_outputs_are_fresh_tensors(lean_calls: list[int]) -> None:
    """h' and c' share no memory with each other or with the state passed in."""
    cell = lstmkit.LSTMCell(4, 5)
    hx = (torch.randn(2, 5), torch.randn(2, 5))
    before = [s.clone() for s in hx]
    with torch.no_grad():
        h, c = cell(torch.randn(2, 4), hx)
        h.add_(1.0)
    assert lean_calls and all(torch.equal(a, b) for a, b in zip(hx, before))
    assert h.data_ptr() != c.data_ptr()
