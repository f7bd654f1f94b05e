"""SO(3) conversions between ``(B, 3, 3)`` matrices and quaternions, axis-angle vectors and Euler angles.

Matrices act on array-index coordinates (H, W, D).  Quaternions are ``(w, x, y, z)`` with ``w`` the scalar part.
Euler angles are intrinsic rotations about the axes named by ``convention`` (default ``"ZYX"``: first about the
third axis, then the second, then the first), so ``euler_to_matrix(a) = R_Z(a0) @ R_Y(a1) @ R_X(a2)``.
"""

from __future__ import annotations

import torch

__all__ = [
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "euler_to_matrix",
    "matrix_to_euler",
]

_AXES = {"X": 0, "Y": 1, "Z": 2}


def _check_last(x: torch.Tensor, n: int, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.ndim != 2 or x.shape[-1] != n:
        raise ValueError(f"{name} must have shape (B, {n}), got {tuple(x.shape)}.")
    return x


def _check_matrix(r: torch.Tensor) -> None:
    if r.ndim != 3 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (B, 3, 3), got {tuple(r.shape)}.")


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` quaternions ``(w, x, y, z)`` (normalized here) -> ``(B, 3, 3)`` rotations."""
    q = _check_last(q, 4, "quaternion")
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotations -> ``(B, 4)`` unit quaternions with ``w >= 0``."""
    _check_matrix(r)
    m = r
    t = torch.stack(
        [
            1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2],
            1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
        ],
        -1,
    )
    # four candidate solutions; use the numerically best one per element (largest diagonal term)
    cand = torch.stack(
        [
            torch.stack([t[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], t[:, 1], m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1], t[:, 2], m[:, 2, 1] + m[:, 1, 2]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] + m[:, 1, 2], t[:, 3]], -1),
        ],
        1,
    )
    best = t.argmax(-1)
    q = cand[torch.arange(r.shape[0], device=r.device), best]
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    return torch.where(q[:, :1] < 0, -q, q)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` axis-angle vectors (direction = axis, norm = angle in radians) -> ``(B, 3, 3)``."""
    v = _check_last(v, 3, "axis_angle")
    angle = v.norm(dim=-1, keepdim=True)
    half = angle / 2
    # sin(half)/angle, stable at 0 (limit 1/2)
    scale = torch.where(angle > 1e-8, torch.sin(half) / angle.clamp_min(1e-12), 0.5 - angle**2 / 48)
    return quaternion_to_matrix(torch.cat([torch.cos(half), v * scale], -1))


def matrix_to_axis_angle(r: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotations -> ``(B, 3)`` axis-angle vectors with angle in [0, pi]."""
    q = matrix_to_quaternion(r)
    vec = q[:, 1:]
    sin_half = vec.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[:, :1])
    scale = torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), 2.0 + 0 * angle)
    return vec * scale


def _axis_matrix(axis: int, a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def _check_convention(convention: str) -> str:
    if not isinstance(convention, str) or len(convention) != 3 or any(c not in _AXES for c in convention.upper()):
        raise ValueError(f"convention must be three letters from 'XYZ' such as 'ZYX', got {convention!r}.")
    conv = convention.upper()
    if conv[0] == conv[1] or conv[1] == conv[2]:
        raise ValueError(f"convention must not repeat an axis twice in a row, got {convention!r}.")
    if len(set(conv)) != 3:
        raise ValueError(f"only Tait-Bryan conventions (three different axes) are supported, got {convention!r}.")
    return conv


def euler_to_matrix(angles: torch.Tensor, convention: str = "ZYX") -> torch.Tensor:
    """``(B, 3)`` intrinsic Euler angles (radians) -> ``(B, 3, 3)``: ``R_c0(a0) @ R_c1(a1) @ R_c2(a2)``."""
    conv = _check_convention(convention)
    angles = _check_last(angles, 3, "angles")
    mats = [_axis_matrix(_AXES[c], angles[:, i]) for i, c in enumerate(conv)]
    return mats[0] @ mats[1] @ mats[2]


def matrix_to_euler(r: torch.Tensor, convention: str = "ZYX") -> torch.Tensor:
    """``(B, 3, 3)`` rotations -> ``(B, 3)`` intrinsic Euler angles; the middle angle lies in [-pi/2, pi/2].

    At gimbal lock (middle angle +-pi/2) only ``a0 +- a2`` is defined: ``a0`` is read from the column of the
    last axis and ``a2`` takes the rest, so ``euler_to_matrix(matrix_to_euler(r))`` reproduces ``r`` there too.
    """
    conv = _check_convention(convention)
    _check_matrix(r)
    i, j, k = (_AXES[c] for c in conv)
    # sign of the permutation (i, j, k): +1 for cyclic (XYZ, YZX, ZXY), -1 otherwise
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    # atan2 instead of asin: accurate near +-pi/2 too (asin loses half the digits there)
    a1 = torch.atan2(sign * r[:, i, k], torch.sqrt(r[:, i, i] ** 2 + r[:, i, j] ** 2))
    a0 = torch.atan2(-sign * r[:, j, k], r[:, k, k])  # atan2(0, 0) = 0 at gimbal lock, where only a0 +- a2 counts
    # read a2 from R_j(a1)^T R_i(a0)^T R = R_k(a2): it absorbs any error in a0, so R is reproduced even near lock
    n = _axis_matrix(j, a1).transpose(-1, -2) @ _axis_matrix(i, a0).transpose(-1, -2) @ r
    p, q = (k + 1) % 3, (k + 2) % 3
    a2 = torch.atan2(n[:, q, p], n[:, p, p])
    return torch.stack([a0, a1, a2], -1)
