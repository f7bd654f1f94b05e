"""Synthetic adrenal-like shapes written in the AdrenalMNIST3D npz format (the embedded default of the 3D bundle).

AdrenalMNIST3D (MedMNIST v2 / MedMNIST+) holds smoothed 3D shape masks of adrenal glands: thin, bent plates whose
axial cross-sections look like a Y, a V or a lambda, labelled normal (0) or mass (1).  The real archive is
downloaded from a host these machines cannot reach, so the bundle trains by default on shapes drawn here:

- a field of view of 64 mm (1 mm voxels at ``size=64``, 64/28 mm at ``size=28``), the shape centred;
- a Y, V or lambda skeleton of 2-3 bent limbs in a plane, extruded to a thin plate (2.5-4.5 mm thick, 16-28 mm
  high, rounded at the top and bottom, bent along its height);
- class 1 adds a rounded mass (an ellipsoid of 4.5-8 mm radius) on one limb;
- a random (Haar) orientation, random sizes; the shape is scaled, if needed, to stay inside the sphere inscribed
  in the cube (so no rotation about the centre cuts it);
- occupancy rendered with partial volume (dense point splatting), slightly blurred (Gaussian, 0.6 mm), stored as
  ``uint8`` 0..255.

:func:`make_synthetic_adrenal` writes ``train_images, train_labels, val_images, val_labels, test_images,
test_labels`` exactly like the MedMNIST file (images ``uint8 (N, S, S, S)``, labels ``uint8 (N, 1)``), atomically.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from monai_galr.data.io import atomic_output
from monai_galr.groups import random_rotation

__all__ = [
    "FIELD_OF_VIEW_MM",
    "make_synthetic_adrenal",
    "make_synthetic_backgrounds",
    "save_synthetic_adrenal_nifti",
    "synthetic_adrenal_volume",
    "synthetic_anatomy_background",
]

logger = logging.getLogger("monai_galr.data")

FIELD_OF_VIEW_MM = 64.0
_STEP_MM = 0.45  # spacing of the splatted points (about 11 points per mm^3)
_MARGIN_MM = 3.0  # kept between the shape and the inscribed sphere (blur and interpolation)


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _limbs(rng: np.random.Generator) -> list[tuple[np.ndarray, float, float, float]]:
    """In-plane skeleton: a list of ``(start (2,), direction angle, length mm, curvature)`` limbs."""
    kind = rng.choice(["Y", "V", "lambda"])
    spread = rng.uniform(0.35, 0.75)  # half-angle between the two arms (radians)
    arm = lambda: rng.uniform(16.0, 26.0)  # noqa: E731
    bend = lambda: rng.uniform(-0.25, 0.25)  # noqa: E731
    origin = np.zeros(2)
    limbs = [(origin, math.pi / 2 + spread, arm(), bend()), (origin, math.pi / 2 - spread, arm(), bend())]
    if kind == "Y":  # a body (stem) below the junction
        limbs.append((origin, -math.pi / 2 + rng.uniform(-0.3, 0.3), rng.uniform(6.0, 12.0), bend()))
    elif kind == "lambda":  # one long limb through the junction, one short arm
        limbs[0] = (origin, limbs[0][1], limbs[0][2] * 0.55, limbs[0][3])
        limbs.append((origin, -math.pi / 2 - spread, rng.uniform(8.0, 14.0), bend()))
    return limbs


def _plate_points(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Points filling the plate (``(P, 3)`` mm, local frame) and candidate mass sites ``(centre, limb thickness)``."""
    height = rng.uniform(16.0, 28.0)
    bend_w = rng.uniform(-0.02, 0.02)  # the plate curves along its height: u-shift = bend_w * w^2
    pts, sites = [], []
    w_axis = np.arange(-height / 2, height / 2 + 1e-9, _STEP_MM)
    for start, angle, length, curv in _limbs(rng):
        d = np.array([math.cos(angle), math.sin(angle)])
        nrm = np.array([-d[1], d[0]])
        thick0 = rng.uniform(2.5, 4.5)
        s = np.arange(0.0, 1.0 + 1e-9, _STEP_MM / length)
        # the skeleton curve and its in-plane normal (quadratic bend)
        centre = start[None] + (s * length)[:, None] * d[None] + (curv * length * s * s)[:, None] * nrm[None]
        tangent = d[None] + (2 * curv * s)[:, None] * nrm[None]
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        thick = thick0 * (1.0 - 0.35 * s)  # limbs taper towards their tips
        for wi in w_axis:
            # rounded outline: the limb is shorter near the top and bottom of the plate
            keep = s <= math.sqrt(max(0.0, 1.0 - (2 * wi / height) ** 2)) + 1e-9
            if not np.any(keep):
                continue
            c, n, t = centre[keep], normal[keep], thick[keep]
            offs = np.arange(-t.max() / 2, t.max() / 2 + 1e-9, _STEP_MM)
            inside = np.abs(offs)[None, :] <= t[:, None] / 2
            uv = c[:, None, :] + offs[None, :, None] * n[:, None, :]
            uv = uv[inside]
            shift = np.array([1.0, 0.0]) * bend_w * wi * wi
            pts.append(np.concatenate([uv + shift, np.full((len(uv), 1), wi)], 1))
        for frac in (0.5, 0.7, 0.9):
            k = min(int(round(frac * (len(s) - 1))), len(s) - 1)
            sites.append((np.array([centre[k][0], centre[k][1], 0.0]), float(thick[k])))  # at w = 0 (no bend shift)
    return np.concatenate(pts, 0), sites


