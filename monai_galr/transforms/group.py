"""Sample or set a group element (an SO(2)/SO(3) rotation) in the data dict, under the key ``"rotation"``.

The transforms only *choose* the element: a ``float32 (d, d)`` numpy matrix acting on array-index coordinates
(see :mod:`monai_galr.groups`).  The image-space action is applied later, batched on the device, by the engine.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Transform

from monai_galr.groups import (
    angle_to_matrix,
    axis_angle_to_matrix,
    euler_to_matrix,
    identity,
    quaternion_to_rotation_matrix,
    random_quaternion,
    snap_exact,
    validate_rotation,
)
from monai_galr.utils import check_spatial_dims

__all__ = [
    "GroupElement",
    "GroupElementD",
    "GroupElementDict",
    "GroupElementd",
    "RandGroupElement",
    "RandGroupElementD",
    "RandGroupElementDict",
    "RandGroupElementd",
]

ANGLE_OPTIONS = ("uniform", "c4")


def _vector(value: Any, n: int, name: str) -> torch.Tensor:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be {n} numbers, got {value!r}.") from e
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be {n} finite numbers, got {value!r} (shape {arr.shape}).")
    return torch.as_tensor(arr)[None]


class GroupElement(Transform):
    """A fixed group element, given as an angle (2D), axis-angle or Euler angles (3D), or a matrix.

    At most one of ``angle``, ``axis_angle``, ``euler``, ``matrix`` may be given; none means the identity.
    Calling the transform returns the ``float32 (d, d)`` numpy matrix (any input is ignored, so it composes).

    Args:
        spatial_dims: 2 (SO(2)) or 3 (SO(3)).
        angle: SO(2) angle; positive turns axis H towards axis W (the direction of ``torch.rot90(k=1)``).
        axis_angle: SO(3) axis-angle vector ``(3,)`` (direction = axis, norm = angle).
        euler: SO(3) intrinsic Euler angles ``(3,)`` in ``convention`` (see :func:`monai_galr.groups.euler_to_matrix`).
        matrix: a ``(d, d)`` proper rotation (orthonormal within 1e-3, det +1; re-orthonormalized here, so rounded
            entries such as 0.7071 are fine).
        degrees: angles (``angle``, the norm of ``axis_angle``, ``euler``) are in degrees (default) or radians.
        convention: Euler convention, default ``"ZYX"``.

    Raises:
        ValueError: bad ``spatial_dims``, several parameters at once, a parameter of the other group, wrong sizes,
            or a ``matrix`` that is not a proper rotation.

    Example::

        >>> GroupElement(2, angle=90)()
        array([[ 0., -1.],
               [ 1.,  0.]], dtype=float32)
    """

    def __init__(
        self, spatial_dims: int, angle: float | None = None, axis_angle: Sequence[float] | None = None,
        euler: Sequence[float] | None = None, matrix: Sequence[Sequence[float]] | np.ndarray | None = None,
        degrees: bool = True, convention: str = "ZYX",
    ) -> None:
        d = check_spatial_dims(spatial_dims)
        given = {k: v for k, v in (("angle", angle), ("axis_angle", axis_angle), ("euler", euler), ("matrix", matrix))}
        given = {k: v for k, v in given.items() if v is not None}
        if len(given) > 1:
            raise ValueError(f"give at most one of angle, axis_angle, euler, matrix; got {sorted(given)}.")
        if not isinstance(degrees, bool):
            raise TypeError(f"degrees must be a bool, got {type(degrees).__name__}.")
        scale = math.pi / 180.0 if degrees else 1.0
        if angle is not None:
            if d != 2:
                raise ValueError("angle defines an SO(2) element; for spatial_dims=3 use axis_angle or euler.")
            if isinstance(angle, bool) or not isinstance(angle, (int, float, np.integer, np.floating)):
                raise TypeError(f"angle must be a number, got {type(angle).__name__}.")
            if not math.isfinite(float(angle)):
                raise ValueError(f"angle must be finite, got {angle}.")
            m = angle_to_matrix(torch.tensor([float(angle) * scale], dtype=torch.float64))
        elif axis_angle is not None or euler is not None:
            name = "axis_angle" if axis_angle is not None else "euler"
            if d != 3:
                raise ValueError(f"{name} defines an SO(3) element; for spatial_dims=2 use angle.")
            v = _vector(given[name], 3, name) * scale
            m = axis_angle_to_matrix(v) if name == "axis_angle" else euler_to_matrix(v, convention=convention)
        elif matrix is not None:
            try:
                arr = np.asarray(matrix, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TypeError(f"matrix must be a ({d}, {d}) array of numbers, got {matrix!r}.") from e
            if arr.shape != (d, d):
                raise ValueError(f"matrix must have shape ({d}, {d}) for spatial_dims={d}, got {arr.shape}.")
            validate_rotation(torch.as_tensor(arr, dtype=torch.float32)[None], dim=d, name="matrix")
            u, _, vt = np.linalg.svd(arr)  # the nearest exact rotation (polar factor) of a rounded config matrix
            m = torch.as_tensor(u @ vt)[None]
        else:
            m = identity(1, d, dtype=torch.float64)
        self.spatial_dims = d
        self.matrix = snap_exact(m[0].numpy()).astype(np.float32)

    def __call__(self, data: Any = None) -> np.ndarray:
        """Return a copy of the configured ``float32 (d, d)`` rotation matrix."""
        return self.matrix.copy()


class GroupElementd(MapTransform):
    """Dictionary version of :class:`GroupElement`: write the configured element under each of ``keys``.

    Args:
        keys: the output key(s), default ``"rotation"`` (created or overwritten).
        spatial_dims, angle, axis_angle, euler, matrix, degrees, convention: see :class:`GroupElement`.
        allow_missing_keys: unused (the keys are outputs); kept for the MONAI signature.
    """

    def __init__(
        self, keys: KeysCollection = "rotation", spatial_dims: int = 2, angle: float | None = None,
        axis_angle: Sequence[float] | None = None, euler: Sequence[float] | None = None,
        matrix: Sequence[Sequence[float]] | np.ndarray | None = None, degrees: bool = True, convention: str = "ZYX",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.element = GroupElement(spatial_dims, angle, axis_angle, euler, matrix, degrees, convention)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            d[key] = self.element()
        return d


class RandGroupElement(RandomizableTransform):
    """Sample a random group element.

    SO(2), ``angles="uniform"``: an angle uniform in [0, 2*pi); ``angles="c4"``: a multiple of 90 degrees (matrix
    entries exactly 0 / +-1).  SO(3): Haar-uniform (a normalized Gaussian quaternion).  Sampling uses ``self.R``
    (seed it with ``set_random_state``); with probability ``1 - prob`` the identity is returned.  The sampled
    parameters are kept in ``self.angle`` (SO(2), radians) or ``self.quaternion`` (SO(3), ``(w, x, y, z)``).

    Args:
        spatial_dims: 2 (SO(2)) or 3 (SO(3)).
        angles: ``"uniform"`` or ``"c4"`` (SO(2) only).
        prob: probability of sampling a rotation instead of returning the identity.

    Raises:
        ValueError: bad ``spatial_dims``, unknown ``angles``, ``"c4"`` in 3D, or ``prob`` outside [0, 1].

    Example::

        >>> r = RandGroupElement(2).set_random_state(0)()
        >>> r.shape, r.dtype
        ((2, 2), dtype('float32'))
    """

    def __init__(self, spatial_dims: int, angles: str = "uniform", prob: float = 1.0) -> None:
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if angles not in ANGLE_OPTIONS:
            raise ValueError(f"angles must be one of {ANGLE_OPTIONS}, got {angles!r}.")
        if angles == "c4" and self.spatial_dims != 2:
            raise ValueError(f"angles='c4' (multiples of 90 degrees) needs spatial_dims=2, got {spatial_dims}.")
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be a number in [0, 1], got {prob!r}.")
        super().__init__(prob)
        self.angles = angles
        self.angle: float | None = None
        self.quaternion: np.ndarray | None = None

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.angle, self.quaternion = None, None
        if not self._do_transform:
            return
        if self.spatial_dims == 2:
            if self.angles == "c4":
                self.angle = float(self.R.randint(0, 4)) * (math.pi / 2)
            else:
                self.angle = float(self.R.uniform(0.0, 2 * math.pi))
        else:
            self.quaternion = random_quaternion(1, self.R)[0].numpy()

    def __call__(self, data: Any = None, randomize: bool = True) -> np.ndarray:
        """Return a ``float32 (d, d)`` rotation (sampled now unless ``randomize=False``)."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return GroupElement(self.spatial_dims)()
        if self.spatial_dims == 2:
            if self.angle is None:
                raise RuntimeError("randomize() must run before __call__(randomize=False).")
            return GroupElement(2, angle=self.angle, degrees=False)()
        if self.quaternion is None:
            raise RuntimeError("randomize() must run before __call__(randomize=False).")
        m = quaternion_to_rotation_matrix(torch.as_tensor(self.quaternion, dtype=torch.float64)[None])[0].numpy()
        return GroupElement(3, matrix=m)()


class RandGroupElementd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandGroupElement`: one sampled element written under each of ``keys``.

    Args:
        keys: the output key(s), default ``"rotation"`` (created or overwritten).
        spatial_dims, angles, prob: see :class:`RandGroupElement`.
        allow_missing_keys: unused (the keys are outputs); kept for the MONAI signature.

    Example::

        >>> t = RandGroupElementd(spatial_dims=3).set_random_state(0)
        >>> t({"label": 3})["rotation"].shape
        (3, 3)
    """

    def __init__(
        self,
        keys: KeysCollection = "rotation",
        spatial_dims: int = 2,
        angles: str = "uniform",
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.sampler = RandGroupElement(spatial_dims, angles, prob)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandGroupElementd:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.sampler.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        m = self.sampler(randomize=False)
        for key in self.keys:
            d[key] = m.copy()
        return d


GroupElementD = GroupElementDict = GroupElementd
RandGroupElementD = RandGroupElementDict = RandGroupElementd
