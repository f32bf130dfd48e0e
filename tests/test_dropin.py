"""What a drop-in user of nn.LSTM / nn.LSTMCell reaches for besides forward: every public
attribute, nn.LSTM's helpers with its results and errors, and whole-model pickles under
``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_sequence

import lstmkit

CONFIGS = [
    dict(input_size=3, hidden_size=5),
    dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2),
    dict(input_size=3, hidden_size=5, batch_first=True),
]

#: Public names of nn.LSTM / nn.LSTMCell that lstmkit does not have, with the reason.
#: (Empty today: a name added here needs a comment saying why it is left out.)
MISSING_OK: dict[str, str] = {}


def public(module: nn.Module) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (nn.LSTM(3, 5, proj_size=2), lstmkit.LSTM(3, 5, proj_size=2)),
        (nn.LSTMCell(3, 5), lstmkit.LSTMCell(3, 5)),
        (nn.LSTMCell(3, 5, bias=False), lstmkit.LSTMCell(3, 5, bias=False)),
    ],
    ids=["LSTM", "LSTMCell", "LSTMCell-nobias"],
)
def test_every_public_name_of_torch_is_there(theirs: nn.Module, ours: nn.Module) -> None:
    missing = public(theirs) - public(ours) - set(MISSING_OK)
    assert not missing, f"{type(ours).__name__} lacks {sorted(missing)}"
    for name in public(theirs) - set(MISSING_OK):
        if not callable(getattr(theirs, name)):  # plain values agree too
            want, got = getattr(theirs, name), getattr(ours, name)
            if isinstance(want, (Tensor, list, dict, nn.Module)):
                continue  # parameters (random), all_weights, _modules...: checked elsewhere
            assert got == want, name


def test_mode_is_lstm() -> None:
    assert lstmkit.LSTM(3, 5).mode == nn.LSTM(3, 5).mode == "LSTM"


def _args(config: dict, packed: bool) -> tuple[Tensor, Tensor | None]:
    """A random input (padded, or a PackedSequence's data) and its batch_sizes."""
    if packed:
        seq = pack_sequence([torch.randn(n, config["input_size"]) for n in (4, 3, 1)])
        return seq.data, seq.batch_sizes
    shape = (2, 4) if config.get("batch_first") else (4, 2)
    return torch.randn(*shape, config["input_size"]), None


def _outcome(call: object) -> object:
    """What a call returned or raised (type and message), to compare both modules'."""
    try:
        return ("returned", call())
    except Exception as error:  # the exception is the result compared
        return ("raised", type(error), str(error))


def _same(a: object, b: object) -> None:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    else:
        assert a == b


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("packed", [False, True])
def test_helpers_behave_as_nn_lstm(config: dict, packed: bool) -> None:
    theirs, ours = nn.LSTM(**config), lstmkit.LSTM(**config)
    x, batch_sizes = _args(config, packed)
    rows = theirs.num_layers * (2 if theirs.bidirectional else 1)
    B = int(batch_sizes[0]) if packed else x.shape[0 if config.get("batch_first") else 1]
    P, H = config.get("proj_size") or 5, 5
    good = (torch.randn(rows, B, P), torch.randn(rows, B, H))
    perm = torch.randperm(B)
    cases = [
        lambda m: m.check_input(x, batch_sizes),
        lambda m: m.check_input(x.double(), batch_sizes),  # dtype
        lambda m: m.check_input(x[..., :2], batch_sizes),  # feature size
        lambda m: m.check_input(x[None], batch_sizes),  # number of dimensions
        lambda m: m.get_expected_hidden_size(x, batch_sizes),
        lambda m: m.get_expected_cell_size(x, batch_sizes),
        lambda m: m.check_hidden_size(good[0], (rows, B, P)),
        lambda m: m.check_hidden_size(good[1], (rows, B, P)),
        lambda m: m.check_hidden_size(good[1], (rows, B, P), "h {} vs {}"),
        lambda m: m.check_forward_args(x, good, batch_sizes),
        lambda m: m.check_forward_args(x, good[::-1], batch_sizes),
        lambda m: m.check_forward_args(x, (good[0], good[0][:, :1]), batch_sizes),
        lambda m: m.permute_hidden(good, None),
        lambda m: m.permute_hidden(good, perm),
    ]
    for i, case in enumerate(cases):
        want = _outcome(lambda case=case: case(theirs))
        got = _outcome(lambda case=case: case(ours))
        assert got[0] == want[0], (i, got, want)
        _same(got, want)


def test_check_input_allows_another_dtype_under_autocast() -> None:
    x = torch.randn(4, 2, 3, dtype=torch.bfloat16)
    for module in (nn.LSTM(3, 5), lstmkit.LSTM(3, 5)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert module.check_input(x, None) is None


def test_check_input_reads_a_parametrized_weight() -> None:
    lstm = lstmkit.LSTM(3, 5, dtype=torch.float64)
    nn.utils.parametrizations.weight_norm(lstm, "weight_ih_l0")
    with pytest.raises(ValueError, match=r"RNN input dtype \(torch.float32\) does not match"):
        lstm.check_input(torch.randn(4, 2, 3), None)


def _reload(module: nn.Module, safe: list[object]) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals(safe):
        return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "module",
    [
        lstmkit.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2),
        lstmkit.LSTM(3, 5, layer_norm=True, zoneout=0.1, peephole=True, backend="reference"),
        lstmkit.LSTMCell(3, 5, activation="softsign", gate_clip=3.0),
    ],
    ids=["LSTM", "LSTM-options", "LSTMCell"],
)
def test_whole_model_loads_with_weights_only_and_the_class_allowed(module: nn.Module) -> None:
    """As for nn.LSTM: the class itself is the one global to allow, nothing else."""
    with pytest.raises(
        Exception, match=re.escape(f"Unsupported global: GLOBAL {type(module).__module__}")
    ):
        _reload(module, [])
    loaded = _reload(module, [type(module)])
    assert type(loaded) is type(module) and repr(loaded) == repr(module)
    module.eval()
    loaded.eval()
    x = torch.randn(4, 2, 3) if isinstance(module, lstmkit.LSTM) else torch.randn(2, 3)
    _same(loaded(x), module(x))


def test_whole_model_with_old_weight_norm_needs_its_hook_class_too() -> None:
    """torch's hook-based treatments pickle their hook objects: nn.LSTM and lstmkit need
    the same extra globals (here WeightNorm)."""
    import warnings

    from torch.nn.utils.weight_norm import WeightNorm

    lstm = lstmkit.LSTM(3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(lstm, "weight_hh_l0")
    with pytest.raises(Exception, match=r"GLOBAL torch\.nn\.utils\.weight_norm\.WeightNorm"):
        _reload(lstm, [lstmkit.LSTM])
    loaded = _reload(lstm, [lstmkit.LSTM, WeightNorm])
    x = torch.randn(4, 2, 3)
    _same(loaded(x), lstm(x))