def _splat(points_vox: np.ndarray, size: int, weight: float) -> np.ndarray:
    """Tri-linear splatting of points (voxel coordinates) into a ``(size,)*3`` occupancy grid."""
    p = np.clip(points_vox, 0.0, size - 1.0)  # the shapes lie inside the inscribed sphere: a no-op safeguard
    base = np.minimum(np.floor(p).astype(np.int64), size - 2)
    frac = p - base
    n = size
    flat0 = (base[:, 0] * n + base[:, 1]) * n + base[:, 2]
    wx, wy, wz = ((1.0 - frac[:, i], frac[:, i]) for i in range(3))
    grid = np.zeros(n**3, dtype=np.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            wxy = wx[dx] * wy[dy] * weight
            for dz in (0, 1):
                grid += np.bincount(flat0 + (dx * n + dy) * n + dz, weights=wxy * wz[dz], minlength=n**3)
    return grid.reshape(n, n, n)


def synthetic_adrenal_volume(rng: np.random.Generator, size: int = 64, mass: bool = False) -> np.ndarray:
    """Draw one adrenal-like shape.

    Args:
        rng: a numpy ``Generator`` (the only source of randomness).
        size: edge of the cubic grid; the field of view is always 64 mm (voxel size ``64 / size`` mm).
        mass: add a rounded mass on one limb (class 1).

    Returns:
        ``uint8 (size, size, size)`` volume, 0 outside, up to 255 inside the shape.

    Raises:
        ValueError: ``size`` is not an int >= 8.
    """
    size = _check_int(size, "size", 8)
    vox = FIELD_OF_VIEW_MM / size
    pts, sites = _plate_points(rng)
    centre_mass = None
    if mass:
        site, thick = sites[int(rng.integers(len(sites)))]
        radius = rng.uniform(4.5, 8.0) * np.array([1.0, rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1)])
        centre_mass = site + rng.uniform(-0.3, 0.3) * thick
        lo, hi = -radius, radius
        axes = [np.arange(a, b + 1e-9, _STEP_MM) for a, b in zip(lo, hi)]
        ball = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        ball = ball[np.sum((ball / radius) ** 2, 1) <= 1.0]
        pts = np.concatenate([pts, ball + centre_mass], 0)
    # centre the shape, scale it into the inscribed sphere, orient it at random
    lo, hi = pts.min(0), pts.max(0)
    pts = pts - (lo + hi) / 2
    limit = FIELD_OF_VIEW_MM / 2 - _MARGIN_MM
    r_max = float(np.sqrt((pts**2).sum(1)).max())
    scale = min(1.0, limit / r_max) * rng.uniform(0.85, 1.0)
    pts = pts * scale
    pts = pts @ random_rotation(1, 3, generator=rng, dtype=torch.float64)[0].numpy().T  # Haar
    coords = (pts + FIELD_OF_VIEW_MM / 2) / vox - 0.5  # mm -> voxel index, grid centre at (size - 1) / 2
    occ = _splat(coords, size, (_STEP_MM * scale) ** 3 / vox**3)
    occ = np.clip(occ, 0.0, 1.0)
    occ = gaussian_filter(occ, sigma=0.6 / vox, mode="constant")
    return np.clip(np.round(occ / max(occ.max(), 1e-6) * 255.0), 0, 255).astype(np.uint8)


