"""The keyword-only cell options shared by lstmkit.LSTM and lstmkit.LSTMCell: their
defaults, their checks, and which ones a module uses."""

from __future__ import annotations

from torch import nn

from ._checks import check_bool, check_clip, check_forget_bias, check_probability, check_zoneout
from .activations import check_activations

#: The keyword-only options of LSTM and LSTMCell and their defaults (all off).
OPTION_DEFAULTS: dict[str, object] = {
    "peephole": False, "gate_clip": None, "cell_clip": None, "recurrent_dropout": 0.0,
    "zoneout": 0.0, "layer_norm": False, "activation": "tanh",
    "recurrent_activation": "sigmoid", "forget_bias": 0.0,
}  # fmt: skip


def set_options(module: nn.Module, bias: bool, **options: object) -> None:
    """Check the cell options (:data:`OPTION_DEFAULTS` by name) and set them on
    ``module``; ``zoneout`` is also kept as the checked pair ``_zoneout`` (p_h, p_c)."""
    check_bool("peephole", options["peephole"])
    check_bool("layer_norm", options["layer_norm"])
    module.peephole = options["peephole"]
    module.layer_norm = options["layer_norm"]
    module.activation, module.recurrent_activation = check_activations(
        options["activation"], options["recurrent_activation"]
    )
    module.gate_clip = check_clip("gate_clip", options["gate_clip"])
    module.cell_clip = check_clip("cell_clip", options["cell_clip"])
    module.recurrent_dropout = check_probability("recurrent_dropout", options["recurrent_dropout"])
    module._zoneout = check_zoneout(options["zoneout"])
    module.zoneout = options["zoneout"]
    module.forget_bias = check_forget_bias(options["forget_bias"], bias)


def options_used(module: nn.Module) -> list[str]:
    """The names of ``module``'s cell options set away from their defaults."""
    return [name for name, default in OPTION_DEFAULTS.items() if getattr(module, name) != default]
