"""Dataset builders: MNIST (embedded real subset or a user folder) and the fixed evaluation protocol."""

from __future__ import annotations

from monai_galr.data.mnist import IDX_FILES, NPZ_FILE, NPZ_KEYS, load_mnist_arrays, mnist_splits, read_idx
from monai_galr.data.protocol import ANGLE_OPTIONS, attach_fixed_blocks, attach_fixed_rotations

__all__ = [
    "ANGLE_OPTIONS",
    "IDX_FILES",
    "NPZ_FILE",
    "NPZ_KEYS",
    "attach_fixed_blocks",
    "attach_fixed_rotations",
    "load_mnist_arrays",
    "mnist_splits",
    "read_idx",
]
