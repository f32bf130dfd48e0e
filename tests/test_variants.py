"""Layer normalisation and custom activations, and every option composed with every
core feature on every backend.

The equations are written out here from their sources (haste's LayerNormLSTM for layer
norm; the activations' textbook definitions), with a hand-written layer norm, not by
calling lstmkit's cell. Then a grid runs each fast backend against the reference with
random options on: layers, directions, projection, layouts, lengths, packing, states.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from lstmkit.backends import BACKENDS
from lstmkit.backends.numba import engine

D64 = torch.float64

GATE = {
    "sigmoid": lambda z: 1 / (1 + torch.exp(-z)),
    "hardsigmoid": lambda z: torch.clamp(z / 6 + 0.5, 0, 1),
}
CELL = {
    "tanh": lambda z: (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)),
    "relu": lambda z: torch.where(z > 0, z, torch.zeros_like(z)),
    "softsign": lambda z: z / (1 + z.abs()),
}


def ln(z, gain, bias=None):
    """Layer normalisation over the last axis, biased variance, eps 1e-5."""
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    out = (z - mean) / torch.sqrt(var + 1e-5) * gain
    return out if bias is None else out + bias


def by_equations(lstm, x, h, c):
    """One layer, forward direction, (T, B, I) -> (T, B, H): haste's LayerNormLSTM
    (``gates = LN(W x) g_ih + LN(R h) g_hh + b``, ``h = o act(LN(c) g_c + beta_c)``,
    the raw ``c`` carried) when ``layer_norm``, else the plain LSTM; with its activations."""
    W, R = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    H = lstm.hidden_size
    sig, act = GATE[lstm.recurrent_activation], CELL[lstm.activation]
    ys = []
    for x_t in x:
        wx, rh = x_t @ W.T, h @ R.T
        if lstm.layer_norm:
            z = ln(wx, lstm.ln_weight_ih_l0) + ln(rh, lstm.ln_weight_hh_l0) + b
        else:
            z = wx + rh + b
        i, f = sig(z[:, :H]), sig(z[:, H : 2 * H])
        g, o = act(z[:, 2 * H : 3 * H]), sig(z[:, 3 * H :])
        c = f * c + i * g
        c_out = ln(c, lstm.ln_weight_c_l0, lstm.ln_bias_c_l0) if lstm.layer_norm else c
        h = o * act(c_out)
        ys.append(h)
    return torch.stack(ys), h, c


VARIANTS = [
    dict(layer_norm=True),
    dict(activation="relu"),
    dict(activation="softsign", recurrent_activation="hardsigmoid"),
    dict(layer_norm=True, activation="softsign", recurrent_activation="hardsigmoid"),
]


def _perturb_(module: torch.nn.Module, scale: float = 1.0, seed: int = 0) -> None:
    """Random weights everywhere, layer-norm gains and biases included (their init is
    1 and 0, which would hide a swapped or ignored parameter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.startswith("ln_weight"):
                p.copy_(1 + 0.3 * noise)
            else:
                p.copy_(scale * noise / p.shape[-1] ** 0.5 if p.dim() > 1 else 0.5 * noise)


@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_variants_follow_their_equations(options: dict, backend: str) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 4, dtype=D64, backend=backend, **options)
    _perturb_(lstm, scale=3.0)
    x = torch.randn(6, 2, 3, dtype=D64) * 2
    h0, c0 = torch.randn(1, 2, 4, dtype=D64), torch.randn(1, 2, 4, dtype=D64)
    out, (h, c) = lstm(x, (h0, c0))
    ys, h_ref, c_ref = by_equations(lstm, x, h0[0], c0[0])
    torch.testing.assert_close(out, ys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[0], h_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c[0], c_ref, rtol=1e-12, atol=1e-12)


def test_activations_are_torchs() -> None:
    """The named activations are torch's functions (hardsigmoid with slope 1/6)."""
    from lstmkit.activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS

    z = torch.linspace(-8, 8, 1001, dtype=D64)
    torch.testing.assert_close(GATE_ACTIVATIONS["hardsigmoid"].fn(z), F.hardsigmoid(z))
    torch.testing.assert_close(CELL_ACTIVATIONS["softsign"].fn(z), F.softsign(z))
    for table in (GATE_ACTIVATIONS, CELL_ACTIVATIONS):
        for act in table.values():  # the slope from the output equals autograd's
            x = z.clone().requires_grad_()
            (slope,) = torch.autograd.grad(act.fn(x).sum(), x)
            torch.testing.assert_close(act.slope(act.fn(z)), slope, msg=act.name)


