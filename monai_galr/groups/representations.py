"""Orthogonal representations of SO(2) and SO(3) as batched matrices: how a rotation acts on harmonic coefficients.

- SO(2), *frequency blocks*: the real Fourier coefficients of a function on the circle, ordered
  ``[a_0, a_1, b_1, ..., a_{K-1}, b_{K-1}]`` for ``f(phi) = a_0 + sqrt(2) sum_k (a_k cos k phi + b_k sin k phi)``
  (Parseval: the mean of ``f^2`` is the sum of squares of the coefficients).  Rotating the *content* by ``theta``
  (``f'(phi) = f(phi + theta)``, the convention of :func:`monai_galr.groups.rotate_image` sampled at angle ``phi`` in
  the ``(x, y) = (W, H)`` frame, see :mod:`monai_galr.networks.blocks.harmonic`) maps block ``k`` by
  ``[[cos k theta, sin k theta], [-sin k theta, cos k theta]]``; block 0 is ``1``.
- SO(3), *Wigner-D*: real spherical-harmonic coefficients of degrees ``l = 0..lmax`` (e3nn's order and component
  normalization, so the mean of ``f^2`` over the sphere is the sum of squares), acted on by the block-diagonal
  ``e3nn.o3.Irreps.spherical_harmonics(lmax).D_from_matrix(R)``, with the array axes ``(H, W, D)`` identified with
  e3nn's ``(x, y, z)``: sampling ``rotate_image(x, R)`` on a sphere and projecting gives ``D(R)`` times the
  coefficients of ``x`` (not ``D(R^T)``).

Both are group homomorphisms (``rho(A B) = rho(A) rho(B)``, ``rho(I) = I``, ``rho(R^-1) = rho(R)^T``) up to float
rounding; ``tests/groups/test_representations.py`` checks the laws and the agreement with ``rotate_image``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = ["check_lmax", "harmonic_dim", "so2_representation", "so3_representation", "representation"]


def _check_degree(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return value


def harmonic_dim(spatial_dims: int, degree: int) -> int:
    """Size of the coefficient vector: ``2 * modes - 1`` for SO(2) (``degree`` = number of modes ``K``),
    ``(lmax + 1)^2`` for SO(3) (``degree`` = ``lmax``)."""
    if spatial_dims == 2:
        return 2 * _check_degree(degree, "modes", 1) - 1
    if spatial_dims == 3:
        return (check_lmax(degree) + 1) ** 2
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")


def so2_representation(r: torch.Tensor, modes: int) -> torch.Tensor:
    """Frequency-block representation of ``(B, 2, 2)`` rotations: ``(B, 2K-1, 2K-1)`` orthogonal matrices.

    ``cos k theta`` and ``sin k theta`` are built from ``R`` by complex multiplication (no ``atan2``), so the map
    is smooth, exportable and exact to rounding at multiples of 90 degrees.

    Args:
        r: ``(B, 2, 2)`` rotation matrices (``monai_galr.groups`` convention).
        modes: number of Fourier modes ``K >= 1`` (frequencies ``0..K-1``).
    """
    _check_degree(modes, "modes", 1)
    if r.ndim != 3 or r.shape[-2:] != (2, 2):
        raise ValueError(f"rotation must have shape (B, 2, 2), got {tuple(r.shape)}.")
    c1, s1 = r[:, 0, 0], r[:, 1, 0]  # R = [[cos, -sin], [sin, cos]]
    b = r.shape[0]
    n = 2 * modes - 1
    out = r.new_zeros(b, n, n)
    out[:, 0, 0] = 1.0
    ck, sk = torch.ones_like(c1), torch.zeros_like(s1)
    for k in range(1, modes):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1  # (cos k theta, sin k theta)
        i = 2 * k - 1
        out[:, i, i] = ck
        out[:, i, i + 1] = sk
        out[:, i + 1, i] = -sk
        out[:, i + 1, i + 1] = ck
    return out


SO3_POLYNOMIAL_LMAX = 12  # the highest degree of e3nn's polynomial spherical harmonics (o3.spherical_harmonics)
_SO3_LMAX_LIMIT = 32  # above 12 the shells use e3nn's Legendre harmonics; float32 Wigner-D orthogonal to 3e-6 here


def check_lmax(lmax: int, name: str = "lmax") -> int:
    """Return ``lmax`` if it is an int in ``[0, 32]``.

    Degrees up to 12 use e3nn's polynomial harmonics, higher ones its Legendre-based
    ``o3.spherical_harmonics_alpha_beta`` (equal to 1e-12 where both exist); 32 bounds the cost and the float32
    rounding of the Wigner-D recursion (orthogonality 1e-6 at 24, 3e-6 at 32).
    """
    _check_degree(lmax, name, 0)
    if lmax > _SO3_LMAX_LIMIT:
        raise ValueError(
            f"{name} must be <= {_SO3_LMAX_LIMIT} (the highest degree supported for the SO(3) harmonics: "
            f"(lmax + 1)^2 coefficients per shell, float32 Wigner-D), got {lmax}."
        )
    return lmax


@functools.lru_cache(maxsize=128)
def _coupling(degree: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``sqrt(2l+1)`` times e3nn's ``wigner_3j(l-1, 1, l)`` as a ``((2l-1) 3, 2l+1)`` matrix ``C`` (computed in
    float64, kept per device and dtype so that a training step copies nothing to the device).

    Its columns are orthonormal and it intertwines ``D^(l-1) (x) D^1`` with ``D^l``, so
    ``D^l(R) = C^T (D^(l-1)(R) (x) D^1(R)) C``.
    """
    from e3nn import o3

    c = o3.wigner_3j(degree - 1, 1, degree, dtype=torch.float64)
    c = c.reshape((2 * degree - 1) * 3, 2 * degree + 1) * math.sqrt(2 * degree + 1)
    return c.to(device=device, dtype=dtype)


