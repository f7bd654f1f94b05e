"""Batched rotation groups SO(2) and SO(3) as ``(B, d, d)`` tensors.

Group elements are plain tensors of rotation matrices.  They act on *array-index coordinates*: axis 0 of the
spatial grid (``H``) is the first coordinate, axis 1 (``W``) the second and, in 3D, axis 2 (``D``) the third.
``compose(a, b)`` is the element "``b`` first, then ``a``" (the matrix product ``a @ b``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "identity",
    "compose",
    "inverse",
    "random_quaternion",
    "random_rotation",
    "random_c4",
    "validate_rotation",
    "rotation_tolerance",
    "snap_exact",
]


def _check_dim(dim: int, name: str = "dim") -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int (2 for SO(2), 3 for SO(3)), got {type(dim).__name__}.")
    if dim not in (2, 3):
        raise ValueError(f"{name} must be 2 (SO(2)) or 3 (SO(3)), got {dim}.")
    return dim


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got {batch!r}.")
    return batch


def rotation_tolerance(dtype: torch.dtype) -> float:
    """Absolute tolerance used to accept a matrix as a rotation for ``dtype``."""
    return 1e-6 if dtype == torch.float64 else 1e-3


def identity(batch: int, dim: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The identity element, ``(batch, dim, dim)``."""
    _check_batch(batch)
    _check_dim(dim)
    return torch.eye(dim, dtype=dtype, device=device).expand(batch, dim, dim).clone()


def validate_rotation(r: torch.Tensor, dim: int | None = None, name: str = "rotation") -> torch.Tensor:
    """Check that ``r`` is a batch of proper rotations and return it.

    Args:
        r: ``(B, d, d)`` tensor, ``d`` in {2, 3}.
        dim: the expected ``d``, or None to accept 2 or 3.
        name: the parameter name used in error messages.

    Raises:
        TypeError: ``r`` is not a floating point tensor.
        ValueError: wrong shape, not orthonormal, or a reflection (``det = -1``).
    """
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, d, d), got {type(r).__name__}.")
    if not r.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {r.dtype}.")
    if r.ndim != 3 or r.shape[-1] != r.shape[-2] or r.shape[-1] not in (2, 3):
        raise ValueError(f"{name} must have shape (B, 2, 2) or (B, 3, 3), got {tuple(r.shape)}.")
    if dim is not None and r.shape[-1] != _check_dim(dim):
        raise ValueError(f"{name} must have shape (B, {dim}, {dim}) for SO({dim}), got {tuple(r.shape)}.")
    if r.shape[0] == 0:
        return r
    tol = rotation_tolerance(r.dtype)
    with torch.no_grad():
        rf = r.detach().to(torch.float64)
        eye = torch.eye(r.shape[-1], dtype=torch.float64, device=r.device)
        err = (rf.transpose(-1, -2) @ rf - eye).abs().amax().item()
        if not math.isfinite(err) or err > tol:
            raise ValueError(f"{name} must be orthonormal (R^T R = I within {tol:g}); max deviation is {err:.3g}.")
        det = torch.linalg.det(rf)
        if (det < 0).any():
            bad = int(torch.nonzero(det < 0)[0].item())
            raise ValueError(
                f"{name} must be a proper rotation (det = +1); element {bad} has det = {det[bad].item():.3g} "
                "(a reflection)."
            )
    return r


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The element that applies ``b`` first, then ``a``: ``a @ b``, both ``(B, d, d)`` (B may broadcast)."""
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"compose needs rotations of the same dimension, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return a @ b


def inverse(r: torch.Tensor) -> torch.Tensor:
    """The inverse element (the transpose), ``(B, d, d)``."""
    return r.transpose(-1, -2)


def _uniform(batch: int, generator: Any) -> torch.Tensor:
    """``(batch,)`` float64 uniform in [0, 1) from ``generator`` (its own stream, whatever its kind)."""
    if isinstance(generator, (np.random.Generator, np.random.RandomState)):
        return torch.from_numpy(np.asarray(generator.random(batch), dtype=np.float64).reshape(batch))
    device = generator.device if generator is not None else "cpu"
    return torch.rand(batch, generator=generator, dtype=torch.float64, device=device)


def random_quaternion(batch: int, generator: Any = None) -> torch.Tensor:
    """Haar-uniform unit quaternions ``(w, x, y, z)``, ``(batch, 4)`` float64: normalized Gaussian 4-vectors.

    The four normals of each element are drawn in one go from ``generator``: a ``torch.Generator`` (on its device;
    None: torch's global one), a numpy ``Generator`` or a ``RandomState`` (a MONAI transform's ``self.R``), in the
    order ``w, x, y, z``.  This is the one SO(3) sampler of the package: training batches, the transforms, the
    fixed evaluation protocol and the synthetic data all draw through it.

    Not ``scipy.spatial.transform.Rotation.random``: it reads the same normals as ``(x, y, z, w)``, so every seeded
    rotation (the fixed test rotations behind the documented metrics, the cached synthetic sets) would change.
    """
    _check_batch(batch)
    if isinstance(generator, (np.random.Generator, np.random.RandomState)):
        q = torch.from_numpy(np.asarray(generator.standard_normal((batch, 4)), dtype=np.float64))
    else:
        device = generator.device if generator is not None else "cpu"
        q = torch.randn(batch, 4, generator=generator, dtype=torch.float64, device=device)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def quaternion_to_rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` unit quaternions ``(w, x, y, z)`` -> ``(B, 3, 3)`` float64 matrices, by scipy's ``Rotation``.

    For sampled (constant) quaternions on the CPU; :func:`monai_galr.groups.quaternion_to_matrix` is the batched,
    differentiable torch version of the same map.
    """
    from scipy.spatial.transform import Rotation

    q = torch.as_tensor(q)
    if q.shape[0] == 0:
        return torch.zeros(0, 3, 3, dtype=torch.float64, device=q.device)
    m = Rotation.from_quat(q.detach().cpu().double().numpy(), scalar_first=True).as_matrix()
    return torch.from_numpy(np.ascontiguousarray(m)).to(q.device)


