"""The fixed evaluation protocol: seeded per-item rotations and block positions, the same for every run.

The evaluation of every variant uses the *same* group element (and, for blocked MNIST, the same block position)
for each test image, so numbers compare across models and runs.  These helpers attach them to the data dicts once (keys
``"rotation"`` and ``"block_corner"``); the deterministic :class:`~monai_galr.transforms.BlockOverlayd` then reads
the block position, and the engine reads the rotation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from monai_galr.groups import angle_to_matrix, random_rotation, snap_exact
from monai_galr.utils import check_items, check_seed, check_spatial_dims

__all__ = ["ANGLE_OPTIONS", "attach_fixed_blocks", "attach_fixed_rotations"]

ANGLE_OPTIONS = ("uniform", "c4")


def attach_fixed_rotations(
    items: Sequence[Mapping], spatial_dims: int, seed: int, angles: str = "uniform"
) -> list[dict]:
    """Attach a seeded group element ``"rotation"`` to each item.

    Rotations are drawn from ``np.random.default_rng(seed)`` in item order (one vectorized draw), so the same
    items and seed always receive the same rotations.

    Args:
        items: data dicts (not modified).
        spatial_dims: 2 for SO(2), 3 for SO(3).
        seed: a non-negative int.
        angles: ``"uniform"`` (SO(2): angle uniform in [0, 2*pi); SO(3): Haar, a normalized Gaussian quaternion)
            or ``"c4"`` (SO(2) only: multiples of 90 degrees, entries exactly 0 / +-1).

    Returns:
        a new list of shallow copies, each with ``"rotation"``: ``float32 (d, d)`` numpy array.

    Raises:
        TypeError: ``items`` is not a list of dicts.
        ValueError: bad ``spatial_dims``, ``seed`` or ``angles`` (or ``"c4"`` with ``spatial_dims=3``).
    """
    items = check_items(items, "items")
    d = check_spatial_dims(spatial_dims)
    rng = np.random.default_rng(check_seed(seed))
    if angles not in ANGLE_OPTIONS:
        raise ValueError(f"angles must be one of {ANGLE_OPTIONS}, got {angles!r}.")
    if angles == "c4" and d != 2:
        raise ValueError(f"angles='c4' (multiples of 90 degrees) is defined for spatial_dims=2 only, got {d}.")
    n = len(items)
    if angles == "c4":
        mats = angle_to_matrix(torch.as_tensor(rng.integers(0, 4, n) * (math.pi / 2), dtype=torch.float64)).numpy()
    else:
        mats = random_rotation(n, d, generator=rng, dtype=torch.float64).numpy()
    mats = snap_exact(mats).astype(np.float32)
    return [{**item, "rotation": mats[i].copy()} for i, item in enumerate(items)]


def attach_fixed_blocks(
    items: Sequence[Mapping], spatial_shape: Sequence[int], block_size: int | Sequence[int], seed: int
) -> list[dict]:
    """Attach a seeded block position ``"block_corner"`` to each item.

    Args:
        items: data dicts (not modified).
        spatial_shape: the image grid, e.g. ``(28, 28)``.
        block_size: the block edge (an int for a cube, or one int per axis), at most the image size.
        seed: a non-negative int; corners are drawn from ``np.random.default_rng(seed)`` in item order.

    Returns:
        a new list of shallow copies, each with ``"block_corner"``: ``int64 (d,)``, uniform over the positions
        where the whole block fits (``0 <= corner[i] <= spatial_shape[i] - block_size[i]``).

    Raises:
        TypeError: ``items`` is not a list of dicts.
        ValueError: a bad ``spatial_shape``, ``block_size`` (not positive, or larger than the image) or ``seed``.
    """
    items = check_items(items, "items")
    if isinstance(spatial_shape, (str, bytes)) or not isinstance(spatial_shape, Sequence):
        raise ValueError(f"spatial_shape must be a sequence of 2 or 3 positive ints, got {spatial_shape!r}.")
    shape = tuple(spatial_shape)
    if len(shape) not in (2, 3) or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape
    ):
        raise ValueError(f"spatial_shape must be a sequence of 2 or 3 positive ints, got {spatial_shape!r}.")
    d = len(shape)
    block = (block_size,) * d if isinstance(block_size, (int, np.integer)) else block_size
    if (
        isinstance(block_size, bool)
        or not isinstance(block, Sequence)
        or len(block) != d
        or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in block)
    ):
        raise ValueError(f"block_size must be a positive int or {d} positive ints, got {block_size!r}.")
    if any(b > s for b, s in zip(block, shape)):
        raise ValueError(f"block_size {tuple(block)} is larger than the image {shape}.")
    rng = np.random.default_rng(check_seed(seed))
    high = np.asarray([s - b + 1 for s, b in zip(shape, block)], dtype=np.int64)
    corners = rng.integers(0, high, size=(len(items), d), dtype=np.int64)
    return [{**item, "block_corner": corners[i].copy()} for i, item in enumerate(items)]
