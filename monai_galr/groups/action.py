"""The image-space action of SO(2)/SO(3): the one owner of the ``affine_grid`` / ``grid_sample`` conventions.

Conventions (every other module calls :func:`rotate_image` instead of repeating them):

- the rotation ``R`` acts on array-index coordinates ``(H, W[, D])`` about the geometric centre of the grid
  (``(N - 1) / 2`` along each axis, voxel centres at integers), with isotropic voxels, so a rotation is rigid on
  any grid: a sphere in a 16x24x32 volume stays a sphere (no shear from normalized coordinates);
- the output is ``y(p) = x(R^T (p - c) + c)`` (the image content turns by ``R``);
- ``grid_sample`` with ``align_corners=False``; interpolation ``mode`` ``"bilinear"`` (tri-linear in 3D) or
  ``"nearest"``; samples from outside the grid follow ``padding_mode`` (``"zeros"``, ``"border"``,
  ``"reflection"``).  At multiples of 90 degrees on a grid whose rotated shape is unchanged every sample falls on
  a voxel centre, so the result equals ``torch.rot90`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monai_galr.groups.rotations import validate_rotation

__all__ = ["affine_grid", "rotate_image", "rotation_to_theta"]

_MODES = ("bilinear", "nearest")
_PADDING = ("zeros", "border", "reflection")


def rotation_to_theta(r: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """The ``(B, d, d+1)`` ``affine_grid`` matrix that rotates a grid of ``spatial_shape`` rigidly by ``r``.

    ``affine_grid`` maps output to input normalized coordinates, ordered ``(x, y[, z]) = (W, H[, D])``, with
    ``u = (2 p + 1) / N - 1``.  With ``S = diag(N / 2)`` and ``P`` the axis reversal,
    ``theta = P S^-1 R^T S P`` (no translation: the centre is fixed).
    """
    d = r.shape[-1]
    if len(spatial_shape) != d:
        raise ValueError(f"a ({d}x{d}) rotation acts on {d} spatial dims, but the image has shape {spatial_shape}.")
    scale = torch.tensor([float(n) for n in spatial_shape], dtype=r.dtype, device=r.device)
    a = r.transpose(-1, -2) * scale[None, :] / scale[:, None]  # S^-1 R^T S
    a = a.flip(-1).flip(-2)  # P A P: reverse axis order for affine_grid
    return torch.cat([a, torch.zeros(*a.shape[:-1], 1, dtype=r.dtype, device=r.device)], -1)


def affine_grid(theta: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, *spatial_shape), align_corners=False)``, built axis by axis.

    The sampling point of output voxel ``p`` is ``theta (u(p), 1)`` with ``u`` the normalized coordinates
    ``(2 p + 1) / N - 1``; an affine map of a product grid is the sum of one term per axis, so the grid is three
    broadcast products and sums instead of a ``(B, N, d+1) x (d+1, d)`` product over every voxel with its base grid
    (the same values to float rounding, about 7x faster on a 64^3 batch on the CPU; plain arithmetic in traces and
    ONNX graphs).

    Args:
        theta: ``(B, d, d+1)`` matrices (see :func:`rotation_to_theta`).
        spatial_shape: ``(H, W)`` or ``(D, H, W)`` in ``grid_sample``'s names, i.e. ``x.shape[2:]``.

    Returns:
        ``(B, *spatial_shape, d)`` sampling points, ordered ``(x, y[, z])`` as ``grid_sample`` reads them.
    """
    d = len(spatial_shape)
    if theta.ndim != 3 or tuple(theta.shape[1:]) != (d, d + 1):
        raise ValueError(f"theta must have shape (B, {d}, {d + 1}) for a {d}D grid, got {tuple(theta.shape)}.")
    grid = theta[:, None, None, :, d] if d == 2 else theta[:, None, None, None, :, d]
    for k in range(d):  # output coordinate k = (x, y[, z]) runs along spatial axis d - 1 - k
        n = spatial_shape[d - 1 - k]
        u = (torch.arange(n, dtype=theta.dtype, device=theta.device) * 2 + 1) / n - 1
        shape = [1] * (d + 2)
        shape[d - k] = n  # the axis of this coordinate in (B, *spatial, d)
        grid = grid + u.reshape(shape) * theta.reshape(theta.shape[0], *([1] * d), d, d + 1)[..., k]
    return grid


def rotate_image(
    x: torch.Tensor,
    r: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    validate: bool = True,
) -> torch.Tensor:
    """Rotate a batch of images about the grid centre.

    Args:
        x: ``(B, C, H, W)`` with ``r`` of shape ``(B, 2, 2)``, or ``(B, C, H, W, D)`` with ``(B, 3, 3)``.
            A single ``(d, d)`` or ``(1, d, d)`` rotation is applied to the whole batch.
        r: rotations acting on array-index coordinates (see the module docstring).
        mode: ``"bilinear"`` (tri-linear for 3D) or ``"nearest"``.
        padding_mode: value for samples outside the grid: ``"zeros"``, ``"border"`` or ``"reflection"``.
        validate: check that ``r`` holds proper rotations (skip only for trusted, already checked input).

    Returns:
        the rotated batch, same shape and dtype as ``x``.

    Raises:
        ValueError: shapes do not match, ``r`` is not a rotation, or an unknown ``mode`` / ``padding_mode``.

    Example::

        >>> from monai_galr.groups import angle_to_matrix, rotate_image
        >>> y = rotate_image(torch.rand(2, 1, 28, 28), angle_to_matrix(torch.tensor([0.3, 1.2])))
    """
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, H, W) or (B, C, H, W, D) tensor, got {shape}.")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
    if padding_mode not in _PADDING:
        raise ValueError(f"padding_mode must be one of {_PADDING}, got {padding_mode!r}.")
    d = x.ndim - 2
    if isinstance(r, torch.Tensor) and r.ndim == 2:
        r = r[None]
    if validate:
        validate_rotation(r, dim=d, name="rotation")
    elif r.ndim != 3 or r.shape[-1] != d:
        raise ValueError(f"rotation must have shape (B, {d}, {d}) for a {d}D image, got {tuple(r.shape)}.")
    b = x.shape[0]
    if r.shape[0] == 1 and b != 1:
        r = r.expand(b, d, d)
    if r.shape[0] != b:
        raise ValueError(f"rotation has batch size {r.shape[0]} but the image batch has {b}.")
    compute_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    theta = rotation_to_theta(r.to(device=x.device, dtype=compute_dtype), tuple(x.shape[2:]))
    grid = affine_grid(theta, tuple(x.shape[2:]))
    out = F.grid_sample(x.to(compute_dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)