def random_rotation(
    batch: int,
    dim: int,
    generator: Any = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """Haar-uniform random rotations, ``(batch, dim, dim)``.

    SO(2): a uniform angle in [0, 2*pi).  SO(3): :func:`random_quaternion` (uniform on S^3, hence Haar), turned
    into a matrix by scipy's ``Rotation``.  ``generator``: a ``torch.Generator`` (sampling happens on its device,
    CPU by default), a numpy ``Generator`` or ``RandomState``; the result is moved to ``device``.
    """
    from monai_galr.groups.so2 import angle_to_matrix

    _check_batch(batch)
    _check_dim(dim)
    if dim == 2:
        out = angle_to_matrix(_uniform(batch, generator) * (2 * math.pi))
    else:
        out = quaternion_to_rotation_matrix(random_quaternion(batch, generator))
    return out.to(dtype=dtype, device=device)


def random_c4(
    batch: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """Uniform random elements of the cyclic group C4 (multiples of 90 degrees) as SO(2) matrices."""
    from monai_galr.groups.so2 import angle_to_matrix

    _check_batch(batch)
    gen_device = generator.device if generator is not None else "cpu"
    k = torch.randint(0, 4, (batch,), generator=generator, device=gen_device)
    return angle_to_matrix(k.to(torch.float64) * (math.pi / 2)).round().to(dtype=dtype, device=device)


def snap_exact(m: np.ndarray, atol: float = 1e-12) -> np.ndarray:
    """Snap entries within ``atol`` of 0 or +-1 to the exact value (float64 round-off at multiples of 90 degrees).

    Returns a new numpy array; ``m`` is not modified.
    """
    m = np.array(m, copy=True)
    m[np.abs(m) < atol] = 0.0
    near_one = np.abs(np.abs(m) - 1.0) < atol
    m[near_one] = np.sign(m[near_one])
    return m
