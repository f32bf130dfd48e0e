"""torch's parametrizations and pruning on lstmkit's parameters, against nn.LSTM.

Each treatment (weight_norm old and new, spectral_norm old and new,
register_parametrization with a learnable parametrization, orthogonal, prune.*) is
applied with the same seed to an nn.LSTM and an lstmkit.LSTM holding the same random
weights; outputs, states and the gradients of the input, of hx and of every underlying
parameter (weight_g/weight_v, parametrizations.<name>.original, <name>_orig, ...) must
agree in float64 on every backend, also after an optimizer step.

nn.LSTM computes every parametrized weight twice per forward (its _update_flat_weights
reads each weight to see whether it changed, then again to refresh); lstmkit once, as
nn.LSTMCell does. The difference shows only where computing a weight has a side effect:
``parametrizations.spectral_norm`` in training runs a power iteration per computation.
So nn.LSTM runs inside ``parametrize.cached()`` (one computation per forward) and
lstmkit without it; :func:`test_each_weight_is_computed_once_per_call` pins lstmkit's
count.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize, prune

import lstmkit

F64 = torch.float64
BACKENDS = ["reference", "fused", "compiled", "auto"]
TOL = dict(rtol=1e-10, atol=1e-12)
PLAIN = dict(input_size=3, hidden_size=5)
DEEP = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2)
STACK = dict(input_size=3, hidden_size=5, num_layers=2, proj_size=2)  # can step()


class RowScale(nn.Module):
    """A parametrization with a learnable parameter: ``W * s`` row by row."""

    def __init__(self, like: Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(like.shape[0], dtype=like.dtype) + 0.5)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.scale.reshape(-1, *[1] * (weight.dim() - 1))


def _old_weight_norm(module: nn.Module, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of the new one
        nn.utils.weight_norm(module, name)


def _orthogonal(module: nn.Module, name: str) -> None:
    if getattr(module, name).dim() == 2:  # matrices only
        parametrizations.orthogonal(module, name)


def _ln_structured(module: nn.Module, name: str) -> None:
    if getattr(module, name).dim() == 2:  # structured pruning needs matrices
        prune.ln_structured(module, name, amount=0.4, n=2, dim=0)


def _prune_and_remove(module: nn.Module, name: str) -> None:
    prune.l1_unstructured(module, name, amount=0.4)
    prune.remove(module, name)  # the pruned weight becomes a plain parameter again


def _pruned_twice(module: nn.Module, name: str) -> None:
    prune.random_unstructured(module, name, amount=0.3)
    prune.l1_unstructured(module, name, amount=0.3)  # a PruningContainer


PER_NAME: dict[str, Callable[[nn.Module, str], object]] = {
    "weight_norm": lambda m, n: parametrizations.weight_norm(m, n),
    "weight_norm_old": _old_weight_norm,
    "spectral_norm": lambda m, n: parametrizations.spectral_norm(m, n),
    "spectral_norm_old": lambda m, n: nn.utils.spectral_norm(m, n),
    "register_parametrization": lambda m, n: parametrize.register_parametrization(
        m, n, RowScale(getattr(m, n))
    ),
    "orthogonal": _orthogonal,
    "l1_unstructured": lambda m, n: prune.l1_unstructured(m, n, amount=0.4),
    "random_unstructured": lambda m, n: prune.random_unstructured(m, n, amount=0.4),
    "ln_structured": _ln_structured,
    "prune_remove": _prune_and_remove,
    "pruned_twice": _pruned_twice,
}
TREATMENTS = [*PER_NAME, "global_unstructured"]


def treat(module: nn.Module, treatment: str, names: list[str], seed: int = 7) -> None:
    """Apply ``treatment`` to ``names`` of ``module``, drawing from ``seed``."""
    torch.manual_seed(seed)
    if treatment == "global_unstructured":
        pairs = [(module, n) for n in names]
        prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=0.4)
        return
    for name in names:
        PER_NAME[treatment](module, name)


def names_of(config: dict, which: str) -> list[str]:
    """Every weight, the first one (its dtype is the input check's) or the last one."""
    names = nn.LSTM(**config)._flat_weights_names
    return {"all": names, "first": names[:1], "last": names[-1:]}[which]


CASES = [(PLAIN, "all"), (PLAIN, "first"), (DEEP, "all"), (DEEP, "last")]
CASE_IDS = ["plain-all", "plain-first", "deep-all", "deep-last"]


def twins(
    config: dict, treatment: str, names: list[str], backend: str
) -> tuple[nn.LSTM, lstmkit.LSTM]:
    """nn.LSTM and lstmkit.LSTM with the same random weights and the same treatment."""
    theirs = nn.LSTM(**config, dtype=F64)
    ours = lstmkit.LSTM(**config, dtype=F64, backend=backend)
    ours.load_state_dict(theirs.state_dict())
    treat(theirs, treatment, names)
    treat(ours, treatment, names)
    return theirs, ours


def inputs(config: dict, seed: int, T: int = 4, B: int = 3) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Random ``x (T, B, I)`` and ``(h0, c0)``, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    rows = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    P = config.get("proj_size") or config["hidden_size"]
    x = torch.randn(T, B, config["input_size"], dtype=F64, generator=gen)
    h0 = torch.randn(rows, B, P, dtype=F64, generator=gen)
    c0 = torch.randn(rows, B, config["hidden_size"], dtype=F64, generator=gen)
    return x.requires_grad_(), (h0.requires_grad_(), c0.requires_grad_())


def weighted_sum(tensors: list[Tensor], seed: int) -> Tensor:
    """A loss with random weights on every element (so every gradient entry matters)."""
    gen = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, dtype=t.dtype, generator=gen)).sum() for t in tensors)


