"""From a call's option values to what a backend receives: :func:`call_settings` checks
the values a call of :func:`lstmkit.functional.lstm` takes, :func:`cell_config` gives
the :class:`~lstmkit.options.CellConfig` of a call (one object per module configuration
and mode), :func:`decode` reads one back from a custom op's argument. No torch.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping

from .option_checks import zoneout_rates
from .options import BY_NAME, CALL_OPTIONS, OPTIONS, CellConfig, checked


@functools.cache
def decode(text: str) -> CellConfig:
    """The :class:`CellConfig` :meth:`CellConfig.encode` wrote."""
    return CellConfig(*ast.literal_eval(text))


#: The configurations and checked settings made so far, by their inputs: plain dicts
#: (``torch.compile`` does not trace through ``functools``' caches; under it, pass
#: ``cache=False``: a lookup that misses while tracing would make it compile twice).
_CONFIGS: dict[tuple, CellConfig] = {}
_SETTINGS: dict[str, tuple[tuple[str, object], ...]] = {}

#: Entries a cache keeps before it starts again (a sweep over many values stays bounded).
_CACHE_SIZE = 1024


def cell_config(
    settings: tuple[tuple[str, object], ...], given: frozenset[str], cache: bool = True
) -> CellConfig:
    """The :class:`CellConfig` of a call: ``settings`` are ``(name, value)`` pairs of the
    options a call takes as values, checked (:func:`call_settings`), ``given`` the names
    of the tensors it passes. One object per module configuration and mode."""
    if not cache:
        return _cell_config(dict(settings), given)
    config = _CONFIGS.get((settings, given))
    if config is None:
        if len(_CONFIGS) >= _CACHE_SIZE:
            _CONFIGS.clear()
        config = _CONFIGS[settings, given] = _cell_config(dict(settings), given)
    return config


def _cell_config(values: dict[str, object], given: frozenset[str]) -> CellConfig:
    fields = {}
    for option in OPTIONS:
        if not option.in_cell:
            continue
        if option.tensors:
            fields[option.name] = all(t in given for t in option.tensors)
        else:
            fields[option.name] = values.get(option.name, option.default)
    return CellConfig(**fields)


def call_settings(
    options: Mapping[str, object], cache: bool = True
) -> tuple[tuple[str, object], ...]:
    """The options a call of :func:`lstmkit.functional.lstm` takes as values
    (:data:`CALL_OPTIONS`), checked, defaults filled in, as hashable ``(name, value)``
    pairs (``zoneout`` as its pair of rates): the ``settings`` of :func:`cell_config`.
    ``TypeError`` names a keyword that is not a call's option."""
    items = tuple(options.items())
    if not cache:
        return _call_settings(items)
    key = repr(items)  # not the items: 1 == 1.0 == True, but only 1.0 is a valid clip
    settings = _SETTINGS.get(key)
    if settings is None:
        if len(_SETTINGS) >= _CACHE_SIZE:
            _SETTINGS.clear()
        settings = _SETTINGS[key] = _call_settings(items)
    return settings


def _call_settings(items: tuple[tuple[str, object], ...]) -> tuple[tuple[str, object], ...]:
    names = {name for name, _ in items}
    unknown = sorted(names - set(BY_NAME))
    if unknown:
        raise TypeError(f"lstm() got an unexpected keyword argument {unknown[0]!r}")
    misplaced = sorted(names - set(CALL_OPTIONS))
    if misplaced:
        raise TypeError(
            f"cell option(s) {', '.join(misplaced)} cannot be given to a call: it takes "
            f"{', '.join(CALL_OPTIONS)} (peepholes and layer norm come with the weights, "
            "forget_bias is an initialisation)"
        )
    values = checked(dict(items))
    values["zoneout"] = zoneout_rates(values["zoneout"])
    return tuple((name, values[name]) for name in CALL_OPTIONS)
