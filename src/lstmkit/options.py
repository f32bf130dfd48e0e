"""The cell options of :class:`lstmkit.LSTM` and :class:`lstmkit.LSTMCell`, declared once.

Each :class:`Option` below says everything lstmkit needs to know about one keyword-only
option: its default, its check and message, the parameters it registers (shapes and
initial values), the tensors a backend receives for it, its ONNX mapping and its help
line. Everything else derives from :data:`OPTIONS`: the modules' attributes, checks and
``repr``, their ``state_dict`` names, :func:`lstmkit.functional.lstm`'s keywords, what a
backend receives (:class:`CellConfig` and named tensors), ``lstmkit train``'s flags,
``lstmkit bench --options``' rows and the ONNX export's refusals. The cell mathematics
is written once per language (torch ops in :mod:`lstmkit.cell`, the numba rows, the
Triton kernels, the ONNX ``Scan`` body), reading the configuration and the tensors by name.

A backend receives, per layer-direction and call:

* a :class:`CellConfig`: hashable, the same object for every call of one module
  configuration; an option whose work needs tensors reads as ``True`` exactly when
  its tensors are given;
* a mapping of named tensors (:data:`TENSORS`), shapes with ``T`` time, ``B`` batch,
  ``H`` hidden units, ``P`` width of ``h``: ``weight_ci``, ``weight_cf``, ``weight_co``
  ``(H,)``; ``recurrent_mask`` ``(B, P)``; ``zoneout_h`` ``(T, B, P)`` and
  ``zoneout_c`` ``(T, B, H)``; ``ln_weight_hh`` ``(4H,)``, ``ln_weight_c``,
  ``ln_bias_c`` ``(H,)``.

This module imports no torch (``lstmkit train --help`` reads it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .option_checks import (
    check_bool,
    check_choice,
    check_clip,
    check_forget_bias,
    check_probability,
    check_zoneout,
)

#: ``activation=``: the keys of :data:`lstmkit.activations.CELL_ACTIVATIONS`.
CELL_ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "softsign")

#: ``recurrent_activation=``: the keys of :data:`lstmkit.activations.GATE_ACTIVATIONS`.
GATE_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "hardsigmoid")


@dataclass(frozen=True)
class Parameter:
    """A parameter an option registers per layer-direction: ``<name>_l{k}`` on
    :class:`lstmkit.LSTM`, ``<name>`` on :class:`lstmkit.LSTMCell`; ``gates`` says whether
    it has ``4H`` entries (else ``H``); ``init`` is its constant initial value, ``None``
    for U(-1/sqrt(H), 1/sqrt(H)) like torch's weights."""

    name: str
    gates: bool = False
    init: float | None = None

    def shape(self, hidden_size: int) -> tuple[int]:
        return (4 * hidden_size if self.gates else hidden_size,)


@dataclass(frozen=True)
class Option:
    """One keyword-only cell option.

    ``check(value)`` returns the value as the module keeps it, or raises ``TypeError``
    / ``ValueError`` naming the option. ``parameters`` are registered when it is on
    (then it can only be set at construction). ``tensors`` are what a backend receives
    for it by name; ``trainable`` says they are parameters (they get gradients), else
    they are data drawn per call (masks). ``per_step`` tensors have a leading time axis.
    ``in_cell=False`` options act at initialisation only (a backend never sees them).
    ``onnx`` names the ONNX ``LSTM`` operator's attribute or input that expresses it;
    ``None`` where a ``Scan`` of the cell is needed (only when the option is on).
    ``example`` is a value that turns it on (``lstmkit bench --options``, ``lstmkit
    train --compare``, tests); ``metavar``/``choices`` shape its command-line flag.
    """

    name: str
    default: object
    check: Callable[[object], object]
    help: str
    example: object
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    tensors: tuple[str, ...] = ()
    trainable: bool = False
    per_step: bool = False
    in_cell: bool = True
    needs_bias: bool = False
    onnx: str | None = None

    @property
    def flag(self) -> str:
        """Its command-line flag: ``--gate-clip`` for ``gate_clip``."""
        return "--" + self.name.replace("_", "-")

    @property
    def variant(self) -> str:
        """Its name as a row or variant (an activation by the value it switches to)."""
        return self.example if isinstance(self.example, str) else self.name

    def is_on(self, value: object) -> bool:
        """Whether ``value`` turns the option on (a pair: either of its values)."""
        if isinstance(value, (tuple, list)):
            return any(v != self.default for v in value)
        return value != self.default


