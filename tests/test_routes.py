"""The time loops' recurrent routes, timed in the loops (:mod:`lstmkit.backends.numba.routes`):
each names a route this process can run, measures each shape once, draws nothing from the
global generator, and every route either can name gives the same layer and gradients."""

from __future__ import annotations

import pytest
import torch

from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")


@pytest.mark.parametrize("loop", ["forward", "backward"])
@pytest.mark.parametrize(
    "rows,H,P", [(1, 8, 8), (5, 10, 4), (300, 6, 6)], ids=["one-row", "projection", "sampled"]
)
def test_route_is_a_candidate_measured_once(loop: str, rows: int, H: int, P: int) -> None:
    from lstmkit.backends.numba import blas, routes

    routes._measured.clear()
    state = torch.get_rng_state()
    shape = (P, 4 * H) if loop == "forward" else (4 * H, P)  # the product's (K, N)
    route = getattr(routes, f"{loop}_route")
    way = route(rows, *shape, True, 50)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator
    assert way in blas.CANDIDATES
    if blas.forced():
        assert not routes._measured
        return
    ((key, times),) = routes._measured.items()
    assert key == (loop, min(rows, blas.MEASURED_ROWS), H, P, 1)
    ways = blas.candidates(min(rows, blas.MEASURED_ROWS))
    assert len(times) == len(ways) and (blas.ROWS in ways) == (rows < blas.ROW_BY_ROW)
    assert all(prep >= 0 and step > 0 for prep, step in times)
    routes._measured[key] = [(0.0, 1.0)] * len(times)  # kept: the next call reads these
    routes._measured[key][ways.index(blas.DOTS)] = (0.0, 0.5)
    assert route(rows, *shape, True, 50) == blas.DOTS


def test_every_route_gives_the_same_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever routes the measurements name, the outputs and every gradient agree with
    float64 (each route forced in turn through the measurements' answers)."""
    import lstmkit
    from lstmkit.backends.numba import blas, engine, routes

    g = torch.Generator().manual_seed(11)
    lstm = lstmkit.LSTM(7, 12, num_layers=2, proj_size=5, backend="compiled")
    ref = lstmkit.LSTM(7, 12, num_layers=2, proj_size=5, backend="reference").double()
    ref.load_state_dict({k: v.double() for k, v in lstm.state_dict().items()})
    x = torch.randn(9, 20, 7, generator=g)
    x64 = x.double().requires_grad_()
    out = ref(x64)[0]
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    want = (out, *torch.autograd.grad((out * weights).sum(), [x64, *ref.parameters()]))
    for way in blas.CANDIDATES:
        for loop in ("forward", "backward"):
            monkeypatch.setattr(routes, f"{loop}_route", lambda *args, way=way: way)
        monkeypatch.setattr(engine, "_layer_plans", {})  # (a plan keeps the routes it took)
        with torch.no_grad():
            torch.testing.assert_close(lstm(x)[0].double(), out.detach(), rtol=1e-5, atol=1e-5)
        x32 = x.clone().requires_grad_()
        got = lstm(x32)[0]
        grads = torch.autograd.grad((got * weights.float()).sum(), [x32, *lstm.parameters()])
        for a, b in zip((got, *grads), want):
            torch.testing.assert_close(a.double(), b.detach(), rtol=1e-4, atol=1e-4)
