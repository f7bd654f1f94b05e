"""SO(2) conversions: angle (radians) <-> ``(B, 2, 2)`` matrix acting on array-index coordinates (H, W)."""

from __future__ import annotations

import torch

__all__ = ["angle_to_matrix", "matrix_to_angle"]


def angle_to_matrix(angle: torch.Tensor) -> torch.Tensor:
    """``(B,)`` angles in radians -> ``(B, 2, 2)`` rotations ``[[cos, -sin], [sin, cos]]``.

    A positive angle turns the first array axis (H) towards the second (W), the direction of ``torch.rot90``
    with ``k > 0`` over ``dims=(-2, -1)``.
    """
    angle = torch.as_tensor(angle)
    if not angle.is_floating_point():
        angle = angle.to(torch.get_default_dtype())
    if angle.ndim != 1:
        raise ValueError(f"angle must have shape (B,), got {tuple(angle.shape)}.")
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def matrix_to_angle(r: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 2)`` rotations -> ``(B,)`` angles in [0, 2*pi)."""
    if r.ndim != 3 or r.shape[-2:] != (2, 2):
        raise ValueError(f"rotation must have shape (B, 2, 2), got {tuple(r.shape)}.")
    return torch.remainder(torch.atan2(r[:, 1, 0], r[:, 0, 0]), 2 * torch.pi)