#: Every cell option, in the order of the modules' keywords and ``repr``.
OPTIONS: tuple[Option, ...] = (
    Option(
        "peephole", False, functools.partial(check_bool, "peephole"),
        "peephole connections from c to the gates i, f, o", True,
        parameters=tuple(Parameter(f"weight_c{g}") for g in "ifo"),
        tensors=("weight_ci", "weight_cf", "weight_co"), trainable=True, onnx="P",
    ),
    Option(
        "gate_clip", None, functools.partial(check_clip, "gate_clip"),
        "clamp every gate pre-activation to [-X, X]", 3.0, metavar="X", onnx="clip",
    ),
    Option(
        "cell_clip", None, functools.partial(check_clip, "cell_clip"),
        "clamp the cell state c to [-X, X] after each update", 10.0, metavar="X",
    ),
    Option(
        "recurrent_dropout", 0.0, functools.partial(check_probability, "recurrent_dropout"),
        "variational dropout on h before W_hh, in [0, 1) (training)", 0.25, metavar="P",
        tensors=("recurrent_mask",), onnx="training only",
    ),
    Option(
        "zoneout", 0.0, check_zoneout,
        "zoneout rate for h and c, in [0, 1) (training; eval mixes by the rate)", 0.1,
        metavar="P", tensors=("zoneout_h", "zoneout_c"), per_step=True,
    ),
    Option(
        "layer_norm", False, functools.partial(check_bool, "layer_norm"),
        "layer normalisation of the gates and the cell state", True,
        parameters=(
            Parameter("ln_weight_ih", gates=True, init=1.0),
            Parameter("ln_weight_hh", gates=True, init=1.0),
            Parameter("ln_weight_c", init=1.0),
            Parameter("ln_bias_c", init=0.0),
        ),
        tensors=("ln_weight_hh", "ln_weight_c", "ln_bias_c"), trainable=True,
    ),
    Option(
        "activation", "tanh", check_choice("activation", CELL_ACTIVATIONS),
        "activation of g and of c before o", "softsign", choices=CELL_ACTIVATIONS,
        onnx="activations",
    ),
    Option(
        "recurrent_activation", "sigmoid", check_choice("recurrent_activation", GATE_ACTIVATIONS),
        "activation of the gates i, f, o", "hardsigmoid", choices=GATE_ACTIVATIONS,
        onnx="activations",
    ),
    Option(
        "forget_bias", 0.0, check_forget_bias,
        "added to the forget gate's input bias at initialisation", 1.0, metavar="B",
        in_cell=False, needs_bias=True, onnx="B",
    ),
)  # fmt: skip

#: The options by name.
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

#: The names of the options a backend implements or refuses (all but initialisation ones).
CELL_OPTIONS: frozenset[str] = frozenset(o.name for o in OPTIONS if o.in_cell)

#: The option each backend tensor belongs to, by tensor name, in :data:`OPTIONS` order.
TENSORS: dict[str, Option] = {t: o for o in OPTIONS for t in o.tensors}

#: The tensors that are parameters (a backend returns their gradients).
TRAINABLE: frozenset[str] = frozenset(t for t, o in TENSORS.items() if o.trainable)

#: The tensors with a leading time axis (step ``t`` uses ``tensor[t]``).
PER_STEP: frozenset[str] = frozenset(t for t, o in TENSORS.items() if o.per_step)

#: Every parameter an option may register.
PARAMETERS: tuple[Parameter, ...] = tuple(p for o in OPTIONS for p in o.parameters)

#: The options a call of the recurrence takes as values (the rest come with the weights).
CALL_OPTIONS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.in_cell and not o.parameters)


def defaults() -> dict[str, object]:
    """Every option at its default (all off)."""
    return {o.name: o.default for o in OPTIONS}


def checked(values: dict[str, object], bias: bool = True) -> dict[str, object]:
    """``values`` (option names to values; missing ones take their defaults) after each
    option's check, in :data:`OPTIONS` order; ``TypeError`` for an unknown name."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise TypeError(f"unknown cell option(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    out = {}
    for option in OPTIONS:
        value = option.check(values.get(option.name, option.default))
        if option.needs_bias and option.is_on(value) and bias is not True:
            raise ValueError(
                f"{option.name}={value} needs bias=True: it is added to bias_ih's forget slice"
            )
        out[option.name] = value
    return out


def used(values: dict[str, object]) -> list[str]:
    """The names of the options in ``values`` set away from their defaults."""
    return [o.name for o in OPTIONS if o.is_on(values.get(o.name, o.default))]


@dataclass(frozen=True)
class CellConfig:
    """What a backend's time loop is asked to do, besides its tensors: hashable, built
    once per module configuration (:func:`lstmkit.option_calls.cell_config`). An option
    with tensors (``peephole``, ``recurrent_dropout``, ``zoneout``, ``layer_norm``) is
    ``True`` exactly when its tensors are given (``recurrent_dropout`` is then off in eval
    mode); the others hold their values. A test checks these fields are the table's cell options."""

    peephole: bool = False
    gate_clip: float | None = None
    cell_clip: float | None = None
    recurrent_dropout: bool = False
    zoneout: bool = False
    layer_norm: bool = False
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    def __post_init__(self) -> None:  # what every call asks, computed once per object
        on = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default]
        used = tuple(on)
        names = tuple(t for t, option in TENSORS.items() if getattr(self, option.name))
        object.__setattr__(self, "_derived", (used, names))

    def used(self) -> tuple[str, ...]:
        """The names of the options that are on (what a backend must implement)."""
        return self._derived[0]

    def tensor_names(self) -> tuple[str, ...]:
        """The names of the tensors a backend receives with this configuration, in
        :data:`TENSORS` order (how autograd Functions and custom ops flatten them)."""
        return self._derived[1]

    def encode(self) -> str:
        """This configuration as a string (a custom op's argument), read back by
        :func:`lstmkit.option_calls.decode`."""
        return repr(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


PLAIN = CellConfig()

#: No option tensors (the default of every backend and of the cell).
NO_TENSORS: Mapping[str, Any] = MappingProxyType({})


def beyond_onnx_operator(used_options: Iterable[str]) -> list[str]:
    """The options among ``used_options`` (names of options that are on) the ONNX
    ``LSTM`` operator cannot express: a ``Scan`` of the cell exports them."""
    return [name for name in used_options if BY_NAME[name].onnx is None]
