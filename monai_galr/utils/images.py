"""Image helpers: foreground / background compositing and the orthogonal mid-slices of a volume."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["composite", "mid_slices"]


def composite(foreground: Any, background: Any, mask: Any) -> Any:
    """``mask * background + (1 - mask) * foreground``, broadcasting over any batch shape.

    Works on numpy arrays and torch tensors; if any argument is a tensor the others are converted to its device
    and dtype and a tensor is returned.

    Args:
        foreground: e.g. ``(B, C, H, W[, D])``: the layer that shows where ``mask == 0``.
        background: same or broadcastable shape: the layer that shows where ``mask == 1``.
        mask: e.g. ``(B, 1, H, W[, D])`` with values in [0, 1].
    """
    tensors = [t for t in (foreground, background, mask) if isinstance(t, torch.Tensor)]
    if tensors:
        ref = next((t for t in tensors if t.is_floating_point()), tensors[0])
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        foreground, background, mask = (
            torch.as_tensor(t, device=ref.device, dtype=dtype) if not isinstance(t, torch.Tensor) else t
            for t in (foreground, background, mask)
        )
    return mask * background + (1 - mask) * foreground


def mid_slices(img: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(H, W)`` -> ``[("", img)]``; ``(H, W, D)`` -> the three orthogonal mid-slices with their names.

    The names say which array axis is cut where and which axes the slice shows (rows x columns), e.g.
    ``"H=8 (W x D)"`` for ``img[8]``.

    Raises:
        ValueError: ``img`` is neither 2D nor 3D.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        return [("", img)]
    if img.ndim != 3:
        raise ValueError(f"expected a 2D (H, W) or 3D (H, W, D) array, got shape {img.shape}.")
    h, w, d = img.shape
    return [
        (f"H={h // 2} (W x D)", img[h // 2]),
        (f"W={w // 2} (H x D)", img[:, w // 2]),
        (f"D={d // 2} (H x W)", img[:, :, d // 2]),
    ]
