"""Foreground / background compositing for localized group actions (e.g. blocked MNIST).

A sample may carry a fixed layer that does *not* rotate: ``"background"`` ``(C, spatial)`` and
``"background_mask"`` ``(1, spatial)`` in {0, 1}.  The model input is ``composite(image, background, mask)`` and the
target ``composite(rotate(image), background, mask)``; the engine applies both, batched, on the device.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import convert_to_dst_type, ensure_tuple_rep

from monai_galr.utils import composite  # re-exported: the engines composite batches with the same function

__all__ = [
    "AttachBackgroundD",
    "AttachBackgroundDict",
    "AttachBackgroundd",
    "attach_background_ids",
    "BlockOverlay",
    "BlockOverlayD",
    "BlockOverlayDict",
    "BlockOverlayd",
    "RandBlockOverlayD",
    "RandBlockOverlayDict",
    "RandBlockOverlayd",
    "composite",
]


def _check_block_size(block_size: int | Sequence[int]) -> tuple[int, ...]:
    """Positive int, or a sequence of 2 or 3 positive ints."""
    bad = ValueError(f"block_size must be a positive int or a sequence of positive ints, got {block_size!r}.")
    if isinstance(block_size, bool):
        raise bad
    if isinstance(block_size, (int, np.integer)):
        if block_size < 1:
            raise bad
        return (int(block_size),)
    if isinstance(block_size, (str, bytes)) or not isinstance(block_size, Sequence) or len(block_size) not in (2, 3):
        raise bad
    if any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in block_size):
        raise bad
    return tuple(int(b) for b in block_size)


def _check_value(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"value must be a number (the block intensity), got {type(value).__name__}.")
    return float(value)


def _require_key(d: Mapping[Hashable, Any], key: Hashable, name: str, hint: str) -> None:
    """Raise ``KeyError`` naming the entry ``name``, the data's keys and ``hint`` when ``key`` is not in ``d``."""
    if key not in d:
        raise KeyError(f"{name} {key!r} is not in the data (keys: {sorted(map(str, d))}); {hint}")


def _block_for(block_size: tuple[int, ...], spatial_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Expand ``block_size`` to the image's dims and check that it fits."""
    d = len(spatial_shape)
    block = block_size * d if len(block_size) == 1 else block_size
    if len(block) != d:
        raise ValueError(f"block_size {block_size} has {len(block)} entries but the image has {d} spatial dims.")
    if any(b > s for b, s in zip(block, spatial_shape)):
        raise ValueError(f"block_size {block} is larger than the image's spatial shape {spatial_shape}.")
    return block


class BlockOverlay(Transform):
    """A constant block at a given corner, as a background layer and its mask.

    Args:
        block_size: the block edge: an int (a square / cube) or one int per spatial axis.
        value: the block intensity (1.0: white in [0, 1] images).

    Raises:
        ValueError: ``block_size`` is not a positive int (or ints); at call time, it is larger than the image or
            the block at ``corner`` does not fit.
        TypeError: ``value`` is not a number.

    Example::

        >>> bg, mask = BlockOverlay(7)(np.zeros((1, 28, 28), np.float32), corner=(3, 10))
        >>> mask[0, 3:10, 10:17].min(), mask.sum()
        (1.0, 49.0)
    """

    def __init__(self, block_size: int | Sequence[int] = 7, value: float = 1.0) -> None:
        self.block_size = _check_block_size(block_size)
        self.value = _check_value(value)

    def __call__(self, img: Any, corner: Sequence[int] | np.ndarray) -> tuple[Any, Any]:
        """Return ``(background (C, spatial), mask (1, spatial))``, float32, of the same array type as ``img``.

        Args:
            img: ``(C, H, W[, D])`` image (only its shape, type and device are used).
            corner: ``(d,)`` integer index of the block's first voxel.
        """
        shape = tuple(img.shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"img must be channel-first (C, H, W) or (C, H, W, D), got shape {shape}.")
        spatial = shape[1:]
        block = _block_for(self.block_size, spatial)
        c = np.asarray(corner.detach().cpu() if isinstance(corner, torch.Tensor) else corner)
        if c.shape != (len(spatial),) or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"corner must be {len(spatial)} ints, got {corner!r}.")
        if any(ci < 0 or ci + b > s for ci, b, s in zip(c, block, spatial)):
            raise ValueError(
                f"a block of size {block} at corner {tuple(int(v) for v in c)} does not fit in the image {spatial}."
            )
        region = tuple(slice(int(ci), int(ci) + b) for ci, b in zip(c, block))
        mask = np.zeros((1, *spatial), dtype=np.float32)
        mask[(slice(None), *region)] = 1.0
        background = np.zeros((shape[0], *spatial), dtype=np.float32)
        background[(slice(None), *region)] = self.value
        if isinstance(img, torch.Tensor):
            background = convert_to_dst_type(background, img, dtype=torch.float32)[0]
            mask = convert_to_dst_type(mask, img, dtype=torch.float32)[0]
        return background, mask