def run(module: nn.Module, x: Tensor, hx: tuple[Tensor, Tensor], cached: bool) -> list[Tensor]:
    """``[output, h_n, c_n]``, in ``parametrize.cached()`` if asked."""
    if cached:
        with parametrize.cached():
            out, (h, c) = module(x, hx)
    else:
        out, (h, c) = module(x, hx)
    return [out, h, c]


def grads(module: nn.Module, x: Tensor, hx: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """The gradients of the inputs and of every underlying parameter, by name."""
    found = {"x": x.grad, "h0": hx[0].grad, "c0": hx[1].grad}
    found |= {name: p.grad for name, p in module.named_parameters()}
    return found


def assert_same(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name] is not None and b[name] is not None, name
        torch.testing.assert_close(a[name], b[name], **TOL, msg=name)


def forward_backward(
    module: nn.Module, config: dict, seed: int, cached: bool
) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Outputs and gradients of one random call."""
    x, hx = inputs(config, seed)
    results = run(module, x, hx, cached)
    weighted_sum(results, seed).backward()
    return results, grads(module, x, hx)


def sgd_step(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p -= 0.5 * p.grad
            p.grad = None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("config", "which"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("treatment", TREATMENTS)
def test_forward_and_gradients_match_nn_lstm(
    treatment: str, config: dict, which: str, backend: str
) -> None:
    theirs, ours = twins(config, treatment, names_of(config, which), backend)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for seed in (1, 2):  # a second call after an optimizer step: no stale weight
        want, want_grads = forward_backward(theirs, config, seed, cached=True)
        got, got_grads = forward_backward(ours, config, seed, cached=False)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
        assert_same(got_grads, want_grads)
        assert_same(ours.state_dict(), theirs.state_dict())  # masks, u and v buffers too
        sgd_step(theirs)
        sgd_step(ours)


@pytest.mark.parametrize("treatment", ["spectral_norm", "spectral_norm_old", "weight_norm"])
def test_eval_mode_matches_without_cache(treatment: str) -> None:
    theirs, ours = twins(DEEP, treatment, names_of(DEEP, "all"), "auto")
    theirs.eval()
    ours.eval()
    x, hx = inputs(DEEP, 3)
    for a, b in zip(run(ours, x, hx, False), run(theirs, x, hx, False)):
        torch.testing.assert_close(a, b, **TOL)


class Count(nn.Module):
    """An identity parametrization that counts its computations."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, weight: Tensor) -> Tensor:
        self.calls += 1
        return weight


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_weight_is_computed_once_per_call(backend: str) -> None:
    lstm = lstmkit.LSTM(**STACK, dtype=F64, backend=backend)
    cell = lstmkit.LSTMCell(3, 5, dtype=F64, backend=backend)
    counters = {}
    for module, names in (
        (lstm, lstm._flat_weights_names),
        (cell, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]),
    ):
        for name in names:
            counters[module, name] = Count()
            parametrize.register_parametrization(module, name, counters[module, name])
    for counter in counters.values():
        counter.calls = 0  # registering computes each weight once, to check it
    x = torch.randn(4, 2, 3, dtype=F64)
    lstm(x)
    lstm(x, return_states=True)
    lstm.step(x[0])
    cell(x[0])
    cell(x[0])
    assert {key: c.calls for key, c in counters.items()} == {
        key: (3 if key[0] is lstm else 2) for key in counters
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("treatment", TREATMENTS)
def test_step_loop_matches_nn_lstm_called_per_step(treatment: str, backend: str) -> None:
    """``step`` is one call per time step: the oracle calls nn.LSTM on each step (so the
    old API's hooks run as often); the whole loop in ``cached()`` on both sides. A
    second sequence after an optimizer step catches a stale (hook-computed) weight."""
    theirs, ours = twins(STACK, treatment, names_of(STACK, "all"), backend)
    for seed in (5, 6):
        x, hx = inputs(STACK, seed)
        results = {}
        for module, call in ((theirs, lambda x_t, s: theirs(x_t[None], s)), (ours, ours.step)):
            state, ys = hx, []
            with parametrize.cached():
                for x_t in x.unbind(0):
                    y, state = call(x_t, state)
                    ys.append(y.reshape(x.shape[1], -1))
            outs = [torch.stack(ys), *state]
            weighted_sum(outs, seed).backward()
            results[module] = (outs, grads(module, x, hx))
            x.grad = hx[0].grad = hx[1].grad = None
        (got, got_grads), (want, want_grads) = results[ours], results[theirs]
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
        assert_same(got_grads, want_grads)
        sgd_step(theirs)
        sgd_step(ours)


def _effective_weights(module: nn.Module) -> dict[str, Tensor]:
    """``module``'s weights as its forward would compute them (old-API hooks run once)."""
    for hook in module._forward_pre_hooks.values():
        hook(module, ())
    return {name: getattr(module, name) for name in module._flat_weights_names}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("treatment", TREATMENTS)
def test_return_states_gradients_reach_the_underlying_tensors(treatment: str, backend: str) -> None:
    """Oracle: the reference module on the weights that the same treatment computes on
    an nn.LSTM, through torch.func.functional_call, gradients flowing back to them."""
    theirs, ours = twins(DEEP, treatment, names_of(DEEP, "all"), backend)
    plain = lstmkit.LSTM(**DEEP, dtype=F64, backend="reference")
    x, hx = inputs(DEEP, 9)
    results = {}
    with parametrize.cached():
        out, (h, c), states = torch.func.functional_call(
            plain, _effective_weights(theirs), (x, hx), {"return_states": True}
        )
    results[theirs] = [out, h, c, states.h, states.c]
    out, (h, c), states = ours(x, hx, return_states=True)
    results[ours] = [out, h, c, states.h, states.c]
    found = {}
    for module, outs in results.items():
        weighted_sum(outs, 9).backward()
        found[module] = grads(module, x, hx)
        x.grad = hx[0].grad = hx[1].grad = None
    for a, b in zip(results[ours], results[theirs]):
        torch.testing.assert_close(a, b, **TOL)
    assert_same(found[ours], found[theirs])


CELL_NAMES = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("names", [CELL_NAMES, ["weight_ih"], ["bias_hh"]], ids=str)
@pytest.mark.parametrize("treatment", TREATMENTS)
def test_cell_matches_nn_lstm_cell(treatment: str, names: list[str], backend: str) -> None:
    """nn.LSTMCell computes each weight once per call, as lstmkit does: no cache needed."""
    theirs = nn.LSTMCell(3, 5, dtype=F64)
    ours = lstmkit.LSTMCell(3, 5, dtype=F64, backend=backend)
    ours.load_state_dict(theirs.state_dict())
    treat(theirs, treatment, names)
    treat(ours, treatment, names)
    for seed in (1, 2):
        gen = torch.Generator().manual_seed(seed)
        x, h, c = (torch.randn(3, n, dtype=F64, generator=gen).requires_grad_() for n in (3, 5, 5))
        found = []
        for module in (ours, theirs):
            outs = list(module(x, (h, c)))
            weighted_sum(outs, seed).backward()
            found.append((outs, grads(module, x, (h, c))))
            x.grad = h.grad = c.grad = None
        for a, b in zip(found[0][0], found[1][0]):
            torch.testing.assert_close(a, b, **TOL)
        assert_same(found[0][1], found[1][1])
        assert_same(ours.state_dict(), theirs.state_dict())
        sgd_step(theirs)
        sgd_step(ours)


@pytest.mark.parametrize("treatment", TREATMENTS)
def test_state_dict_round_trips(treatment: str) -> None:
    """A treated module's state_dict loads into a treated nn.LSTM and lstmkit.LSTM (drawn
    from another seed), both ways, and they then compute the same."""
    names = names_of(DEEP, "all")
    _, ours = twins(DEEP, treatment, names, "auto")
    x, hx = inputs(DEEP, 4)
    run(ours, x, hx, False)  # moves spectral norm's u, v on
    fresh_theirs, fresh_ours = nn.LSTM(**DEEP, dtype=F64), lstmkit.LSTM(**DEEP, dtype=F64)
    treat(fresh_theirs, treatment, names, seed=99)
    treat(fresh_ours, treatment, names, seed=99)
    fresh_theirs.load_state_dict(ours.state_dict())
    fresh_ours.load_state_dict(fresh_theirs.state_dict())
    assert list(fresh_ours.state_dict()) == list(ours.state_dict())
    assert_same(fresh_ours.state_dict(), ours.state_dict())
    for module in (ours, fresh_ours, fresh_theirs):
        module.eval()
    want = run(fresh_theirs, x, hx, False)
    for module in (ours, fresh_ours):
        for a, b in zip(run(module, x, hx, False), want):
            torch.testing.assert_close(a, b, **TOL)


def test_removing_a_parametrization_restores_the_fast_lookup() -> None:
    lstm = lstmkit.LSTM(**PLAIN, dtype=F64)
    parametrizations.weight_norm(lstm, "weight_hh_l0")
    assert lstm.layer_weights()[0].weight_ih is lstm.weight_ih_l0  # untouched: a parameter
    assert not isinstance(lstm.layer_weights()[0].weight_hh, nn.Parameter)
    parametrize.remove_parametrizations(lstm, "weight_hh_l0")
    (w,) = lstm.layer_weights()
    assert w.weight_hh is lstm._parameters["weight_hh_l0"]
    theirs = nn.LSTM(**PLAIN, dtype=F64)
    theirs.load_state_dict(lstm.state_dict())
    x, hx = inputs(PLAIN, 6)
    for a, b in zip(run(lstm, x, hx, False), run(theirs, x, hx, False)):
        torch.testing.assert_close(a, b, **TOL)