def make_synthetic_adrenal(
    path: str | os.PathLike, n_train: int = 1188, n_val: int = 98, n_test: int = 298, size: int = 64, seed: int = 0,
    mass_fraction: float = 0.5,
) -> str:
    """Write a synthetic AdrenalMNIST3D-format npz (see the module docstring) to ``path``, atomically.

    Args:
        path: the output file (its folder is created); written to a temporary file first, then moved.
        n_train / n_val / n_test: volumes per split, each >= 1 (defaults: the official split sizes 1188 / 98 / 298).
        size: cube edge (64 for the ``_64`` file, 28 for the small one, any int >= 8 for tests).
        seed: seed of ``np.random.default_rng``; the same arguments give the same file.
        mass_fraction: probability of class 1 (mass) per volume.

    Returns:
        the path written.

    Raises:
        ValueError: a split size < 1 (the loader rejects empty splits), ``size`` < 8, a negative seed or
            ``mass_fraction`` outside [0, 1].
        OSError: the output folder cannot be created or written (raised before any volume is drawn).

    Example::

        >>> make_synthetic_adrenal("/tmp/adrenal/adrenalmnist3d_16.npz", 8, 4, 4, size=16, seed=0)
        '/tmp/adrenal/adrenalmnist3d_16.npz'
    """
    counts = {
        "train": _check_int(n_train, "n_train", 1),
        "val": _check_int(n_val, "n_val", 1),
        "test": _check_int(n_test, "n_test", 1),
    }
    size = _check_int(size, "size", 8)
    seed = _check_int(seed, "seed", 0)
    if isinstance(mass_fraction, bool) or not isinstance(mass_fraction, (int, float)) or not 0 <= mass_fraction <= 1:
        raise ValueError(f"mass_fraction must be a number in [0, 1], got {mass_fraction!r}.")
    path = os.fspath(path)
    # the output file is opened first, so an unwritable folder fails at once, not after minutes of drawing
    with atomic_output(path, prefix=".adrenal-", suffix=".npz.tmp") as tmp:
        rng = np.random.default_rng(seed)
        arrays = {}
        for split, n in counts.items():
            labels = (rng.random(n) < mass_fraction).astype(np.uint8)
            images = np.zeros((n, size, size, size), dtype=np.uint8)
            for i in range(n):
                images[i] = synthetic_adrenal_volume(rng, size, mass=bool(labels[i]))
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez_compressed(f, **arrays)
    logger.info("wrote synthetic adrenal set %s (%s, %d^3, seed %d)", path, counts, size, seed)
    return path


def save_synthetic_adrenal_nifti(path: str | os.PathLike, size: int = 64, seed: int = 0, mass: bool = True) -> str:
    """Draw one synthetic volume and save it as NIfTI (float32 in [0, 1], voxel size ``64 / size`` mm), atomically.

    Used as the default input of the inference config.  An existing file is kept (same arguments, same volume).

    Args:
        path: output file (``.nii`` or ``.nii.gz``); its folder is created.
        size: cube edge.
        seed: seed of the draw.
        mass: draw a class-1 shape (with a mass).

    Returns:
        ``path``.
    """
    import nibabel as nib

    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    vol = synthetic_adrenal_volume(np.random.default_rng(_check_int(seed, "seed", 0)), size, mass=mass)
    suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
    with atomic_output(path, prefix=".synthetic-", suffix=suffix) as tmp:
        affine = np.diag([FIELD_OF_VIEW_MM / size] * 3 + [1.0])
        nib.save(nib.Nifti1Image(vol.astype(np.float32) / np.float32(255.0), affine), tmp)
    return path