# Every option, random and deterministic, alone and together.
OPTIONS = [
    dict(layer_norm=True),
    dict(activation="relu", recurrent_activation="hardsigmoid"),
    dict(peephole=True, gate_clip=0.9, cell_clip=0.7),
    dict(recurrent_dropout=0.3, zoneout=(0.2, 0.3)),
    dict(
        layer_norm=True,
        peephole=True,
        gate_clip=1.5,
        cell_clip=1.2,
        activation="softsign",
        recurrent_dropout=0.25,
        zoneout=0.15,
    ),
]
FEATURES = [
    dict(num_layers=2, bidirectional=True, proj_size=2, layout="lengths"),
    dict(num_layers=2, bidirectional=False, proj_size=0, layout="packed"),
    dict(num_layers=1, bidirectional=True, proj_size=0, layout="batch_first"),
    dict(num_layers=1, bidirectional=False, proj_size=3, layout="unbatched"),
    dict(num_layers=3, bidirectional=False, proj_size=0, layout="batched"),
]


def _run(model, x, features, seed):
    """Output, final state, every step's state; in the caller's layout."""
    lens = torch.tensor([5, 2, 4, 1, 3, 5, 5, 2, 1, 4, 3, 3]).repeat(2)[: x.shape[1]]
    torch.manual_seed(seed)  # the same dropout / zoneout masks for every backend
    layout = features["layout"]
    if layout == "lengths":
        return model(x, lengths=lens, return_states=True)
    if layout == "packed":
        packed = pack_padded_sequence(x, lens, enforce_sorted=False)
        out, state, st = model(packed, return_states=True)
        return pad_packed_sequence(out)[0], state, st
    if layout == "batch_first":
        return model(x.transpose(0, 1), return_states=True)
    if layout == "unbatched":
        return model(x[:, 0], return_states=True)
    return model(x, return_states=True)


@pytest.mark.parametrize("fast", ["fused", "compiled"])
@pytest.mark.parametrize(
    "options, features", list(itertools.product(OPTIONS, FEATURES)), ids=str
)  # fmt: skip
def test_every_option_with_every_feature(options: dict, features: dict, fast: str) -> None:
    """Outputs, states and every gradient of a fast backend equal the reference's, in
    training (random options live, the same masks drawn) and eval."""
    kwargs = {k: v for k, v in features.items() if k != "layout"}
    batch_first = features["layout"] == "batch_first"
    ref = lstmkit.LSTM(3, 5, batch_first=batch_first, backend="reference", dtype=D64,
                       **kwargs, **options)  # fmt: skip
    _perturb_(ref, scale=2.0, seed=len(str(features)))
    model = lstmkit.LSTM(3, 5, batch_first=batch_first, backend=fast, dtype=D64,
                         **kwargs, **options)  # fmt: skip
    model.load_state_dict(ref.state_dict())
    # two layers: enough rows for compiled to split them across two threads (when torch has 2+)
    batch = 2 * engine.MIN_ROWS_PER_THREAD if kwargs["num_layers"] == 2 else 4
    x = torch.randn(5, batch, 3, dtype=D64, requires_grad=True)
    for training in (True, False):
        results = []
        for m in (ref, model):
            m.train(training)
            out, (h, c), st = _run(m, x, features, seed=7)
            w = torch.Generator().manual_seed(3)
            loss = sum((t * torch.randn(t.shape, generator=w, dtype=D64)).sum()
                       for t in (out, h, c, st.h, st.c))  # fmt: skip
            results.append([out, h, c, *torch.autograd.grad(loss, [x, *m.parameters()])])
        for k, (a, b) in enumerate(zip(*results, strict=True)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{training=} #{k}")


@pytest.mark.parametrize("batch", [4, 2 * engine.MIN_ROWS_PER_THREAD])  # one or two row ranges
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_inference_without_grad_equals_the_reference(options: dict, batch: int, backend: str):
    """Without autograd the fast backends keep one step of buffers (a different path from
    training): outputs and states equal the reference's, in training and eval mode."""
    ref = lstmkit.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=D64, backend="reference",
                       **options)  # fmt: skip
    _perturb_(ref, scale=2.0)
    model = lstmkit.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=D64, backend=backend,
                         **options)  # fmt: skip
    model.load_state_dict(ref.state_dict())
    x = torch.randn(6, batch, 3, dtype=D64)
    lens = torch.arange(batch) % 6 + 1
    for training in (True, False):
        outs = []
        for m in (ref, model):
            torch.manual_seed(4)
            with torch.no_grad():
                out, (h, c), st = m.train(training)(x, lengths=lens, return_states=True)
            outs.append((out, h, c, st.c))
        for a, b in zip(*outs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [*VARIANTS, dict(layer_norm=True, peephole=True)], ids=str)
