"""The ``triton`` backend against the reference: outputs, states and every gradient, for
each cell option, lengths, reverse, projection and dtype; its refusals by name.

On a machine with CUDA these run on the GPU. Without one they run the same kernels on
CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``, set here for this
module only; the kernels are decorated in that mode on their first import, below). The
whole module skips when triton is not installed. Shapes are tiny (the interpreter runs
each program in numpy).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor

import lstmkit
from lstmkit.backends import BACKENDS, ops, reference, select
from lstmkit.backends.contract import Recurrence
from lstmkit.backends.triton import availability
from lstmkit.option_calls import call_settings, cell_config
from lstmkit.options import TRAINABLE, CellConfig

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


def _import_triton_interpreted() -> bool:
    """Import triton and the kernels with ``TRITON_INTERPRET=1`` (no GPU here), then
    restore the variable; False when triton was imported before without it."""
    if availability.imported_uninterpreted():
        return False
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        availability.kernels()
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    return True


if not availability.installed():
    pytest.skip("triton is not installed", allow_module_level=True)
if not CUDA and not _import_triton_interpreted():
    pytest.skip("triton was imported before this module without TRITON_INTERPRET=1",
                allow_module_level=True)  # fmt: skip

TRITON: Recurrence = BACKENDS["triton"].run


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


TOLERANCES = {  # (rtol, atol) against the float64 reference on the same rounded inputs
    torch.float32: (1e-4, 2e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (5e-2, 5e-2),
}
T, B, H = 4, 3, 5


def _problem(
    dtype: torch.dtype, proj: int, options: dict[str, object], seed: int
) -> tuple[list[Tensor], CellConfig, dict[str, Tensor]]:
    """Random ``[xg, h0, c0, W_hh, W_hr?]``, the cell configuration and its option
    tensors by name, random (peepholes, layer-norm gains, masks, keep weights)."""
    g = torch.Generator().manual_seed(seed)
    P = proj or H

    def rand(*shape: int, scale: float = 1.0) -> Tensor:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    def bits(*shape: int) -> Tensor:
        return torch.randint(0, 2, shape, generator=g).to(dtype)

    tensors = [rand(T, B, 4 * H), rand(B, P), rand(B, H), rand(4 * H, P, scale=0.5)]
    if proj:
        tensors.append(rand(P, H, scale=0.5))
    named: dict[str, Tensor] = {}
    if options.get("peephole"):
        named |= {n: rand(H, scale=0.5) for n in ("weight_ci", "weight_cf", "weight_co")}
    if options.get("layer_norm"):
        named |= {"ln_weight_hh": 1 + rand(4 * H, scale=0.2), "ln_weight_c": 1 + rand(H, scale=0.2),
                  "ln_bias_c": rand(H, scale=0.2)}  # fmt: skip
    if options.get("recurrent_mask"):
        named["recurrent_mask"] = bits(B, P) * 2  # dropout p = 0.5, rescaled
    zoneout = options.get("zoneout")
    if zoneout == "train":  # keep weights in {0, 1}
        named |= {"zoneout_h": bits(T, B, P), "zoneout_c": bits(T, B, H)}
    elif zoneout == "eval":  # the rates
        named |= {"zoneout_h": torch.full((T, B, P), 0.3, dtype=dtype),
                  "zoneout_c": torch.full((T, B, H), 0.2, dtype=dtype)}  # fmt: skip
    settings = call_settings({
        k: options[k] for k in ("gate_clip", "cell_clip", "activation", "recurrent_activation")
        if k in options
    })  # fmt: skip
    return tensors, cell_config(settings, frozenset(named)), named


def _run(
    run: Recurrence, tensors: list[Tensor], config: CellConfig, named: dict[str, Tensor],
    dtype: torch.dtype, lengths: Tensor | None, reverse: bool, seed: int,
) -> tuple[list[Tensor], list[Tensor]]:  # fmt: skip
    """Outputs ``(ys, h_n, c_n, cs)`` and the gradients of every input (and trainable
    option tensor) under a random cotangent on all four, from ``run`` in ``dtype`` (the
    reference on the CPU, the others on :data:`DEVICE`)."""
    device = torch.device("cpu") if run is reference.run_recurrence else DEVICE
    moved = {k: v.detach().to(device, dtype) for k, v in named.items()}
    params = [moved[k].requires_grad_() for k in moved if k in TRAINABLE]
    leaves = [t.detach().to(device, dtype).requires_grad_() for t in tensors] + params
    xg, h0, c0, w_hh, *w_hr = leaves[: len(tensors)]
    outs = run(
        xg, h0, c0, w_hh, w_hr[0] if w_hr else None, cell_states=True, reverse=reverse,
        lengths=None if lengths is None else lengths.to(device), config=config, tensors=moved,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 1)
    cots = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]
    torch.autograd.backward(outs, [c.to(o.device, o.dtype) for c, o in zip(cots, outs)])
    return [o.detach().cpu().double() for o in outs], [t.grad.cpu().double() for t in leaves]


def _check(
    dtype: torch.dtype, proj: int, options: dict[str, object], lengths: Tensor | None = None,
    reverse: bool = False, seed: int = 0,
) -> None:  # fmt: skip
    tensors, config, named = _problem(dtype, proj, options, seed)
    got = _run(TRITON, tensors, config, named, dtype, lengths, reverse, seed)
    want = _run(reference.run_recurrence, tensors, config, named, torch.float64, lengths, reverse,
                seed)  # fmt: skip
    rtol, atol = TOLERANCES[dtype]
    names = ["ys", "h_n", "c_n", "cs"]
    for name, a, b in zip(names, got[0], want[0]):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")
    for k, (a, b) in enumerate(zip(got[1], want[1])):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, k=k: f"grad {k}: {m}")


LENGTHS = torch.tensor([4, 2, 3])

OPTION_CASES = {
    "plain": {},
    "peephole": {"peephole": True},
    "clips": {"gate_clip": 0.8, "cell_clip": 0.6},
    "peephole+clips": {"peephole": True, "gate_clip": 0.8, "cell_clip": 0.6},
    "recurrent_mask": {"recurrent_mask": True},
    "zoneout_train": {"zoneout": "train"},
    "zoneout_eval": {"zoneout": "eval"},
    "layer_norm": {"layer_norm": True},
    "hardsigmoid+softsign": {"recurrent_activation": "hardsigmoid", "activation": "softsign"},
    "relu": {"activation": "relu"},
    "everything": {
        "peephole": True, "gate_clip": 1.5, "cell_clip": 1.0, "recurrent_mask": True,
        "zoneout": "train", "layer_norm": True,
    },
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_each_option_matches_reference(case: str) -> None:
    _check(torch.float32, 0, OPTION_CASES[case])


@pytest.mark.parametrize("case", ["plain", "everything", "zoneout_eval"])
def test_options_with_projection_lengths_and_reverse(case: str) -> None:
    _check(torch.float32, 3, OPTION_CASES[case], lengths=LENGTHS, reverse=True, seed=1)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_lengths_and_reverse(lengths: Tensor | None, reverse: bool) -> None:
    _check(torch.float32, 0, {}, lengths=lengths, reverse=reverse, seed=2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", ["plain", "everything"])
def test_16_bit_dtypes(dtype: torch.dtype, case: str) -> None:
    _check(dtype, 3 if case == "everything" else 0, OPTION_CASES[case], lengths=LENGTHS, seed=3)


def _lstm_pair(**kwargs: object) -> tuple[lstmkit.LSTM, lstmkit.LSTM]:
    """A float64 reference and a float32 triton module holding the same (float32-rounded)
    weights, drawn from a fixed seed so the result does not depend on the test order."""
    with torch.random.fork_rng():
        torch.manual_seed(11)
        ref = lstmkit.LSTM(3, 6, backend="reference", dtype=torch.float64, **kwargs)
    ours = lstmkit.LSTM(3, 6, backend="triton", device=DEVICE, **kwargs)
    ours.load_state_dict(ref.state_dict())
    ref.load_state_dict(ours.state_dict())  # the reference sees the rounded weights too
    return ref, ours


def test_module_bidirectional_two_layers_packed() -> None:
    ref, ours = _lstm_pair(num_layers=2, bidirectional=True, proj_size=2, layer_norm=True,
                           peephole=True, batch_first=True)  # fmt: skip
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([4, 1, 3])
    results = []
    for model, dtype, device in ((ref, torch.float64, "cpu"), (ours, torch.float32, DEVICE)):
        xs = x.detach().to(device, dtype).requires_grad_()
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xs, lengths, batch_first=True, enforce_sorted=False
        )
        out, (h_n, c_n) = model(packed)
        loss = (out.data * out.data.detach().cos()).sum() + (h_n * h_n).sum() + c_n.sum()
        loss.backward()
        grads = [xs.grad, *(p.grad for p in model.parameters())]
        results.append([t.detach().cpu().double() for t in (out.data, h_n, c_n, *grads)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)


def test_inference_without_grad_and_single_step() -> None:
    """No backward follows: the per-step buffers are one reused slot (and T = 1 works)."""
    ref, ours = _lstm_pair(proj_size=2, zoneout=0.25, cell_clip=0.5)
    ref.eval(), ours.eval()
    for steps in (1, 5):
        x = torch.randn(steps, 2, 3, dtype=torch.float64)
        with torch.no_grad():
            want = ref(x)
            got = ours(x.to(DEVICE, torch.float32))
        for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
            torch.testing.assert_close(a.cpu().double(), b, rtol=1e-4, atol=2e-5)


def test_gradients_are_deterministic() -> None:
    tensors, config, named = _problem(torch.float32, 3, OPTION_CASES["everything"], seed=5)
    first, second = (
        _run(TRITON, tensors, config, named, torch.float32, LENGTHS, False, 5) for _ in range(2)
    )
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        assert torch.equal(a, b)


def test_custom_op_matches_eager() -> None:
    """What torch.compile / torch.export run: lstmkit::recurrence on the triton engine."""
    tensors, config, named = _problem(torch.float32, 0, OPTION_CASES["layer_norm"], seed=6)
    eager = _run(TRITON, tensors, config, named, torch.float32, LENGTHS, True, 6)
    op = ops.RECURRENCES["triton"]
    traced = _run(op, tensors, config, named, torch.float32, LENGTHS, True, 6)
    for a, b in zip(eager[0] + eager[1], traced[0] + traced[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_compiled_model_keeps_the_op() -> None:
    model = lstmkit.LSTM(3, 4, backend="triton", device=DEVICE)
    x = torch.randn(3, 2, 3, device=DEVICE)
    want = model(x)[0]
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    got = compiled(x)[0]
    torch.testing.assert_close(got, want)
    got.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_float64_is_refused_by_name() -> None:
    lstm = lstmkit.LSTM(3, 4, backend="triton", dtype=torch.float64, device=DEVICE)
    with pytest.raises(NotImplementedError, match=r"backend 'triton' cannot run this call: "
                       r"it supports float32, bfloat16 and float16, got torch.float64"):
        lstm(torch.randn(2, 1, 3, dtype=torch.float64, device=DEVICE))


@pytest.mark.skipif(CUDA, reason="CPU tensors without the interpreter: only without CUDA")
def test_cpu_without_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET")
    lstm = lstmkit.LSTM(3, 4, backend="triton")
    with pytest.raises(NotImplementedError, match=r"it runs on CUDA tensors \(on CPU tensors "
                       r"only under TRITON_INTERPRET=1\), got a tensor on cpu"):
        lstm(torch.randn(2, 1, 3))


def test_missing_triton_is_refused_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(availability, "installed", lambda: False)
    with pytest.raises(NotImplementedError, match=r"triton is not installed \(pip install "
                       r"'lstmkit\[gpu\]'\)"):
        lstmkit.LSTM(3, 4, backend="triton", device=DEVICE)(torch.randn(2, 1, 3, device=DEVICE))


def test_auto_takes_triton_on_cuda_only() -> None:
    x = torch.zeros(3, 2, 16, device=DEVICE)
    for dtype in (torch.float32, torch.bfloat16):
        chosen = select("auto", x.to(dtype))
        if CUDA:
            assert chosen is BACKENDS["triton"].run
        else:  # the interpreter is for tests: auto keeps the CPU engines
            assert chosen in (BACKENDS["compiled"].run, BACKENDS["fused"].run)
    assert select("auto", x.double()) is not BACKENDS["triton"].run