def synthetic_anatomy_background(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Fixed surrounding anatomy for the localized-action overlay: ``(layer, mask)``, float32 ``(S, S, S)`` in [0, 1].

    Three soft structures in the same 64 mm field of view as the shapes, placed around the centre (where the
    adrenal shape rotates) so that they overlap its outer part: a kidney-like ellipsoid (intensity 0.55) on one
    side, a vessel (a cylinder along the third axis, 0.75) on another, a vertebra-like ellipsoid (0.4) behind.
    ``mask`` is the occupancy (where the background shows), ``layer`` the intensity there; the model input is
    ``mask * layer + (1 - mask) * shape`` (:func:`monai_galr.transforms.composite`), the background does not rotate.
    """
    size = _check_int(size, "size", 8)
    vox = FIELD_OF_VIEW_MM / size
    c = (np.arange(size) + 0.5) * vox - FIELD_OF_VIEW_MM / 2
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    side = rng.choice([-1.0, 1.0])
    structures = []
    # kidney: ellipsoid at 20-24 mm from the centre
    kc = (side * rng.uniform(20.0, 24.0), rng.uniform(-6.0, 6.0), rng.uniform(-6.0, 6.0))
    kr = (rng.uniform(7.0, 9.0), rng.uniform(10.0, 13.0), rng.uniform(14.0, 18.0))
    structures.append((((x - kc[0]) / kr[0]) ** 2 + ((y - kc[1]) / kr[1]) ** 2 + ((z - kc[2]) / kr[2]) ** 2 <= 1, 0.55))
    # vessel: a cylinder along the third axis, on the other side
    vc = (-side * rng.uniform(12.0, 18.0), rng.choice([-1.0, 1.0]) * rng.uniform(14.0, 20.0))
    structures.append(((x - vc[0]) ** 2 + (y - vc[1]) ** 2 <= rng.uniform(4.0, 6.0) ** 2, 0.75))
    # vertebra-like body behind, elongated along the third axis
    sc = (rng.uniform(-4.0, 4.0), -np.sign(vc[1]) * rng.uniform(22.0, 26.0), 0.0)
    structures.append((((x - sc[0]) / 9.0) ** 2 + ((y - sc[1]) / 7.0) ** 2 + ((z - sc[2]) / 40.0) ** 2 <= 1, 0.4))
    occ = np.stack([gaussian_filter(inside.astype(np.float32), sigma=0.8 / vox, mode="nearest") for inside, _ in structures])
    values = np.asarray([v for _, v in structures], dtype=np.float32)
    mask = np.clip(occ.max(0), 0.0, 1.0)
    layer = np.where(mask > 0, values[occ.argmax(0)], 0.0).astype(np.float32)
    return layer, mask.astype(np.float32)


def make_synthetic_backgrounds(path: str | os.PathLike, num_backgrounds: int = 4, size: int = 64, seed: int = 0) -> str:
    """Write ``num_backgrounds`` fixed anatomy backgrounds to an npz, atomically: ``backgrounds`` (intensity layers)
    and ``background_masks`` (occupancy), both ``uint8 (K, S, S, S)`` 0..255 like the MedMNIST images.

    The companion of an AdrenalMNIST3D-format file of the same cube edge (synthetic or real): each volume is given a
    background index by :func:`monai_galr.transforms.attach_background_ids` and composited by the engine.

    Raises:
        ValueError: ``num_backgrounds`` < 1, ``size`` < 8 or a negative seed.
    """
    k = _check_int(num_backgrounds, "num_backgrounds", 1)
    size = _check_int(size, "size", 8)
    rng = np.random.default_rng(_check_int(seed, "seed", 0))
    path = os.fspath(path)
    with atomic_output(path, prefix=".backgrounds-", suffix=".npz.tmp") as tmp:
        layers = np.zeros((k, size, size, size), np.uint8)
        masks = np.zeros((k, size, size, size), np.uint8)
        for i in range(k):
            layer, mask = synthetic_anatomy_background(rng, size)
            layers[i] = np.round(layer * 255.0).astype(np.uint8)
            masks[i] = np.round(mask * 255.0).astype(np.uint8)
        with open(tmp, "wb") as f:
            np.savez_compressed(f, backgrounds=layers, background_masks=masks)
    logger.info("wrote %d synthetic anatomy backgrounds %s (%d^3, seed %d)", k, path, size, seed)
    return path