def test_gradcheck_and_gradgradcheck(options: dict, backend: str) -> None:
    torch.manual_seed(1)
    lstm = lstmkit.LSTM(2, 3, bidirectional=True, proj_size=2, dtype=D64, backend=backend,
                        **options)  # fmt: skip
    _perturb_(lstm, scale=2.0)
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, *params):
        out, (_, c), st = functional_call(lstm, dict(zip(names, params)), (x,),
                                          {"return_states": True})  # fmt: skip
        return out, c, st.c

    x = torch.randn(3, 2, 2, dtype=D64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in lstm.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))
    if options == VARIANTS[3]:  # double backward runs the reference's graph: once is enough
        # fast mode compares the double backward with finite differences along random
        # directions (v^T J u): any error in the second derivatives shows, at a tenth of
        # the cost of building the whole Jacobian
        assert torch.autograd.gradgradcheck(f, (x, *params), fast_mode=True)


def test_layer_norm_parameters_and_init() -> None:
    torch.manual_seed(5)
    ours = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, layer_norm=True)
    torch.manual_seed(5)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():  # same seed, same plain weights
        torch.testing.assert_close(mine[name], p, rtol=0, atol=0)
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        assert mine[f"ln_weight_ih{suffix}"].shape == (16,)
        assert mine[f"ln_weight_hh{suffix}"].shape == (16,)
        assert torch.equal(mine[f"ln_weight_c{suffix}"], torch.ones(4))
        assert torch.equal(mine[f"ln_bias_c{suffix}"], torch.zeros(4))
    cell = lstmkit.LSTMCell(3, 4, layer_norm=True)
    assert {n for n, _ in cell.named_parameters()} >= {
        "ln_weight_ih", "ln_weight_hh", "ln_weight_c", "ln_bias_c"}  # fmt: skip
    assert "layer_norm=True" in repr(ours)
    assert "activation='relu'" in repr(lstmkit.LSTM(3, 4, activation="relu"))


