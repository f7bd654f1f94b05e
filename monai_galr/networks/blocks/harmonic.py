"""The harmonic latent: polar-ring (2D) or spherical-shell (3D) coefficients on which rotations act exactly.

The encoder's feature map ``(B, L, *latent_shape)`` is sampled once (bilinear / tri-linear ``grid_sample``) on
``radii`` rings or shells about the centre of the grid, and the samples of each ring / shell are projected on
harmonics: real Fourier modes ``0..modes-1`` in 2D, real spherical harmonics of degrees ``0..lmax`` in 3D (e3nn,
component normalization).  The latent is the coefficient tensor ``(B, L, radii, M)`` with ``M = 2 modes - 1`` or
``(lmax+1)^2``.  A rotation acts on it by its orthogonal representation (:mod:`monai_galr.groups.representations`),
so composition, inverse and identity hold exactly (to float rounding); the decoder first renders the coefficients
back on the Cartesian feature grid (harmonics evaluated on the ring / shell grid, then interpolated in radius and
angle, the angle wrapped) and then upsamples as usual.

Geometry (index coordinates of the latent grid, centre ``c = (n - 1) / 2`` per axis, as ``rotate_image``):
ring / shell ``s`` has radius ``(s + 1/2) * max_radius / radii``; 2D samples at ``c + r (sin a, cos a)`` in
``(H, W)``, i.e. at angle ``a`` in the ``(x, y) = (W, H)`` frame, ``a = 2 pi n / angles``; 3D samples at
``c + r * e3nn.o3.angles_to_xyz(alpha, beta)`` on ``e3nn.o3.s2_grid(angles, angles - 1)`` with ``(H, W, D)`` as
e3nn's ``(x, y, z)``.  ``max_radius`` defaults to the half-diagonal of the grid, so the outer shell reaches the
corners of a non-cubic volume.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_galr.groups.representations import SO3_POLYNOMIAL_LMAX, check_lmax, harmonic_dim, representation
from monai_galr.networks.blocks.actions import GridRotation

__all__ = [
    "HarmonicAnalysis",
    "HarmonicSynthesis",
    "HarmonicAction",
    "HybridAnalysis",
    "HybridSynthesis",
    "HybridAction",
    "harmonic_latent_numel",
    "map_shape",
    "INVARIANT_VIEWS",
]

# how the invariant channels of a harmonic latent are held: as the same coefficients as the varying ones, or as the
# Cartesian feature map itself (the hybrid latent below)
INVARIANT_VIEWS = ("harmonic", "map")


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


class _HarmonicGeometry:
    """Checked parameters and the fixed sampling geometry shared by analysis and synthesis."""

    def __init__(
        self,
        spatial_dims: int,
        latent_shape: Sequence[int],
        radii: int,
        degree: int,
        angles: int | None,
        max_radius: float | None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        shape = tuple(int(n) for n in latent_shape)
        if len(shape) != spatial_dims or any(n < 1 for n in shape):
            raise ValueError(f"latent_shape must be {spatial_dims} positive sizes, got {tuple(latent_shape)}.")
        self.spatial_dims, self.latent_shape = spatial_dims, shape
        self.radii = _positive_int(radii, "harmonic_radii")
        if spatial_dims == 2:
            self.degree = _positive_int(degree, "harmonic_modes")
            self.angles = _positive_int(4 * self.degree if angles is None else angles, "harmonic_angles")
            if self.degree > self.angles // 2:
                raise ValueError(
                    f"harmonic_modes ({self.degree}) must be <= harmonic_angles // 2 ({self.angles // 2}): "
                    f"{self.angles} samples per ring cannot resolve frequency {self.degree - 1}."
                )
        else:
            self.degree = check_lmax(degree, "harmonic_lmax")
            self.angles = _positive_int(2 * (self.degree + 1) if angles is None else angles, "harmonic_angles", 2)
            if self.angles % 2 or self.angles < 2 * (self.degree + 1):
                raise ValueError(
                    f"harmonic_angles (the s2 grid's beta resolution) must be even and >= 2 (harmonic_lmax + 1) = "
                    f"{2 * (self.degree + 1)}, got {self.angles}."
                )
        corner = math.sqrt(sum((n / 2.0) ** 2 for n in shape))
        radius = corner if max_radius is None else float(max_radius)
        if not (radius > 0.0) or radius > corner + 1e-6:
            raise ValueError(
                f"harmonic_max_radius must lie in (0, {corner:.4g}] (the half-diagonal of the {shape} latent grid, "
                f"in latent voxels), got {max_radius!r}: shells beyond the corners sample nothing."
            )
        self.max_radius = radius

    # -- the angular grid and its harmonics ------------------------------------------------------------------
    def angular(self) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """Unit directions ``(N, d)`` in (H, W[, D]) order, the harmonics at them ``(N, M)`` and the grid shape."""
        if self.spatial_dims == 2:
            a = torch.arange(self.angles, dtype=torch.float64) * (2 * math.pi / self.angles)
            dirs = torch.stack([torch.sin(a), torch.cos(a)], -1)
            cols = [torch.ones_like(a)]
            for k in range(1, self.degree):
                cols += [math.sqrt(2.0) * torch.cos(k * a), math.sqrt(2.0) * torch.sin(k * a)]
            return dirs, torch.stack(cols, -1), (self.angles,)
        dirs, y = _shell_harmonics(self.degree, self.angles)
        return dirs.clone(), y.clone(), (self.angles, self.angles - 1)

    def radius_step(self) -> float:
        return self.max_radius / self.radii

    def centre(self) -> torch.Tensor:
        return torch.tensor([(n - 1) / 2.0 for n in self.latent_shape], dtype=torch.float64)

    def normalized(self, points: torch.Tensor) -> torch.Tensor:
        """Index coordinates ``(..., d)`` in (H, W[, D]) -> ``grid_sample`` coordinates (reversed, align_corners=False)."""
        size = torch.tensor(self.latent_shape, dtype=torch.float64)
        return ((2 * points + 1) / size - 1).flip(-1)

    def signature(self) -> torch.Tensor:
        return torch.tensor(
            [self.spatial_dims, self.radii, self.degree, self.angles, self.max_radius, *self.latent_shape],
            dtype=torch.float64,
        )

    @staticmethod
    def describe(sig: torch.Tensor) -> str:
        v = sig.tolist()
        if len(v) < 5:
            return f"{v}"
        degree = "modes" if int(v[0]) == 2 else "lmax"
        return (
            f"spatial_dims={int(v[0])}, harmonic_radii={int(v[1])}, harmonic_{degree}={int(v[2])}, "
            f"harmonic_angles={int(v[3])}, harmonic_max_radius={v[4]:.6g}, latent grid {tuple(int(n) for n in v[5:])}"
        )


@functools.lru_cache(maxsize=8)
def _shell_harmonics(lmax: int, res_beta: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Directions ``(N, 3)`` of e3nn's ``s2_grid(res_beta, res_beta - 1)`` and the real harmonics of degrees
    ``0..lmax`` at them ``(N, (lmax+1)^2)``, float64 (cached: analysis and synthesis share one evaluation).

    Up to degree 12 e3nn's polynomial ``spherical_harmonics``; above, its Legendre-based
    ``spherical_harmonics_alpha_beta`` (the same functions: 1e-12 apart at degree <= 12; seconds to evaluate at
    degree 20 and more, hence the cache).
    """
    from e3nn import o3

    betas, alphas = o3.s2_grid(res_beta, res_beta - 1, dtype=torch.float64)
    beta, alpha = torch.meshgrid(betas, alphas, indexing="ij")
    dirs = o3.angles_to_xyz(alpha, beta).reshape(-1, 3)
    degrees = list(range(lmax + 1))
    if lmax <= SO3_POLYNOMIAL_LMAX:
        y = o3.spherical_harmonics(degrees, dirs, normalize=True, normalization="component")
    else:
        y = o3.spherical_harmonics_alpha_beta(degrees, alpha.reshape(-1), beta.reshape(-1), normalization="component")
    return dirs, y


