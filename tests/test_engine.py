"""The ``compiled`` engine's promises beyond its numbers (those are in test_backends,
test_variants, test_hypothesis, ...): no Python per time step, prepared weights never
stale, rows split across threads without changing results, and the portable
product route running the same tests."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled
from lstmkit.backends.numba import engine

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")


def _pair(**kwargs: object) -> tuple[lstmkit.LSTM, lstmkit.LSTM]:
    ref = lstmkit.LSTM(5, 6, dtype=torch.float64, backend="reference", **kwargs)
    ours = lstmkit.LSTM(5, 6, dtype=torch.float64, backend="compiled", **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _python_calls(fn) -> int:
    """How many Python functions run during ``fn()`` (the garbage collector held off: a
    collection falling inside ``fn`` would count earlier tests' finalizers)."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event == "call"

    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return count


def _same_python(calls: dict[tuple[int, int], int]) -> None:
    """The counts of :func:`_python_calls` at ``(T, B)`` = (4, B) and (40, B) agree within a
    few calls (one call per step would add 36). They are not always equal: in a full test
    run, one call in a few hundred came and went between runs of the same ``(T, B)``;
    with rows split across threads, waiting for the other thread may take a call or two."""
    for B in (2, 20):
        assert abs(calls[(4, B)] - calls[(40, B)]) <= 4, calls


def test_no_python_per_time_step() -> None:
    """Forward and backward run the same Python at T = 4 and T = 40 (and any B)."""
    lstm = lstmkit.LSTM(5, 6, num_layers=2, proj_size=3, backend="compiled")

    def train_step(T: int, B: int) -> None:
        x = torch.randn(T, B, 5, requires_grad=True)
        lstm(x, lengths=torch.full((B,), T))[0].sum().backward()

    train_step(4, 2)  # compile and fill caches first
    train_step(40, 20)
    calls = {(T, B): _python_calls(lambda T=T, B=B: train_step(T, B)) for T, B in
             ((4, 2), (40, 2), (4, 20), (40, 20))}  # fmt: skip
    _same_python(calls)


def test_prepared_weights_follow_every_change() -> None:
    """In-place updates (also through ``.data``, which bumps no version), load_state_dict
    and optimizer steps between calls: the prepared weights must never be stale."""
    ref, ours = _pair(num_layers=2, proj_size=3)
    x = torch.randn(6, 3, 5, dtype=torch.float64)

    def check() -> None:
        torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)

    check()
    with torch.no_grad():
        for a, b in zip(ref.parameters(), ours.parameters()):
            noise = torch.randn_like(a)
            a.add_(noise)
            b.add_(noise)
    check()
    for a, b in zip(ref.parameters(), ours.parameters()):
        noise = torch.randn_like(a)
        a.data[0] += noise[0]
        b.data[0] += noise[0]
    check()
    new = lstmkit.LSTM(5, 6, num_layers=2, proj_size=3, dtype=torch.float64)
    ref.load_state_dict(new.state_dict())
    ours.load_state_dict(new.state_dict())
    check()
    for model in (ref, ours):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        torch.manual_seed(0)
        model(x)[0].square().sum().backward()
        opt.step()
    check()


