"""Argument checks that raise a ``ValueError`` / ``TypeError`` naming the parameter, what was expected and what came."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_fraction",
    "check_items",
    "check_max",
    "check_positive_int",
    "check_seed",
    "check_shape",
    "check_spatial_dims",
]

_INTS = (int, np.integer)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, _INTS)


def check_spatial_dims(spatial_dims: int, name: str = "spatial_dims") -> int:
    """``spatial_dims`` as an int if it is 2 or 3 (SO(2) / SO(3)).

    Raises:
        ValueError: anything else (a bool included).
    """
    if not _is_int(spatial_dims) or spatial_dims not in (2, 3):
        raise ValueError(f"{name} must be 2 or 3, got {spatial_dims!r}.")
    return int(spatial_dims)


def check_fraction(value: float, name: str) -> float:
    """``value`` as a float in [0, 1).

    Raises:
        TypeError: not a number. ValueError: outside [0, 1).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__}.")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")
    return float(value)


def check_max(value: int | None, name: str) -> int | None:
    """``value`` (a cap on a number of items) as None or a non-negative int.

    Raises:
        ValueError: a negative number, a bool or a non-int.
    """
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be None or a non-negative int, got {value!r}.")
    return int(value)


def check_positive_int(value: int, name: str) -> int:
    """``value`` if it is a positive int (a bool is not).

    Raises:
        ValueError: anything else.
    """
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` as a non-negative int.

    Raises:
        ValueError: anything else.
    """
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}.")
    return int(seed)


def check_shape(shape: Sequence[int] | None, ndim: int, name: str) -> tuple[int, ...] | None:
    """``shape`` as None or a tuple of ``ndim`` positive ints.

    Raises:
        ValueError: another length, a non-sequence, or an entry that is not a positive int.
    """
    if shape is None:
        return None
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) != ndim
        or any(not _is_int(s) or s < 1 for s in shape)
    ):
        raise ValueError(f"{name} must be None or {ndim} positive ints, got {shape!r}.")
    return tuple(int(s) for s in shape)


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; the strings ``"true"`` / ``"false"`` (any case) are what a bundle command line passes.

    Raises:
        TypeError: anything else.
    """
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (true or false), got {type(value).__name__} {value!r}.")
    return value


def check_items(items: Any, name: str, require: Sequence[str] = (), min_items: int = 0) -> list[Mapping]:
    """Check that ``items`` is a list of at least ``min_items`` data dicts, each holding the ``require`` keys.

    Raises:
        TypeError: ``items`` is not a list of dicts.
        ValueError: too few items, or an item lacks a required key (the message names ``name`` and the key).
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a list of data dicts, got {type(items).__name__}.")
    items = list(items)
    if len(items) < min_items:
        raise ValueError(f"{name} must hold at least {min_items} item(s), got {len(items)}.")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"{name} must be a list of data dicts, but item {i} is a {type(item).__name__}.")
        for key in require:
            if key not in item:
                raise ValueError(
                    f"{name} item {i} has no {key!r} key (keys: {sorted(map(str, item))}); the study needs "
                    f"{list(require)} in every item."
                )
    return items