def test_cell_and_step_with_every_option_equal_the_layer(backend: str) -> None:
    """LSTMCell and LSTM.step, looped, equal the layer: eval (zoneout by its rate) and
    training with the same recurrent-dropout mask and no zoneout."""
    opts = dict(layer_norm=True, peephole=True, gate_clip=1.1, cell_clip=0.9,
                activation="softsign", recurrent_activation="hardsigmoid")  # fmt: skip
    for extra, training in ((dict(zoneout=(0.2, 0.4)), False), (dict(recurrent_dropout=0.3), True)):
        lstm = lstmkit.LSTM(3, 4, dtype=D64, **opts, **extra).train(training)
        _perturb_(lstm, scale=2.0)
        cell = lstmkit.LSTMCell(3, 4, dtype=D64, backend=backend, **opts, **extra)
        cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
        cell.train(training)
        x = torch.randn(5, 2, 3, dtype=D64) * 2
        mask = cell.recurrent_dropout_mask(2)
        assert (mask is None) == (not training)
        out, (h_n, c_n) = lstmkit.functional.lstm(
            x, (torch.zeros(1, 2, 4, dtype=D64),) * 2, lstm.layer_weights(),
            recurrent_masks=[mask], zoneout=lstm.zoneout, training=training,
            **{k: getattr(lstm, k) for k in ("gate_clip", "cell_clip", "activation",
                                             "recurrent_activation")},
        )  # fmt: skip
        h = c = torch.zeros(2, 4, dtype=D64)
        state, steps = None, []
        for x_t in x:
            h, c = cell(x_t, (h, c), recurrent_mask=mask)
            y, state = lstm.step(x_t, state, recurrent_masks=None if mask is None else [mask])
            steps.append(y)
        torch.testing.assert_close(h, h_n[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c, c_n[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.stack(steps), out, rtol=1e-12, atol=1e-12)


def test_cell_zoneout_and_recurrent_dropout_in_training() -> None:
    """The cell's zoneout keeps units of the previous state (fresh masks per call); its
    recurrent mask must come from the caller, checked."""
    torch.manual_seed(6)
    cell = lstmkit.LSTMCell(3, 400, zoneout=(0.3, 0.6), dtype=D64)
    plain = lstmkit.LSTMCell(3, 400, dtype=D64)
    plain.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3, dtype=D64)
    h, c = torch.randn(2, 400, dtype=D64), torch.randn(2, 400, dtype=D64)
    h_new, c_new = plain(x, (h, c))
    h1, c1 = cell(x, (h, c))
    kept_h, kept_c = h1 == h, c1 == c
    assert bool((kept_h | (h1 == h_new)).all())  # each unit: its old or its new value
    assert bool((kept_c | (c1 == c_new)).all())
    assert abs(kept_h.double().mean().item() - 0.3) < 0.05
    assert abs(kept_c.double().mean().item() - 0.6) < 0.05
    assert not torch.equal(kept_h, (cell(x, (h, c))[0] == h))  # fresh per call
    dropping = lstmkit.LSTMCell(3, 4, recurrent_dropout=0.5)
    with pytest.raises(ValueError, match="recurrent_dropout_mask"):
        dropping(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"recurrent_mask should have shape \(2, 4\)"):
        dropping(torch.randn(2, 3), recurrent_mask=torch.ones(3, 4))
    assert dropping.eval()(torch.randn(2, 3))[0].shape == (2, 4)


def test_step_with_recurrent_dropout_needs_masks() -> None:
    lstm = lstmkit.LSTM(3, 5, num_layers=2, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="recurrent_dropout_masks"):
        lstm.step(torch.randn(2, 3))
    masks = lstm.recurrent_dropout_masks(2)
    assert len(masks) == 2 and masks[0].shape == (2, 5)
    with pytest.raises(ValueError, match=r"2 tensors of shape \(2, 5\), got \[\(2, 5\)\]"):
        lstm.step(torch.randn(2, 3), recurrent_masks=masks[:1])
    assert lstm.step(torch.randn(2, 3), recurrent_masks=masks)[0].shape == (2, 5)
    assert lstm.eval().recurrent_dropout_masks(2) is None


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(activation="gelu"), ValueError, "activation must be one of"),
        (dict(recurrent_activation="tanh"), ValueError, "recurrent_activation must be one of"),
        (dict(activation=None), ValueError, "activation must be one of"),
        (dict(layer_norm=1), TypeError, "layer_norm should be of type bool"),
    ],
)
def test_variant_errors(kwargs: dict, error: type, message: str) -> None:
    for module in (lstmkit.LSTM, lstmkit.LSTMCell):
        with pytest.raises(error, match=message):
            module(3, 4, **kwargs)


def test_auto_runs_every_option_on_the_compiled_backend() -> None:
    from lstmkit.backends import select
    from lstmkit.options import CELL_OPTIONS

    x = torch.zeros(3, 2, 16)
    for used in [(name,) for name in sorted(CELL_OPTIONS)] + [tuple(sorted(CELL_OPTIONS))]:
        assert select("auto", x, used) is BACKENDS["compiled"].run, used


