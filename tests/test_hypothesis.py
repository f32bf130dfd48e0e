"""Random configurations, drawn by hypothesis: lstmkit equals nn.LSTM on every one."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import GENERIC_BACKENDS, LAYOUTS, Config, assert_matches_torch


@st.composite
def configs(draw: st.DrawFn) -> Config:
    hidden = draw(st.integers(1, 6))
    layout = draw(st.sampled_from(LAYOUTS))
    return Config(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)),
        layout=layout,
        batch=draw(st.integers(0 if layout == "batched" else 1, 4)),
        steps=draw(st.integers(1, 6)),
        with_hx=draw(st.booleans()),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), seed=st.integers(0, 2**16), backend=st.sampled_from(GENERIC_BACKENDS))
def test_random_configurations_match_torch(cfg: Config, seed: int, backend: str) -> None:
    assert_matches_torch(cfg, torch.float64, seed=seed, backend=backend)
