"""The forward loop's recurrent route, timed in the loop (:mod:`lstmkit.backends.numba.routes`):
it names a route this process can run, measures each shape once, draws nothing from the
global generator, and every route it can name gives the same layer (to float rounding)."""

from __future__ import annotations

import pytest
import torch

from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")


@pytest.mark.parametrize(
    "rows,k,n", [(1, 8, 32), (5, 4, 40), (300, 6, 24)], ids=["one-row", "projection", "sampled"]
)
def test_route_is_a_candidate_measured_once(rows: int, k: int, n: int) -> None:
    from lstmkit.backends.numba import blas, routes

    routes._measured.clear()
    state = torch.get_rng_state()
    way = routes.forward_route(rows, k, n, True, 50)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator
    assert way in blas.CANDIDATES
    if blas.forced():
        assert not routes._measured
        return
    ((key, times),) = routes._measured.items()
    assert key == (min(rows, blas.MEASURED_ROWS), k, n, 1)
    assert len(times) == len(blas.CANDIDATES)
    assert all(prep >= 0 and step > 0 for prep, step in times)
    routes._measured[key] = [(0.0, 1.0)] * len(times)  # kept: the next call reads these
    routes._measured[key][blas.CANDIDATES.index(blas.DOTS)] = (0.0, 0.5)
    assert routes.forward_route(rows, k, n, True, 50) == blas.DOTS


def test_every_route_gives_the_same_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever route the measurement names, the forward agrees with float64 (each
    route forced in turn through the measurement's answer)."""
    import lstmkit
    from lstmkit.backends.numba import blas, routes

    g = torch.Generator().manual_seed(11)
    lstm = lstmkit.LSTM(7, 12, num_layers=2, proj_size=5, backend="compiled")
    ref = lstmkit.LSTM(7, 12, num_layers=2, proj_size=5, backend="reference").double()
    ref.load_state_dict({k: v.double() for k, v in lstm.state_dict().items()})
    x = torch.randn(9, 20, 7, generator=g)
    with torch.no_grad():
        want = ref(x.double())[0]
        for way in blas.CANDIDATES:
            monkeypatch.setattr(routes, "forward_route", lambda *args, way=way: way)
            got = lstm(x)[0]
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
