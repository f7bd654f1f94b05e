"""A small OASIS-style folder made from the real skull-stripped MNI152 brain template shipped inside nilearn.

The brain bundle's embedded default: no download, real anatomy, the same file layout as the OASIS-1 release
(``OASIS_OAS1_000X_MR1/aligned_norm.nii.gz`` and ``subjects.txt``), so the OASIS pipeline runs unchanged on it.
Each "subject" is the masked template (``nilearn.datasets.load_mni152_template`` with
``load_mni152_brain_mask``) under a small random smooth deformation and a random intensity change (gamma,
a smooth multiplicative bias field), rescaled to [0, 1].  It is a demo set, NOT OASIS data: every subject is the
same brain, so numbers on it say nothing about inter-subject variability.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np

from monai_galr.data.io import atomic_output

__all__ = ["DEMO_MANIFEST", "DEMO_NOTE", "ensure_demo_oasis", "make_demo_oasis"]

logger = logging.getLogger("monai_galr.data")

DEMO_MANIFEST = "demo_manifest.json"
DEMO_NOTE = (
    "USING THE DEMO BRAIN SET: subjects derived from the MNI152 template shipped inside nilearn (random smooth "
    "deformations and intensity changes of ONE brain), not OASIS data. Pass dataset_dir (an OASIS-1 root) or "
    "datalist (data_prep/prepare_oasis.py) for real subjects."
)
_DEFAULT_SHAPE = (160, 192, 224)


def _check_args(n_subjects: int, seed: int, shape: Sequence[int], deform_mm: float) -> tuple[int, ...]:
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive int, got {n_subjects!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 8 for s in shape)
    ):
        raise ValueError(f"shape must be 3 ints >= 8, got {shape!r}.")
    if not isinstance(deform_mm, (int, float)) or isinstance(deform_mm, bool) or deform_mm < 0:
        raise ValueError(f"deform_mm must be a non-negative number, got {deform_mm!r}.")
    return tuple(int(s) for s in shape)


def _template(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The masked 1 mm MNI152 brain (RAS) fitted into ``shape``: ``(volume float32 in [0, 1], affine)``.

    The brain's bounding box is cropped and centred; when it does not fit (a reduced ``shape``) it is
    downsampled (Gaussian prefilter + linear interpolation) so that it fills 90% of the tightest axis.
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from scipy import ndimage

    img = load_mni152_template(resolution=1)
    mask = np.asarray(load_mni152_brain_mask(resolution=1).get_fdata()) > 0
    vol = np.asarray(img.get_fdata(), dtype=np.float32) * mask
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0) + 1
    vol = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    box = np.asarray(vol.shape, dtype=np.float64)
    target = np.asarray(shape, dtype=np.float64)
    voxel = np.abs(np.diag(img.affine)[:3]).astype(np.float64)
    fit = float(np.min(target / box))
    scale = 1.0 if fit >= 1.0 else 0.9 * fit
    if scale < 1.0:
        vol = ndimage.gaussian_filter(vol, sigma=0.5 / scale)
        vol = ndimage.zoom(vol, scale, order=1, grid_mode=True, mode="grid-constant")
        voxel = voxel / scale
    out = np.zeros(shape, dtype=np.float32)
    src, dst = [], []
    for n, s in zip(vol.shape, shape):
        if n <= s:
            a = (s - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
        else:
            a = (n - s) // 2
            src.append(slice(a, a + s))
            dst.append(slice(0, s))
    out[tuple(dst)] = vol[tuple(src)]
    out = np.clip(out, 0.0, None)
    out /= max(float(out.max()), 1e-6)
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = -voxel * (np.asarray(shape) - 1) / 2.0  # the grid centre at the origin, RAS
    return out, affine


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], control: int, amplitude: float) -> np.ndarray:
    """A smooth random field ``(shape)``: Gaussian values on a ``control^3`` grid, cubic-upsampled."""
    from scipy import ndimage

    coarse = rng.standard_normal((control,) * 3) * amplitude
    zoom = [s / control for s in shape]
    return ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True).astype(np.float32)[
        : shape[0], : shape[1], : shape[2]
    ]


def _subject(template: np.ndarray, voxel: np.ndarray, rng: np.random.Generator, deform_mm: float) -> np.ndarray:
    from scipy import ndimage

    shape = template.shape
    coords = list(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    for axis in range(3):
        coords[axis] += _smooth_field(rng, shape, 4, deform_mm / float(voxel[axis]))
    vol = ndimage.map_coordinates(template, coords, order=1, mode="constant", cval=0.0).astype(np.float32)
    del coords
    gamma = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    bias = np.exp(_smooth_field(rng, shape, 3, 0.05))
    vol = np.clip(vol, 0.0, 1.0) ** gamma * bias * float(rng.uniform(0.9, 1.0))
    return np.clip(vol / max(float(vol.max()), 1e-6), 0.0, 1.0).astype(np.float32)


def make_demo_oasis(
    out_dir: str | os.PathLike, n_subjects: int = 8, seed: int = 0, shape: Sequence[int] = _DEFAULT_SHAPE,
    deform_mm: float = 2.0,
) -> list[str]:
    """Write an OASIS-style demo folder from nilearn's skull-stripped MNI152 template.

    Writes ``out_dir/OASIS_OAS1_000X_MR1/aligned_norm.nii.gz`` (float32, RAS, in [0, 1]) for X = 1..n,
    ``out_dir/subjects.txt`` (one folder name a line), ``out_dir/README_DEMO.txt`` and ``demo_manifest.json``
    (the settings).  At the default ``shape`` (the OASIS grid, 160x192x224) voxels are 1 mm as in OASIS; a
    smaller ``shape`` holds a downsampled brain.

    Args:
        out_dir: output folder (created; existing files of the same names are replaced, each one atomically,
            so an interrupted run never leaves a half-written file).
        n_subjects: number of subjects.
        seed: subject ``i`` uses ``np.random.default_rng([seed, i])``: the same subject for the same seed.
        shape: the volume grid ``(H, W, D)``, each >= 8.
        deform_mm: standard deviation of the smooth displacement, in mm.

    Returns:
        the written ``aligned_norm.nii.gz`` paths.

    Raises:
        ValueError: a bad ``n_subjects``, ``seed``, ``shape`` or ``deform_mm``.

    Example::

        >>> paths = make_demo_oasis("/tmp/demo", n_subjects=2, shape=(32, 40, 48))
    """
    import nibabel as nib

    shape_t = _check_args(n_subjects, seed, shape, deform_mm)
    os.makedirs(out_dir, exist_ok=True)  # before the (slower) template: an unwritable out_dir fails at once
    template, affine = _template(shape_t)
    voxel = np.abs(np.diag(affine)[:3])
    names, paths = [], []
    for i in range(int(n_subjects)):
        name = f"OASIS_OAS1_{i + 1:04d}_MR1"
        vol = _subject(template, voxel, np.random.default_rng([int(seed), i]), float(deform_mm))
        path = os.path.join(out_dir, name, "aligned_norm.nii.gz")
        with atomic_output(path, prefix=".aligned_norm-", suffix=".nii.gz") as tmp:  # no half-written volume
            nib.save(nib.Nifti1Image(vol, affine), tmp)
        names.append(name)
        paths.append(path)
    with atomic_output(os.path.join(out_dir, "subjects.txt"), suffix=".txt") as tmp, open(tmp, "w") as f:
        f.write("\n".join(names) + "\n")
    with atomic_output(os.path.join(out_dir, "README_DEMO.txt"), suffix=".txt") as tmp, open(tmp, "w") as f:
        f.write(
            "Demo folder in the OASIS-1 (neurite) layout, generated by monai_galr.data.make_demo_oasis.\n"
            "NOT OASIS data: every subject is the MNI152 ICBM 2009a nonlinear symmetric template shipped inside\n"
            "nilearn (skull-stripped with its brain mask) under a small random smooth deformation and intensity\n"
            "change. Template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal\n"
            "Neurological Institute, McGill University (Fonov et al., NeuroImage 2011), used under its licence.\n"
        )
    manifest = {"n_subjects": int(n_subjects), "seed": int(seed), "shape": list(shape_t), "deform_mm": deform_mm}
    with atomic_output(os.path.join(out_dir, DEMO_MANIFEST), suffix=".json") as tmp, open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    return paths


def ensure_demo_oasis(
    cache_dir: str | os.PathLike, n_subjects: int = 8, seed: int = 0, shape: Sequence[int] = _DEFAULT_SHAPE,
    deform_mm: float = 2.0,
) -> str:
    """Build the demo folder in ``cache_dir`` once; later calls with the same settings reuse it.

    The folder is written next to ``cache_dir`` under a temporary name and moved into place, so an interrupted
    build never leaves a half-written cache.  A cache made with other settings (its ``demo_manifest.json``
    differs) is rebuilt; a non-empty ``cache_dir`` without a manifest is never touched (error).

    Returns:
        the absolute path of the demo folder.

    Raises:
        ValueError: bad settings, or ``cache_dir`` is a non-empty folder that is not a demo cache.
    """
    shape_t = _check_args(n_subjects, seed, shape, deform_mm)
    folder = os.path.abspath(os.fspath(cache_dir))
    wanted = {"n_subjects": int(n_subjects), "seed": int(seed), "shape": list(shape_t), "deform_mm": deform_mm}
    manifest = os.path.join(folder, DEMO_MANIFEST)
    if os.path.isdir(folder) and os.listdir(folder):
        if not os.path.isfile(manifest):
            raise ValueError(f"demo cache {folder!r} exists, is not empty and has no {DEMO_MANIFEST}; not touching it.")
        if _matches(manifest, wanted):
            return folder
        logger.warning("demo cache %s was made with other settings; rebuilding it with %s.", folder, wanted)
        shutil.rmtree(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    logger.warning("building the demo brain set (%d subjects, shape %s) in %s ...", n_subjects, shape_t, folder)
    tmp = tempfile.mkdtemp(prefix=".demo_oasis_", dir=parent)
    try:
        make_demo_oasis(tmp, n_subjects=n_subjects, seed=seed, shape=shape_t, deform_mm=deform_mm)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _matches(manifest, wanted):  # another process (a DDP rank) finished first: keep its folder
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _matches(manifest: str, wanted: dict) -> bool:
    if not os.path.isfile(manifest):
        return False
    with open(manifest) as f:
        return json.load(f) == wanted