def harmonic_latent_numel(latent_channels: int, radii: int, spatial_dims: int, degree: int) -> int:
    """Numbers in one image's harmonic latent: ``latent_channels * radii * M``."""
    return int(latent_channels) * int(radii) * harmonic_dim(spatial_dims, degree)


class _HarmonicMap(nn.Module):
    """Common constructor of analysis and synthesis: the checked geometry (see :class:`HarmonicAnalysis`)."""

    def __init__(
        self,
        spatial_dims: int,
        latent_shape: Sequence[int],
        radii: int,
        degree: int,
        angles: int | None = None,
        max_radius: float | None = None,
    ) -> None:
        super().__init__()
        self.geometry = _HarmonicGeometry(spatial_dims, latent_shape, radii, degree, angles, max_radius)
        self.spatial_dims, self.latent_shape, self.radii = spatial_dims, self.geometry.latent_shape, self.geometry.radii


class HarmonicAnalysis(_HarmonicMap):
    """Feature map ``(B, L, *latent_shape)`` -> coefficients ``(B, L, radii, M)`` (the encoder's last step).

    Args:
        spatial_dims: 2 (polar rings, Fourier modes) or 3 (spherical shells, spherical harmonics).
        latent_shape: the feature map's spatial size (the image size divided by the total stride).
        radii: number of rings / shells.
        degree: ``modes`` (2D, frequencies ``0..modes-1``) or ``lmax`` (3D, ``0..32``).
        angles: samples per ring (2D, default ``4 * modes``, at least ``2 * modes``) or the beta resolution of the
            s2 grid (3D, even, default and minimum ``2 (lmax + 1)``; alpha resolution ``angles - 1``).
        max_radius: radius of the outer ring edge in latent voxels (default: the half-diagonal of the grid).

    Raises:
        ValueError: more modes than the angular sampling resolves, ``lmax`` above 32, a radius beyond the grid's
            corners, or non-positive sizes; each message names the entry.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        geo = self.geometry
        dirs, y, self._angular_shape = geo.angular()
        r = (torch.arange(geo.radii, dtype=torch.float64) + 0.5) * geo.radius_step()
        points = geo.centre() + r[:, None, None] * dirs[None]  # (S, N, d)
        grid = geo.normalized(points)  # (S, N, d), reversed axis order
        grid = grid[None] if geo.spatial_dims == 2 else grid[None, :, :, None]  # (1, S, N, 2) / (1, S, N, 1, 3)
        self.register_buffer("grid", grid.float(), persistent=False)
        self.register_buffer("projection", torch.linalg.pinv(y).T.contiguous().float(), persistent=False)  # (N, M)
        # persistent: a checkpoint records the harmonic geometry it was trained with (checked on load)
        self.register_buffer("signature", geo.signature())

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.ndim != self.spatial_dims + 2 or tuple(feat.shape[2:]) != self.latent_shape:
            raise ValueError(
                f"the harmonic latent samples a feature map (B, L, {', '.join(map(str, self.latent_shape))}), got "
                f"{tuple(feat.shape)}: the image size must be the network's spatial_size."
            )
        b = feat.shape[0]
        grid = self.grid.to(feat.dtype).expand(b, *self.grid.shape[1:])
        samples = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        samples = samples.reshape(b, feat.shape[1], self.radii, -1)  # (B, L, S, N)
        return samples @ self.projection.to(feat.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "signature"
        if key in state_dict:
            theirs = state_dict[key]
            if theirs.shape != self.signature.shape or not torch.allclose(theirs.double(), self.signature, atol=1e-6):
                error_msgs.append(
                    f"the checkpoint's harmonic latent ({_HarmonicGeometry.describe(theirs)}) differs from this "
                    f"network's ({_HarmonicGeometry.describe(self.signature)}): set the harmonic_* entries (and "
                    "spatial_size, strides) to those it was trained with."
                )
                return
        elif strict:
            error_msgs.append(
                f"the checkpoint has no {key!r}: it was not trained with action 'harmonic' (a grid or learned "
                "action checkpoint?); set action to what it was trained with."
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return _HarmonicGeometry.describe(self.signature)


class HarmonicSynthesis(_HarmonicMap):
    """Coefficients ``(B, L, radii, M)`` -> feature map ``(B, L, *latent_shape)`` (the decoder's first step).

    The harmonics are evaluated on the ring / shell grid of :class:`HarmonicAnalysis` and interpolated linearly to
    every latent voxel in radius and angle (angle wrapped; in 3D the polar angle is clamped at the grid's first and
    last rows, the radius at the inner and outer shells).  Same arguments as :class:`HarmonicAnalysis`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        geo = self.geometry
        _, y, self._angular_shape = geo.angular()
        self.register_buffer("basis", y.T.contiguous().float(), persistent=False)  # (M, N)
        axes = [torch.arange(n, dtype=torch.float64) for n in geo.latent_shape]
        q = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1) - geo.centre()  # offsets (*latent, d)
        r = q.norm(dim=-1)
        s_pos = r / geo.radius_step() - 0.5  # fractional shell index
        s_norm = 2 * s_pos / (geo.radii - 1) - 1 if geo.radii > 1 else torch.zeros_like(s_pos)
        if geo.spatial_dims == 2:
            n = self._angular_shape[0]
            a = torch.remainder(torch.atan2(q[..., 0], q[..., 1]), 2 * math.pi)  # angle in the (x=W, y=H) frame
            a_norm = 2 * (a / (2 * math.pi / n)) / n - 1  # over n + 1 columns (wrap column appended)
            grid = torch.stack([a_norm, s_norm], -1)[None]  # (1, h, w, 2): x = angle, y = ring
        else:
            res_beta, res_alpha = self._angular_shape
            u = q / r.clamp_min(1e-12)[..., None]
            u = torch.where(r[..., None] > 0, u, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
            beta = torch.acos(u[..., 1].clamp(-1.0, 1.0))
            alpha = torch.remainder(torch.atan2(u[..., 0], u[..., 2]), 2 * math.pi)
            b_pos = beta / (math.pi / res_beta) - 0.5
            b_norm = 2 * b_pos / (res_beta - 1) - 1
            a_norm = 2 * (alpha / (2 * math.pi / res_alpha)) / res_alpha - 1
            grid = torch.stack([a_norm, b_norm, s_norm], -1)[None]  # (1, h, w, d, 3): x = alpha, y = beta, z = shell
        self.register_buffer("grid", grid.float(), persistent=False)

    def forward(self, coeff: torch.Tensor) -> torch.Tensor:
        if coeff.ndim != 4 or coeff.shape[2] != self.radii or coeff.shape[3] != self.basis.shape[0]:
            raise ValueError(
                f"harmonic coefficients must have shape (B, L, {self.radii}, {self.basis.shape[0]}), got "
                f"{tuple(coeff.shape)}."
            )
        b, c = coeff.shape[:2]
        values = (coeff @ self.basis.to(coeff.dtype)).reshape(b, c, self.radii, *self._angular_shape)
        values = torch.cat([values, values[..., :1]], -1)  # wrap the (azimuthal) angle
        grid = self.grid.to(coeff.dtype).expand(b, *self.grid.shape[1:])
        return F.grid_sample(values, grid, mode="bilinear", padding_mode="border", align_corners=True)


class HarmonicAction(nn.Module):
    """``Phi_R(z) = rho(R) z`` on harmonic coefficients ``(B, L, radii, M)``: exact composition and inverse.

    Args:
        spatial_dims: 2 (frequency blocks of ``modes``) or 3 (Wigner-D of degrees ``0..lmax``).
        degree: ``modes`` (2D) or ``lmax`` (3D).
    """

    def __init__(self, spatial_dims: int, degree: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.degree = degree
        self.dim = harmonic_dim(spatial_dims, degree)
        # build the representation's cached 3j couplings now (CPU, float32), so that a later torch.jit.trace
        # records the same graph each time
        representation(torch.eye(spatial_dims)[None], degree)

    def forward(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[-1] != self.dim:
            raise ValueError(f"harmonic coefficients must have shape (B, L, radii, {self.dim}), got {tuple(z.shape)}.")
        if rotation.ndim != 3 or rotation.shape[-1] != self.spatial_dims:
            raise ValueError(
                f"rotation must have shape (B, {self.spatial_dims}, {self.spatial_dims}), got {tuple(rotation.shape)}."
            )
        rho = representation(rotation.to(z.dtype), self.degree)  # (B or 1, M, M): broadcast by the product
        # rho(R) on every coefficient vector, as one (L S, M) x (M, M) product per image: broadcasting rho over the
        # channel axis instead would copy it L times (5x slower forward and backward at 32 channels, lmax 12)
        flat = z.reshape(z.shape[0], -1, self.dim) @ rho.transpose(-1, -2)
        return flat.reshape(z.shape)

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, degree={self.degree}"


# ---- the hybrid latent: coefficients for the channels that rotate, the Cartesian map for those that do not -------
#
# A fixed background (a block in front of a digit, anatomy around an organ) has sharp edges at fixed positions that
# the few angular modes of a ring / shell cannot hold; an invariant channel need not be rotated, so it can keep the
# feature map itself.  Every channel carries both views, ``z = [coefficients (S*M) | map (G)]`` along the last axis,
# ``(B, L, S*M + G)``, because the split is learned: the decoder reads the coefficients of the varying channels and
# the map of the invariant ones (the ALD mask, exactly 0/1 in the forward pass, its straight-through gradient
# backward).  What the decoder reads under the hard mask is ``L_v S M + L_i G`` numbers.  The map view is the
# feature map itself (``G = prod(latent_shape)``) or, with ``map_stride`` s > 1, average-pooled by s (``G / s^d``):
# the rings / shells then sample a fine feature map while the invariant channels stay within the latent budget.


def map_shape(latent_shape: Sequence[int], map_stride: int) -> tuple[int, ...]:
    """The grid of the hybrid latent's map view: the latent grid divided by ``map_stride`` (checked)."""
    stride = _positive_int(map_stride, "harmonic_map_stride")
    shape = tuple(int(n) for n in latent_shape)
    if any(n % stride for n in shape):
        raise ValueError(
            f"harmonic_map_stride ({stride}) must divide every size of the {shape} latent grid (the image size over "
            f"the network's total stride), got {map_stride!r}."
        )
    return tuple(n // stride for n in shape)


class HybridAnalysis(HarmonicAnalysis):
    """Feature map ``(B, L, *latent_shape)`` -> ``(B, L, S*M + G)``: the harmonic coefficients, then the map.

    Args:
        map_stride: the map view is the feature map average-pooled by this factor (``G = prod(latent_shape) /
            map_stride^d``; 1: the map itself), so that the rings / shells can sample a fine feature map while the
            invariant channels stay within the latent budget.
        other arguments: as :class:`HarmonicAnalysis`.
    """

    def __init__(self, *args, map_stride: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.map_shape = map_shape(self.latent_shape, map_stride)
        self.map_stride = int(map_stride)
        # persistent: tells a hybrid checkpoint from a harmonic one of the same geometry, and holds the map stride
        # (checked on load; checkpoints from before the entry hold 1)
        self.register_buffer("invariant_map", torch.full((1,), float(self.map_stride)))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        coeff = super().forward(feat)
        if self.map_stride > 1:
            pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
            feat = pool(feat, self.map_stride)
        return torch.cat([coeff.flatten(2), feat.flatten(2)], -1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        theirs = state_dict.get(prefix + "invariant_map")
        if theirs is not None and theirs.numel() == 1 and int(theirs.item()) != self.map_stride:
            error_msgs.append(
                f"the checkpoint's hybrid latent holds the map view at harmonic_map_stride {int(theirs.item())} but "
                f"this network's is {self.map_stride}; set harmonic_map_stride: {int(theirs.item())}."
            )
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def _hybrid_views(z: torch.Tensor, radii: int, dim: int, grid: Sequence[int]):
    """``(coefficients (B, L, S, M), map (B, L, *grid))`` of a hybrid latent ``(B, L, S*M + G)``."""
    s, g = radii * dim, math.prod(grid)
    if z.ndim != 3 or z.shape[-1] != s + g:
        raise ValueError(
            f"a hybrid harmonic latent must have shape (B, L, {s} + {g}) (coefficients of {radii} rings / shells x "
            f"{dim}, then the {tuple(grid)} map), got {tuple(z.shape)}."
        )
    b, c = z.shape[:2]
    return z[..., :s].reshape(b, c, radii, dim), z[..., s:].reshape(b, c, *grid)


class HybridSynthesis(HarmonicSynthesis):
    """``(B, L, S*M + G)`` -> feature map: varying channels rendered from their coefficients, invariant ones as held.

    Args:
        mask: a callable returning the ``(L,)`` ALD mask of the forward pass (``ALD.mask``; deterministic: the
            hybrid latent needs the straight-through gate).  Kept as a plain attribute, not a submodule, so the
            network's ``ald`` is not registered twice.
        map_stride: as :class:`HybridAnalysis`; a pooled map is brought back to the latent grid by nearest
            upsampling (the decoder's convolutions that follow refine it).
        other arguments: as :class:`HarmonicSynthesis`.
    """

    def __init__(self, *args, mask=None, map_stride: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if mask is None or not callable(mask):
            raise ValueError("HybridSynthesis needs mask, a callable returning the (L,) ALD mask.")
        self.mask = mask
        self.map_shape = map_shape(self.latent_shape, map_stride)
        self.map_stride = int(map_stride)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coeff, feat = _hybrid_views(z, self.radii, self.basis.shape[0], self.map_shape)
        if self.map_stride > 1:
            feat = F.interpolate(feat, scale_factor=self.map_stride, mode="nearest")
        m = self.mask().to(z.dtype).view(1, -1, *([1] * self.spatial_dims))
        return m * super().forward(coeff) + (1 - m) * feat


class HybridAction(nn.Module):
    """The rotation on a hybrid latent: ``rho(R)`` on the coefficients (exact), the grid rotation on the map view.

    The decoder reads the map only where the channel is invariant, which the action leaves unchanged, so every
    group law holds exactly for what is decoded; the map view of a varying channel is rotated on its grid (lossy)
    only so that the latent losses compare like with like on both views.

    Args:
        spatial_dims / degree: as :class:`HarmonicAction`.
        radii / map_shape: the layout of the latent (see :class:`HybridAnalysis`; ``map_shape`` is the grid of the
            map view, the latent grid divided by ``harmonic_map_stride``).
    """

    def __init__(self, spatial_dims: int, degree: int, radii: int, map_shape: Sequence[int]) -> None:
        super().__init__()
        self.harmonic = HarmonicAction(spatial_dims, degree)
        self.grid = GridRotation(spatial_dims)
        self.radii, self.map_shape = int(radii), tuple(int(n) for n in map_shape)

    def forward(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        coeff, feat = _hybrid_views(z, self.radii, self.harmonic.dim, self.map_shape)
        coeff = self.harmonic(coeff, rotation)
        feat = self.grid(feat, rotation.to(z.dtype).expand(z.shape[0], -1, -1))  # affine_grid: one matrix per image
        return torch.cat([coeff.flatten(2), feat.flatten(2)], -1)

    def extra_repr(self) -> str:
        return f"radii={self.radii}, map_shape={self.map_shape}"
