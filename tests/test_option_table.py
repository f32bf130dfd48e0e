"""The option table (:mod:`lstmkit.options`) is what the modules, the functional API and
the backends derive from: these tests fail if any of them drifts from it, and check the
promises the table makes (checked attributes, backends declaring what they implement)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import lstmkit
from lstmkit import backends, functional, option_calls, options
from lstmkit.backends import Backend
from lstmkit.options import OPTIONS, CellConfig

D64 = torch.float64


@pytest.mark.parametrize("cls", [lstmkit.LSTM, lstmkit.LSTMCell])
def test_constructor_keywords_are_the_table(cls: type) -> None:
    params = inspect.signature(cls).parameters
    keyword_only = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    keyword_only.pop("backend")
    assert keyword_only == {o.name: o.default for o in OPTIONS}
    assert list(keyword_only) == [o.name for o in OPTIONS]


def test_cell_config_fields_are_the_cell_options_of_the_table() -> None:
    fields = [f.name for f in dataclasses.fields(CellConfig)]
    assert fields == [o.name for o in OPTIONS if o.in_cell]
    assert set(fields) == options.CELL_OPTIONS


def test_layer_weights_fields_hold_every_option_parameter() -> None:
    names = [p.name for p in options.PARAMETERS]
    fields = list(functional.LayerWeights._fields)
    assert fields[-len(names) :] == names


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.parameters], ids=lambda o: o.name)
def test_parameters_registered_from_the_table(option: options.Option) -> None:
    lstm = lstmkit.LSTM(3, 5, num_layers=2, bidirectional=True, **{option.name: option.example})
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        for p in option.parameters:
            assert getattr(lstm, p.name + suffix).shape == p.shape(5)
            if p.init is not None:
                torch.testing.assert_close(
                    getattr(lstm, p.name + suffix).detach(), torch.full((p.shape(5)), p.init)
                )
    cell = lstmkit.LSTMCell(3, 5, **{option.name: option.example})
    assert [n for n, _ in cell.named_parameters()][4:] == [p.name for p in option.parameters]


def test_config_encodes_and_decodes() -> None:
    config = CellConfig(peephole=True, gate_clip=1.5, zoneout=True, activation="softsign")
    assert option_calls.decode(config.encode()) == config
    assert config.used() == ("peephole", "gate_clip", "zoneout", "activation")
    assert config.tensor_names() == ("weight_ci", "weight_cf", "weight_co", "zoneout_h",
                                     "zoneout_c")  # fmt: skip


def _out(lstm: lstmkit.LSTM, x: torch.Tensor) -> torch.Tensor:
    return lstm(x)[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [("gate_clip", 0.4), ("cell_clip", 0.3), ("zoneout", (0.3, 0.6)), ("activation", "softsign"),
     ("recurrent_activation", "hardsigmoid")],
)  # fmt: skip
def test_an_option_set_after_construction_acts_as_if_given_to_the_constructor(
    name: str, value: object
) -> None:
    torch.manual_seed(0)
    changed = lstmkit.LSTM(3, 5, dtype=D64).eval()
    setattr(changed, name, value)
    fresh = lstmkit.LSTM(3, 5, dtype=D64, **{name: value}).eval()
    fresh.load_state_dict(changed.state_dict())
    x = torch.randn(6, 2, 3, dtype=D64)
    torch.testing.assert_close(_out(changed, x), _out(fresh, x))
    assert name in changed.options_used() and f"{name}={value!r}" in repr(changed)
    assert not torch.equal(_out(changed, x), _out(lstmkit.LSTM(3, 5, dtype=D64).eval(), x))


def test_setting_an_option_checks_it_and_parameter_options_are_fixed() -> None:
    lstm = lstmkit.LSTM(3, 5, bias=False)
    with pytest.raises(ValueError, match="gate_clip should be a positive finite number"):
        lstm.gate_clip = -1.0
    with pytest.raises(AttributeError, match=r"forget_bias is fixed at construction .*initial"):
        lstm.forget_bias = 1.0
    with pytest.raises(AttributeError, match="peephole is fixed at construction"):
        lstm.peephole = True
    lstm.peephole = False  # unchanged: allowed
    assert lstm.gate_clip is None


def test_functional_takes_the_call_options_by_name_and_checks_them() -> None:
    w = functional.LayerWeights(torch.randn(8, 3), torch.randn(8, 2))
    x, hx = torch.randn(4, 1, 3), (torch.zeros(1, 1, 2),) * 2
    with pytest.raises(TypeError, match=r"cell option\(s\) peephole cannot be given to a call"):
        functional.lstm(x, hx, [w], peephole=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch_first'"):
        functional.lstm(x, hx, [w], batch_first=True)
    functional.lstm(x, hx, [w], gate_clip=1)  # an int clip is a number
    with pytest.raises(TypeError, match="gate_clip should be a positive number or None"):
        functional.lstm(x, hx, [w], gate_clip=True)  # True == 1, but is no clip
    with pytest.raises(ValueError, match="cell_clip should be a positive finite"):
        functional.lstm(x, hx, [w], cell_clip=0.0)
    with pytest.raises(ValueError, match="zoneout should be in"):
        functional.lstm(x, hx, [w], zoneout=[0.1, 1.5])


@pytest.fixture
def toy_backend(monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A backend (the reference loop) that declares every option but zoneout, first in
    ``auto``'s order."""
    toy = Backend(
        "toy", backends.reference.run_recurrence, lambda xg: None,
        options.CELL_OPTIONS - {"zoneout"},
    )  # fmt: skip
    monkeypatch.setitem(backends.BACKENDS, "toy", toy)
    monkeypatch.setattr(backends, "AUTO_ORDER", ("toy", *backends.AUTO_ORDER))
    return toy