def test_rows_split_across_threads_give_the_same_result() -> None:
    """B = 2 * MIN_ROWS_PER_THREAD + 1 runs in two row ranges on two threads and in one
    range on one thread: the same numbers (forward and every gradient)."""
    B = 2 * engine.MIN_ROWS_PER_THREAD + 1
    torch.manual_seed(3)
    lstm = lstmkit.LSTM(5, 16, num_layers=2, bidirectional=True, backend="compiled")
    x = torch.randn(9, B, 5)
    lengths = torch.randint(1, 10, (B,))
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert len(engine.row_ranges(B)) == threads
            xi = x.clone().requires_grad_()
            out, (h, c) = lstm(xi, lengths=lengths)
            grads = torch.autograd.grad((out.sin().sum() + h.sum() + c.sum()),
                                        [xi, *lstm.parameters()])  # fmt: skip
            results.append((out, h, c, *grads))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_python_threads_share_one_module() -> None:
    ref, ours = _pair(num_layers=2)
    inputs = [torch.randn(8, 2 * engine.MIN_ROWS_PER_THREAD, 5, dtype=torch.float64)
              for _ in range(4)]  # fmt: skip
    expected = [ref(x)[0] for x in inputs]
    got: dict[int, torch.Tensor] = {}

    def work(k: int) -> None:
        for _ in range(3):
            got[k] = ours(inputs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, want in enumerate(expected):
        torch.testing.assert_close(got[k], want, rtol=1e-10, atol=1e-12)


def test_route_is_named() -> None:
    assert compiled.route(torch.float64) == "loops"
    forced = os.environ.get("LSTMKIT_GEMM")
    if forced == "loops":
        assert compiled.route() == "panels"
    else:
        measured = "mkl-packed|panels|loops|dots|rows (measured per shape)"
        assert compiled.route() in ("mkl-packed", "panels", measured)


@pytest.mark.skipif(
    compiled.route() == "panels",
    reason="this process already runs the portable route",
)
def test_portable_route_passes_the_backend_tests() -> None:
    """The same backend tests with ``LSTMKIT_GEMM=loops`` (our own kernels, no MKL)."""
    tests = Path(__file__).parent
    env = {**os.environ, "LSTMKIT_GEMM": "loops"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         str(tests / "test_backends.py"), str(tests / "test_engine.py"),
         "-k", "compiled or engine"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_bad_route_setting_is_refused() -> None:
    env = {**os.environ, "LSTMKIT_GEMM": "fast"}
    run = subprocess.run(
        [sys.executable, "-c", "import lstmkit.backends.numba.blas"], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert "LSTMKIT_GEMM must be 'auto', 'mkl' or 'loops', got 'fast'" in run.stderr


def test_every_product_route_agrees_with_numpy() -> None:
    """Each route's product on the shapes the loops give it (a row range of a state
    buffer, a projection), against numpy."""
    import numpy as np

    from lstmkit.backends.numba import blas, loops

    g = torch.Generator().manual_seed(5)
    for rows, k, n in ((1, 64, 256), (5, 24, 96), (16, 40, 8), (8, 3, 70), (6, 1030, 70)):
        a = torch.randn(rows, k, generator=g).numpy()
        w = torch.randn(n, k, generator=g)
        want = a.astype(np.float64) @ w.numpy().T.astype(np.float64)
        for way in blas.available():
            for weight in (w, w.t().contiguous()):
                transpose = weight is w  # x W^T from (n, k), or x W from (k, n)
                c = np.full((rows, n), np.nan, np.float32)
                loops.products(a, blas.prepared(weight, transpose, rows, way), c, way, 1)
                # float32 sums of k terms of size ~1: rounding grows like sqrt(k)
                tol = 1e-6 * max(1.0, k**0.5)
                np.testing.assert_allclose(c, want, rtol=tol, atol=tol, err_msg=f"{way=}")
        for transpose in (True, False):
            way = blas.choose(torch.float32, rows, k, n, alone=True, transpose=transpose)
            assert way in blas.available()
    assert blas.choose(torch.float64, 4, 8, 8, alone=False) == blas.LOOPS



def test_stale_numba_cache_is_dropped_when_any_engine_source_changes(tmp_path: Path) -> None:
    """numba checks a cached kernel against its own file only; the package drops its
    cache when any of its sources changed (else an edit to one file could leave another
    file's cached kernel calling the old code). On a copy of a package directory."""
    from lstmkit.backends.numba import _drop_stale_cache

    (tmp_path / "loops.py").write_text("x = 1\n")
    (tmp_path / "layer.py").write_text("y = 2\n")
    cached = tmp_path / "__pycache__" / "layer.layer_forward-60.py311.nbi"
    _drop_stale_cache(tmp_path)  # stamps the sources
    cached.write_bytes(b"index")
    _drop_stale_cache(tmp_path)  # the same sources: the cache stays
    assert cached.exists()
    (tmp_path / "loops.py").write_text("x = 3\n")  # another file than the cached one
    _drop_stale_cache(tmp_path)
    assert not cached.exists()


@pytest.mark.parametrize("way", ["one-thread", "pipelined", "units"])
def test_no_python_per_time_step_without_autograd(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inference (float32: the projection inside the compiled call) runs the same Python
    at T and 10 T, on one thread or split rows; with small batches' projection pipelined
    on a second thread (whose choice is otherwise timed per shape) too, from T = 40; and
    split by units across threads (:mod:`lstmkit.backends.numba.units`)."""
    from lstmkit.backends.numba import layer

    ahead = way == "pipelined"
    monkeypatch.setattr(engine, "_layer_plans", {})  # plans of the real choices: none
    monkeypatch.setattr(engine, "_ahead_wins", lambda *args: ahead)
    monkeypatch.setattr(engine, "_units_win", lambda *args: way == "units")
    monkeypatch.setattr(layer, "pipelined", lambda T, alone, *args: ahead and alone and T >= 32)
    proj = 0 if way == "units" else 3  # (a projection never runs split by units)
    lstm = lstmkit.LSTM(5, 6, num_layers=2, proj_size=proj, backend="compiled")
    short = 40 if ahead else 4
    shapes = ((short, 2), (10 * short, 2), (short, 20), (10 * short, 20))

    @torch.no_grad()
    def forward(T: int, B: int) -> None:
        lstm(torch.randn(T, B, 5))

    pipelines: list[int] = []
    real = engine._pipeline
    monkeypatch.setattr(engine, "_pipeline", lambda *args: pipelines.append(1) or real(*args))
    for T, B in shapes:  # measure routes and compile first
        forward(T, B)
    assert len(pipelines) == (4 if ahead else 0)  # both layers at B = 2, twice
    calls = {(T // short * 4, B): _python_calls(lambda T=T, B=B: forward(T, B)) for T, B in shapes}
    _same_python(calls)
