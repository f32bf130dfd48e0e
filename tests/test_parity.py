"""lstmkit.LSTM equals torch.nn.LSTM: outputs, states and every gradient, over a grid."""

from __future__ import annotations

import itertools

import pytest
import torch
from oracle import LAYOUTS, Config, assert_matches_torch


def grid() -> list[Config]:
    """Every (layers, direction, projection, layout) combination; the other switches
    rotate through their values so each appears with each layout."""
    configs = []
    combos = itertools.product((1, 2, 3), (False, True), (0, 3), LAYOUTS)
    for n, (layers, bidirectional, proj, layout) in enumerate(combos):
        configs.append(
            Config(
                num_layers=layers,
                bidirectional=bidirectional,
                proj_size=proj,
                layout=layout,
                bias=n % 3 != 2,
                batch_first=n % 2 == 1,
                with_hx=n % 4 != 3,
                steps=(4, 1, 6)[n % 3],
                batch=(3, 1, 2)[n % 3] if layout != "batched" else (3, 1, 0, 2)[n % 4],
            )
        )
    return configs


@pytest.mark.parametrize("cfg", grid(), ids=str)
def test_float64_matches_torch(cfg: Config, backend: str) -> None:
    assert_matches_torch(cfg, torch.float64, backend=backend)


@pytest.mark.parametrize(
    "cfg",
    [
        Config(num_layers=2, bidirectional=True, steps=20, batch=4, input_size=16, hidden_size=32),
        Config(num_layers=2, proj_size=8, steps=20, batch=4, input_size=16, hidden_size=32),
        Config(layout="packed_unsorted", bidirectional=True, steps=12, batch=5, hidden_size=16),
        Config(layout="unbatched", num_layers=3, steps=10, hidden_size=16, batch_first=True),
    ],
    ids=str,
)
def test_float32_matches_torch(cfg: Config, backend: str) -> None:
    assert_matches_torch(cfg, torch.float32, backend=backend)


@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_states_follow_each_sequence(batch_first: bool, backend: str) -> None:
    """h_n is each sequence's own last step; the reverse direction starts there."""
    cfg = Config(bidirectional=True, batch_first=batch_first, layout="packed_unsorted", batch=4)
    assert_matches_torch(cfg, torch.float64, seed=3, backend=backend)
