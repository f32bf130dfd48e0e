"""The checks of the cell options' values (:data:`lstmkit.options.OPTIONS` names one per
option): each returns the value as a module keeps it, or raises ``TypeError`` /
``ValueError`` naming the option, what it expects and what came. No torch."""

from __future__ import annotations

import math
from collections.abc import Callable


def check_bool(name: str, value: object) -> bool:
    """A switch: ``True`` or ``False`` (not 0 or 1)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


def _number(name: str, value: object, expected: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} should be {expected}, got: {type(value).__name__}")
    return float(value)


def check_clip(name: str, value: object) -> float | None:
    """A clip: ``None`` (off) or a positive finite number."""
    if value is None:
        return None
    limit = _number(name, value, "a positive number or None")
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"{name} should be a positive finite number or None, got {value}")
    return limit


def check_probability(name: str, value: object) -> float:
    """A dropout-like probability in ``[0, 1)``."""
    p = _number(name, value, "a number in [0, 1)")
    if not 0 <= p < 1:
        raise ValueError(f"{name} should be in [0, 1), got {value}")
    return p


def check_zoneout(value: object) -> float | tuple[float, float]:
    """``zoneout``: one rate for h and c, or a pair ``(p_h, p_c)``, each in ``[0, 1)``."""
    if not isinstance(value, (tuple, list)):
        return check_probability("zoneout", value)
    if len(value) != 2:
        raise ValueError(f"zoneout should be a rate or a pair (p_h, p_c), got {value!r}")
    return check_probability("zoneout", value[0]), check_probability("zoneout", value[1])


def zoneout_rates(value: object) -> tuple[float, float]:
    """The checked ``zoneout`` value as the pair ``(p_h, p_c)``."""
    rates = check_zoneout(value)
    return rates if isinstance(rates, tuple) else (rates, rates)


def check_choice(name: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    """The check of an option that takes one of ``choices``."""
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    return check


def check_forget_bias(value: object) -> float:
    """``forget_bias``: a finite number."""
    bias = _number("forget_bias", value, "a number")
    if not math.isfinite(bias):
        raise ValueError(f"forget_bias should be finite, got {value}")
    return bias