def test_select_refuses_a_backend_without_an_option_and_auto_passes_it_over(
    toy_backend: Backend,
) -> None:
    xg = torch.randn(3, 2, 8)
    assert backends.select("toy", xg, ("peephole", "gate_clip")) is toy_backend.run
    assert backends.select("auto", xg, ("peephole",)) is toy_backend.run
    with pytest.raises(NotImplementedError, match=r"'toy' cannot run.*does not implement zoneout"):
        backends.select("toy", xg, ("peephole", "zoneout"))
    assert backends.select("auto", xg, ("zoneout",)) is not toy_backend.run
    lstm = lstmkit.LSTM(3, 2, zoneout=0.2, backend="toy")
    with pytest.raises(NotImplementedError, match="does not implement zoneout"):
        lstm(torch.randn(3, 1, 3))


def test_a_module_pickled_with_options_as_plain_attributes_loads() -> None:
    """Modules pickled before options were properties kept them in ``__dict__`` (zoneout's
    pair also as ``_zoneout``): unpickling turns them into checked options."""
    lstm = lstmkit.LSTM(3, 4, zoneout=(0.2, 0.1), gate_clip=1.0, dtype=D64).eval()
    state = lstm.__getstate__()
    old = {k: v for k, v in state.items() if k not in ("_options", "_call_options")}
    old |= {o.name: lstm._options[o.name] for o in OPTIONS} | {"_zoneout": (0.2, 0.1)}
    loaded = lstmkit.LSTM.__new__(lstmkit.LSTM)
    loaded.__setstate__(old)
    x = torch.randn(5, 2, 3, dtype=D64)
    torch.testing.assert_close(loaded(x)[0], lstm(x)[0], rtol=0, atol=0)
    assert repr(loaded) == repr(lstm) and "zoneout" not in loaded.__dict__


def test_what_a_call_reads_is_rebuilt_on_unpickling_and_follows_every_change() -> None:
    """The call settings a module keeps are never read back from a pickle (another
    version may build them differently) and follow each option set afterwards."""
    import pickle

    from lstmkit.option_calls import call_settings

    lstm = lstmkit.LSTM(3, 4, gate_clip=1.0, dtype=D64)
    lstm.__dict__["_settings"] = (("gate_clip", 9.0),)  # as another version could have
    loaded = pickle.loads(pickle.dumps(lstm))
    assert loaded.settings == call_settings(loaded._call_options)
    assert dict(loaded.settings)["gate_clip"] == 1.0
    loaded.gate_clip = 0.5
    assert dict(loaded.settings)["gate_clip"] == 0.5
    ref = lstmkit.LSTM(3, 4, gate_clip=0.5, dtype=D64, backend="reference")
    ref.load_state_dict(loaded.state_dict())
    x = torch.randn(5, 2, 3, dtype=D64) * 4  # large enough for the clip to act
    torch.testing.assert_close(loaded(x)[0], ref(x)[0])


def test_functional_refuses_part_of_an_options_weights() -> None:
    H = 2
    w = functional.LayerWeights(torch.randn(4 * H, 3), torch.randn(4 * H, H),
                                weight_ci=torch.randn(H), weight_cf=torch.randn(H))  # fmt: skip
    x, hx = torch.randn(4, 1, 3), (torch.zeros(1, 1, H),) * 2
    with pytest.raises(ValueError, match="peephole needs all of weight_ci, weight_cf, weight_co"):
        functional.lstm(x, hx, [w])
    gains = dict(ln_weight_ih=torch.ones(4 * H), ln_weight_hh=torch.ones(4 * H),
                 ln_weight_c=torch.ones(H))  # fmt: skip
    w = functional.LayerWeights(torch.randn(4 * H, 3), torch.randn(4 * H, H), **gains)
    with pytest.raises(ValueError, match=r"layer_norm needs all of .*got only"):
        functional.lstm(x, hx, [w])


def test_compile_traces_a_new_configuration_once() -> None:
    graphs: list[int] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(1)
        return gm.forward

    torch._dynamo.reset()
    lstm = lstmkit.LSTM(3, 4, gate_clip=0.8125, cell_clip=0.6875).eval()  # unseen values
    compiled = torch.compile(lstm, backend=counting)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(compiled(x)[0], lstm(x)[0])
    assert len(graphs) == 1