def so3_representation(r: torch.Tensor, lmax: int) -> torch.Tensor:
    """Block-diagonal Wigner-D matrices of degrees ``0..lmax`` for ``(B, 3, 3)`` rotations.

    Built degree by degree from ``D^0 = 1`` and ``D^1 = R`` (e3nn's degree-1 real harmonics are ``(x, y, z)``, here
    ``(H, W, D)``) by the Clebsch-Gordan recursion ``D^l = C_l^T (D^(l-1) (x) R) C_l`` with e3nn's Wigner 3j
    symbols (:func:`_coupling`).  The result equals ``e3nn.o3.Irreps.spherical_harmonics(lmax).D_from_matrix(R)``
    (checked in the tests) and costs about 30 small matrix products instead of e3nn's per-degree Euler-angle
    construction or an evaluation of the harmonics on a sphere grid (1.2 vs 15 ms for 4 rotations at lmax 12 on
    one CPU core, float32; no ``atan2`` / ``acos``, so it traces and exports as plain arithmetic).  Composition is
    kept to float rounding (``D(AB) - D(A) D(B)``: 3e-7 in float32, 3e-15 in float64 at lmax 12).

    Args:
        r: ``(B, 3, 3)`` rotation matrices acting on ``(H, W, D)`` = e3nn's ``(x, y, z)``.
        lmax: highest degree, ``0 <= lmax <= 32``.

    Returns:
        ``(B, (lmax+1)^2, (lmax+1)^2)`` orthogonal matrices, in the dtype and device of ``r``.
    """
    check_lmax(lmax)
    if r.ndim != 3 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (B, 3, 3), got {tuple(r.shape)}.")
    dtype = r.dtype if r.dtype in (torch.float32, torch.float64) else torch.float32
    rot = r.to(dtype)
    batch, size = rot.shape[0], (lmax + 1) ** 2
    blocks = [torch.ones(batch, 1, 1, dtype=dtype, device=r.device)]
    if lmax >= 1:
        blocks.append(rot)
    previous = rot
    for degree in range(2, lmax + 1):
        c = _coupling(degree, r.device, dtype)
        n = 2 * degree - 1
        product = (previous[:, :, None, :, None] * rot[:, None, :, None, :]).reshape(batch, 3 * n, 3 * n)
        previous = c.transpose(0, 1) @ product @ c
        blocks.append(previous)
    rows, start = [], 0
    for block in blocks:  # pad each (B, 2l+1, 2l+1) block to its rows of the (B, size, size) matrix
        width = block.shape[-1]
        rows.append(F.pad(block, (start, size - start - width)))
        start += width
    return torch.cat(rows, dim=1).to(r.dtype)


def representation(r: torch.Tensor, degree: int) -> torch.Tensor:
    """``so2_representation(r, degree)`` for ``(B, 2, 2)`` input, ``so3_representation(r, degree)`` for ``(B, 3, 3)``."""
    if r.ndim == 3 and r.shape[-1] == 2:
        return so2_representation(r, degree)
    return so3_representation(r, degree)
