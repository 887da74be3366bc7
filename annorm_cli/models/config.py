"""Architecture configs from untrusted cards: every field checked for its type and a sane size
before any layer is built (a card asking for enormous widths must not allocate gigabytes)."""
from __future__ import annotations

import dataclasses
import math
import typing

from annorm_cli.errors import BadInputError

MAX_INT = 4096          # widths, entities, classes, sides: larger is not a model annorm makes
MAX_ITEMS = 64          # entries of a tuple field


def _check(name: str, value, kind) -> object:
    """value converted to `kind` (int, float, str, bool, tuple[T, ...], Optional[T]) or BadInputError."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:                                      # Optional[T]
        if value is None:
            return None
        return _check(name, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) > MAX_ITEMS:
            raise BadInputError(f"The model config's '{name}' must be a list of at most {MAX_ITEMS} items, got {value!r:.60}.")
        item = args[0]
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise BadInputError(f"The model config's '{name}' must have {len(args)} items, got {len(value)}.")
        return tuple(_check(name, v, item) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise BadInputError(f"The model config's '{name}' must be true or false, got {value!r:.60}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            raise BadInputError(f"The model config's '{name}' must be an integer from 0 to {MAX_INT}, got {value!r:.60}.")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BadInputError(f"The model config's '{name}' must be a finite number, got {value!r:.60}.")
        return float(value)
    if kind is str:
        if not isinstance(value, str) or len(value) > 200:
            raise BadInputError(f"The model config's '{name}' must be a short string, got {value!r:.60}.")
        return value
    raise BadInputError(f"The model config's '{name}' has a type annorm cannot check.")


def config_from_dict(cls, data) -> object:
    """cls(**data) for a config dataclass, after checking every field (unknown fields refused)."""
    if not isinstance(data, dict):
        raise BadInputError(f"The model config must be a JSON object, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise BadInputError(f"The model config has unknown fields {sorted(unknown)}; upgrade annorm.")
    return cls(**{name: _check(name, value, hints[name]) for name, value in data.items()})