@pytest.mark.parametrize("batch", [4, 2 * engine.MIN_ROWS_PER_THREAD])  # one or two row ranges
@pytest.mark.parametrize("backend", ["fused", "compiled"])
def test_float32_with_every_option_against_float64(batch: int, backend: str) -> None:
    """float32 kernels (the rational tanh, float64-summed layer-norm statistics) stay
    within float32 accuracy of the float64 reference: outputs and every gradient.

    The reference runs on the same float32-rounded weights and inputs. The clips and
    hardsigmoid are piecewise linear: where float32 rounding moves a pre-activation across
    a kink the two gradients differ by O(1) there, so the draw comes from a fixed seed
    (seeds 0-7 at batch 16 cross one about half the time, on every backend)."""
    torch.manual_seed(0)
    opts = dict(layer_norm=True, peephole=True, gate_clip=2.0, cell_clip=1.5,
                activation="softsign", recurrent_activation="hardsigmoid", zoneout=0.1)  # fmt: skip
    ref = lstmkit.LSTM(8, 16, num_layers=2, bidirectional=True, proj_size=6, dtype=D64,
                       backend="reference", **opts).eval()  # fmt: skip
    _perturb_(ref, scale=2.0)
    ours = lstmkit.LSTM(8, 16, num_layers=2, bidirectional=True, proj_size=6, backend=backend,
                        **opts).eval()  # fmt: skip
    ref.load_state_dict({k: v.float().double() for k, v in ref.state_dict().items()})
    ours.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    x = torch.randn(20, batch, 8, dtype=D64).float().double()
    results = []
    for model, dtype in ((ref, D64), (ours, torch.float32)):
        inp = x.to(dtype).requires_grad_()
        out, (h, c) = model(inp, lengths=torch.arange(batch) % 20 + 1)
        w = torch.Generator().manual_seed(3)
        loss = sum((t * torch.randn(t.shape, generator=w, dtype=D64).to(dtype)).sum()
                   for t in (out, h, c))  # fmt: skip
        grads = torch.autograd.grad(loss, [inp, *model.parameters()])
        results.append([t.double() for t in (out, h, c, *grads)])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        scale = a.abs().max().item() + 1
        torch.testing.assert_close(b, a, rtol=0, atol=2e-5 * scale, msg=f"#{k}")


def test_layer_norm_refused_where_it_has_no_equivalent() -> None:
    lstm = lstmkit.LSTM(3, 4, layer_norm=True)
    with pytest.raises(ValueError, match="nn\\.LSTM has no layer_norm"):
        lstm.to_torch()


@st.composite
def option_sets(draw: st.DrawFn) -> dict:
    """Any combination of the cell options, with random values."""
    clip = st.one_of(st.none(), st.floats(0.3, 3.0))
    rate = st.sampled_from([0.0, 0.2, 0.5])
    return dict(
        layer_norm=draw(st.booleans()), peephole=draw(st.booleans()), gate_clip=draw(clip),
        cell_clip=draw(clip), recurrent_dropout=draw(rate),
        zoneout=draw(st.one_of(rate, st.tuples(rate, rate))),
        activation=draw(st.sampled_from(["tanh", "relu", "softsign"])),
        recurrent_activation=draw(st.sampled_from(["sigmoid", "hardsigmoid"])),
    )  # fmt: skip


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=option_sets(), hidden=st.integers(1, 5), layers=st.integers(1, 2),
    bidirectional=st.booleans(), batch=st.integers(1, 10), steps=st.integers(1, 5),
    proj=st.booleans(), lengths=st.booleans(), training=st.booleans(),
    fast=st.sampled_from(["fused", "compiled"]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_random_option_sets_match_the_reference(
    options, hidden, layers, bidirectional, batch, steps, proj, lengths, training, fast, seed
) -> None:
    """Random options on random configurations (both compiled regimes: batch up to 10):
    a fast backend's outputs, states and every gradient equal the reference's."""
    torch.manual_seed(seed)
    kwargs = dict(num_layers=layers, bidirectional=bidirectional, dtype=D64,
                  proj_size=hidden - 1 if proj and hidden > 1 else 0, **options)  # fmt: skip
    ref = lstmkit.LSTM(3, hidden, backend="reference", **kwargs).train(training)
    _perturb_(ref, scale=2.0, seed=seed)
    model = lstmkit.LSTM(3, hidden, backend=fast, **kwargs).train(training)
    model.load_state_dict(ref.state_dict())
    x = torch.randn(steps, batch, 3, dtype=D64, requires_grad=True)
    lens = torch.randint(1, steps + 1, (batch,)) if lengths else None
    results = []
    for m in (ref, model):
        torch.manual_seed(seed + 1)  # the same masks
        out, (h, c), st_ = m(x, lengths=lens, return_states=True)
        w = torch.Generator().manual_seed(seed)
        loss = sum((t * torch.randn(t.shape, generator=w, dtype=D64)).sum()
                   for t in (out, h, c, st_.c))  # fmt: skip
        results.append([out, h, c, st_.c, *torch.autograd.grad(loss, [x, *m.parameters()])])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"#{k}")