class BlockOverlayd(MapTransform):
    """Dictionary version of :class:`BlockOverlay`: the corner is read from ``data[corner_key]``.

    Args:
        keys: image key(s) the block is made for, default ``"image"``.
        block_size, value: see :class:`BlockOverlay`.
        corner_key: where the ``(d,)`` int corner is read from.
        background_key, mask_key: output keys (one, or one per key in ``keys``).
        allow_missing_keys: skip missing image keys instead of raising ``KeyError``.

    Raises:
        KeyError: ``corner_key`` is missing from the data (use :class:`RandBlockOverlayd` to sample it, or
            :func:`monai_galr.data.attach_fixed_blocks` to fix it).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        block_size: int | Sequence[int] = 7,
        value: float = 1.0,
        corner_key: str = "block_corner",
        background_key: KeysCollection = "background",
        mask_key: KeysCollection = "background_mask",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.overlay = BlockOverlay(block_size, value)
        self.corner_key = corner_key
        self.background_key = ensure_tuple_rep(background_key, len(self.keys))
        self.mask_key = ensure_tuple_rep(mask_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        _require_key(d, self.corner_key, "corner_key", "sample it with RandBlockOverlayd or attach it with "
                     "monai_galr.data.attach_fixed_blocks.")
        for key, bg_key, m_key in self.key_iterator(d, self.background_key, self.mask_key):
            d[bg_key], d[m_key] = self.overlay(d[key], d[self.corner_key])
        return d


class RandBlockOverlayd(Randomizable, BlockOverlayd):
    """Sample a block corner where the block fits, record it under ``corner_key`` and add the block layer.

    The corner is uniform over ``0 <= corner[i] <= spatial_shape[i] - block_size[i]`` (from the first present key's
    shape), drawn with ``self.R`` (seed with ``set_random_state``); then :class:`BlockOverlayd` is applied.

    Args:
        keys, block_size, value, corner_key, background_key, mask_key, allow_missing_keys: see
            :class:`BlockOverlayd` (the same constructor).

    Example::

        >>> t = RandBlockOverlayd(block_size=7).set_random_state(0)
        >>> out = t({"image": np.zeros((1, 28, 28), np.float32)})
        >>> out["block_corner"].shape, out["background"].shape, out["background_mask"].shape
        ((2,), (1, 28, 28), (1, 28, 28))
    """

    corner: np.ndarray | None = None

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        block = _block_for(self.overlay.block_size, tuple(spatial_shape))
        self.corner = np.asarray(
            [self.R.randint(0, s - b + 1) for s, b in zip(spatial_shape, block)], dtype=np.int64
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = next(iter(self.key_iterator(d)), None)
        if first is None:
            return d
        img = d[first]
        if len(img.shape) not in (3, 4):
            raise ValueError(f"{first!r} must be channel-first (C, H, W) or (C, H, W, D), got {tuple(img.shape)}.")
        self.randomize(tuple(img.shape[1:]))
        d[self.corner_key] = self.corner.copy()
        return super().__call__(d)


BlockOverlayD = BlockOverlayDict = BlockOverlayd
RandBlockOverlayD = RandBlockOverlayDict = RandBlockOverlayd


def _as_layers(arr: Any, name: str) -> np.ndarray:
    """``(K, *spatial)`` or ``(K, C, *spatial)`` -> float32 ``(K, C, *spatial)`` (uint8 0..255 scaled to [0, 1])."""
    a = np.asarray(arr.detach().cpu() if isinstance(arr, torch.Tensor) else arr)
    if a.ndim not in (3, 4, 5):
        raise ValueError(f"{name} must be (K, H, W[, D]) or (K, C, H, W[, D]) layers, got shape {a.shape}.")
    a = a.astype(np.float32) / np.float32(255.0) if a.dtype == np.uint8 else a.astype(np.float32)
    return a[:, None] if a.ndim == 3 or (a.ndim == 4 and a.shape[1] > 4) else a


class AttachBackgroundd(MapTransform):
    """Give each item its fixed background layer (one of ``K`` shared volumes) by its index ``data[id_key]``.

    Adds ``background`` ``(C, *spatial)`` and ``background_mask`` ``(1, *spatial)`` (references to the shared
    arrays: no copy per item, so it can sit after a cache) for the engine's compositing
    (``x = composite(image, background, mask)``, ``T_R x = composite(R.image, background, mask)``; the background
    does not rotate).  Usable by any bundle: 2D or 3D layers, any number of them.

    Args:
        backgrounds: ``(K, *spatial)`` or ``(K, C, *spatial)`` intensity layers (uint8 0..255 or float in [0, 1]).
        masks: the matching occupancies ``(K, *spatial)`` / ``(K, 1, *spatial)``; None: ``backgrounds > 0``.
        keys: the image key the backgrounds must match, default ``"image"``.
        id_key: where the item's background index is read (see :func:`attach_background_ids`).
        background_key, mask_key: output keys.
        spatial_size: when given, the backgrounds must have this spatial shape (checked here, naming the entry).

    Raises:
        ValueError: layers of a bad shape, masks that differ from the backgrounds in ``K`` or spatial shape, a
            ``spatial_size`` that the backgrounds do not have; at call time an index outside ``[0, K)`` or a
            background whose spatial shape differs from the item's image (both shapes named).
        KeyError: ``id_key`` missing from the data.
    """

    def __init__(
        self,
        backgrounds: Any,
        masks: Any = None,
        keys: KeysCollection = "image",
        id_key: str = "background_id",
        background_key: str = "background",
        mask_key: str = "background_mask",
        spatial_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(keys)
        self.backgrounds = _as_layers(backgrounds, "backgrounds")
        self.masks = (self.backgrounds.max(1, keepdims=True) > 0).astype(np.float32) if masks is None else _as_layers(
            masks, "masks"
        )
        if self.masks.shape[0] != self.backgrounds.shape[0] or self.masks.shape[2:] != self.backgrounds.shape[2:]:
            raise ValueError(
                f"masks {self.masks.shape} must match backgrounds {self.backgrounds.shape} in number and spatial shape."
            )
        if spatial_size is not None and tuple(int(s) for s in spatial_size) != self.backgrounds.shape[2:]:
            raise ValueError(
                f"the backgrounds have spatial shape {list(self.backgrounds.shape[2:])} but spatial_size is "
                f"{list(spatial_size)}: the background must match the volume."
            )
        self.id_key = id_key
        self.background_key = background_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        _require_key(d, self.id_key, "id_key", "give each item a background index with "
                     "monai_galr.transforms.attach_background_ids.")
        k = int(np.asarray(d[self.id_key]).reshape(-1)[0])
        if not 0 <= k < self.backgrounds.shape[0]:
            raise ValueError(f"{self.id_key} {k} is outside [0, {self.backgrounds.shape[0]}) (the number of backgrounds).")
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape[1:])
            if shape != self.backgrounds.shape[2:]:
                raise ValueError(
                    f"background {list(self.backgrounds.shape[2:])} does not match the volume {list(shape)} of key "
                    f"{key!r} (image shape {tuple(d[key].shape)}): resample the backgrounds to the image size."
                )
        d[self.background_key] = self.backgrounds[k]
        d[self.mask_key] = self.masks[k]
        return d


def attach_background_ids(items: Any, num_backgrounds: int, seed: int = 0, key: str = "background_id") -> Any:
    """Copies of the data dicts with a fixed, seeded background index in ``[0, num_backgrounds)`` under ``key``.

    ``items`` is a list of dicts or a dict of such lists (``{"train": [...], ...}``: each split drawn with its own
    stream, so capping one split does not change the others).
    """
    if isinstance(num_backgrounds, bool) or not isinstance(num_backgrounds, (int, np.integer)) or num_backgrounds < 1:
        raise ValueError(f"num_backgrounds must be a positive int, got {num_backgrounds!r}.")
    if isinstance(items, Mapping) and all(isinstance(v, (list, tuple)) for v in items.values()):
        return {
            split: attach_background_ids(v, num_backgrounds, seed=int(seed) + 1000 * i, key=key)
            for i, (split, v) in enumerate(items.items())
        }
    rng = np.random.default_rng(int(seed))
    ids = rng.integers(0, int(num_backgrounds), size=len(items))
    return [{**dict(d), key: int(k)} for d, k in zip(items, ids)]


AttachBackgroundD = AttachBackgroundDict = AttachBackgroundd
