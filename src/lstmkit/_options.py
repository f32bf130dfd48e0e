"""The cell options on a module: :class:`lstmkit.LSTM` and :class:`lstmkit.LSTMCell`
keep them as attributes derived from :data:`lstmkit.options.OPTIONS`.

Each option is a property: reading gives the checked value, setting checks the new one
(the same message as the constructor's) and renews what a call reads. An option that
registers parameters (its ``parameters`` in the table) or acts only at initialisation
(``forget_bias``) is fixed at construction: setting it later raises instead of silently
running without its parameters (or showing a bias the weights do not have).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .option_calls import call_settings
from .options import CALL_OPTIONS, OPTIONS, Option, checked, used


class OptionAttributes:
    """Mixin: the cell options as checked attributes (one property per option).

    ``self._options`` holds every option's checked value; ``self._call_options`` the
    ones :func:`lstmkit.functional.lstm` takes, as keywords (renewed on every change).
    """

    _options: dict[str, object]
    _call_options: dict[str, object]

    def _init_options(self, bias: bool, values: dict[str, object]) -> None:
        """Check ``values`` (every option by name) and keep them."""
        self.__dict__["_options"] = checked(values, bias)
        self._renew()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling; a module pickled before options were properties kept them as plain
        attributes (and zoneout's pair as ``_zoneout``): they become ``_options``."""
        super().__setstate__(state)  # type: ignore[misc]
        if "_options" not in self.__dict__:
            old = {o.name: self.__dict__.pop(o.name) for o in OPTIONS if o.name in self.__dict__}
            self.__dict__.pop("_zoneout", None)
            self._init_options(self.__dict__.get("bias", True), old)
        else:  # what a call reads, rebuilt by this version (never a pickled copy)
            self._renew()

    def _renew(self) -> None:
        options = self.__dict__["_options"]
        self.__dict__["_call_options"] = {name: options[name] for name in CALL_OPTIONS}
        # checked once here and kept: every change of an option comes through here
        self.__dict__["_settings"] = call_settings(self._call_options)

    @property
    def settings(self) -> tuple[tuple[str, object], ...]:
        """The checked values of the options a call takes (:data:`.options.CALL_OPTIONS`),
        as :func:`lstmkit.option_calls.call_settings` gives them (hashable)."""
        return self.__dict__["_settings"]

    def options_used(self) -> list[str]:
        """The names of the keyword-only cell options set away from their defaults."""
        return used(self._options)

    def _options_repr(self) -> str:
        """``, name=value`` for every option set away from its default."""
        return "".join(f", {name}={self._options[name]!r}" for name in self.options_used())


def _attribute(option: Option) -> property:
    def get(self: Any) -> object:
        try:
            return self.__dict__["_options"][option.name]
        except KeyError:  # not set up (yet): as for any missing attribute
            raise AttributeError(option.name) from None

    def set_(self: Any, value: object) -> None:
        fixed = option.parameters or not option.in_cell
        if fixed and option.check(value) != self._options[option.name]:
            what = "it acts at initialisation: reset_parameters() applies it"
            if option.parameters:
                what = f"it registers {', '.join(p.name for p in option.parameters)}"
            raise AttributeError(
                f"{option.name} is fixed at construction ({what}); "
                f"build a new module with {option.name}={value!r}"
            )
        bias = getattr(self, "bias", True)
        self.__dict__["_options"] = checked({**self._options, option.name: value}, bias)
        self._renew()

    return property(get, set_, doc=f"{option.help} (default {option.default!r}).")


for _option in OPTIONS:
    setattr(OptionAttributes, _option.name, _attribute(_option))


def register_option_parameters(
    module: nn.Module, hidden_size: int, suffix: str, factory: dict[str, Any]
) -> list[str]:
    """Register the parameters of the options ``module`` has on (``<name><suffix>``,
    uninitialised), in :data:`lstmkit.options.OPTIONS` order; return their names."""
    names = []
    for option in OPTIONS:
        if option.parameters and option.is_on(module._options[option.name]):
            for p in option.parameters:
                t = torch.empty(p.shape(hidden_size), **factory)
                module.register_parameter(p.name + suffix, nn.Parameter(t))
                names.append(p.name + suffix)
    return names
