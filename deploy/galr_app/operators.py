"""The deploy app's steps as plain classes (no MONAI Deploy App SDK needed): load, infer, write.

- :class:`NiftiVolumeLoader`: a NIfTI file -> a ``(1, C, *spatial_shape)`` tensor in [0, 1] on the network grid
  (longest side resized to the grid, then padded / cropped, as the bundles' inference configs do), with its affine;
- :class:`GalrInference`: runs a TorchScript file written by :mod:`export` (``encode``, ``split``,
  ``apply_action``, ``decode``): the rotated prediction ``decode(Phi_R(encode(x)))``, the identity reconstruction
  and the per-channel spatial means of the split latent (``z_v``: varying channels, ``z_i``: invariant ones);
- :class:`ResultWriter`: writes the prediction as NIfTI and the features as JSON, each atomically.

``app.py`` chains them, with MONAI Deploy App SDK operator wrappers when the SDK can be imported.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["GalrInference", "NiftiVolumeLoader", "ResultWriter", "rotation_matrix", "volume_stem"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def volume_stem(path: str | os.PathLike) -> str:
    """``case.nii.gz`` -> ``case``."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def rotation_matrix(
    spatial_dims: int, euler: Sequence[float] | None = None, angle: float | None = None, convention: str = "ZYX"
) -> np.ndarray:
    """The ``(d, d)`` rotation of intrinsic Euler angles (3D, degrees) or an angle (2D, degrees); identity if none.

    Same conventions as the bundles' inference configs (``monai_galr.transforms.GroupElement``).
    """
    from monai_galr.transforms import GroupElement

    if euler is not None and angle is not None:
        raise ValueError(f"give euler or angle, not both (got euler={euler!r}, angle={angle!r}).")
    if spatial_dims == 3 and angle is not None:
        raise ValueError(f"a 3D model takes Euler angles (--euler), got angle={angle!r}.")
    if spatial_dims == 2 and euler is not None:
        raise ValueError(f"a 2D model takes one angle (--angle), got euler={euler!r}.")
    return np.asarray(GroupElement(spatial_dims, angle=angle, euler=euler, convention=convention)(), np.float32)


class NiftiVolumeLoader:
    """Read one NIfTI volume onto the network grid.

    Args:
        spatial_shape: the network input's spatial shape (``galr_deploy.json`` of the exported model).

    ``__call__(path)`` returns ``(image, affine)``: ``image`` ``float32 (1, 1, *spatial_shape)`` scaled to [0, 1],
    ``affine`` the ``(4, 4)`` voxel-to-world matrix of that grid (the input's, updated by the resize and pad).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a NIfTI file, cannot be read (truncated, ...), holds NaN / inf voxels, or the
            volume has more than one channel or another number of spatial dimensions (the message names the file).
    """

    def __init__(self, spatial_shape: Sequence[int]) -> None:
        from monai.transforms import Compose, EnsureChannelFirst, Resize, ResizeWithPadOrCrop, ScaleIntensity

        from monai_galr.transforms import LoadCheckedImage

        self.spatial_shape = [int(s) for s in spatial_shape]
        self.transform = Compose(
            [
                # names the file when it is unreadable / truncated, not len(spatial_shape)-D, or holds NaN voxels
                LoadCheckedImage(image_only=True, reader="NibabelReader", spatial_dims=len(self.spatial_shape)),
                EnsureChannelFirst(),
                ScaleIntensity(minv=0.0, maxv=1.0),
                Resize(spatial_size=max(self.spatial_shape), size_mode="longest", mode="area"),
                ResizeWithPadOrCrop(spatial_size=self.spatial_shape),
            ]
        )

    def __call__(self, path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"input volume {str(path)!r} does not exist.")
        if not path.name.endswith(NIFTI_SUFFIXES):
            raise ValueError(f"input volume {str(path)!r} is not a NIfTI file ({', '.join(NIFTI_SUFFIXES)}).")
        try:
            img = self.transform(str(path))
        except RuntimeError as e:  # MONAI's Compose wraps the loader's error: report the loader's
            raise (e.__cause__ if isinstance(e.__cause__, (ValueError, FileNotFoundError)) else e) from None
        if img.ndim != len(self.spatial_shape) + 1 or img.shape[0] != 1:
            raise ValueError(
                f"input volume {str(path)!r} must be a one-channel {len(self.spatial_shape)}D image, "
                f"got an array of shape {tuple(img.shape)} after loading."
            )
        affine = np.asarray(img.affine, np.float64) if hasattr(img, "affine") else np.eye(4)
        data = torch.as_tensor(np.asarray(img), dtype=torch.float32)
        return data[None], affine


class GalrInference:
    """Rotate an image in latent space with an exported model and read out the split latent.

    Args:
        model_path: a TorchScript file written by ``export.export_deploy_module``.
        device: ``"cpu"`` (default) or a CUDA device.

    Attributes:
        info: the embedded ``galr_deploy.json`` (``spatial_dims``, ``spatial_shape``, ``latent_channels``, ...).
        metadata: the embedded bundle ``metadata.json``.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the file is not a deploy export (no ``galr_deploy.json`` or a missing method).
    """

    def __init__(self, model_path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        from .export import DEPLOY_FILE, DEPLOY_METHODS

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
        extra = {DEPLOY_FILE: "", "metadata.json": ""}
        self.device = torch.device(device)
        self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra).eval()
        if not extra[DEPLOY_FILE]:
            raise ValueError(
                f"model file {str(path)!r} has no embedded {DEPLOY_FILE}: export it with "
                "deploy/galr_app/export.py (a ckpt_export / exporting_rotated file holds forward() only)."
            )
        self.info = json.loads(extra[DEPLOY_FILE])
        self.metadata = json.loads(extra["metadata.json"]) if extra["metadata.json"] else {}
        missing = [m for m in DEPLOY_METHODS if not hasattr(self.module, m)]
        if missing:
            raise ValueError(f"model file {str(path)!r} lacks the traced methods {missing}.")
        self.spatial_dims = int(self.info["spatial_dims"])
        self.spatial_shape = [int(s) for s in self.info["spatial_shape"]]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, rotation: np.ndarray | torch.Tensor) -> dict[str, Any]:
        """Run the model on ``image`` ``(1, C, *spatial_shape)`` with ``rotation`` ``(d, d)``.

        Returns:
            ``pred`` (the rotated prediction), ``identity`` (the reconstruction with ``R = I``), both
            ``(1, C_out, *spatial_shape)`` on the CPU, and ``features``: ``mask`` (1 marks a varying channel),
            ``varying_channels`` / ``invariant_channels``, ``z_v_mean`` / ``z_i_mean`` (spatial means of those
            channels of ``z``), ``z_v_rms`` / ``z_i_rms`` (root mean squares over the split parts) and
            ``latent_shape``.

        Raises:
            ValueError: ``image`` or ``rotation`` has the wrong shape.
        """
        d = self.spatial_dims
        expected = (1, int(self.info["in_channels"]), *self.spatial_shape)
        if not torch.is_tensor(image) or tuple(image.shape) != expected:
            got = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
            raise ValueError(f"image must have shape {expected} (the exported grid), got {got}.")
        r = torch.as_tensor(np.asarray(rotation), dtype=torch.float32)
        if r.shape == (d, d):
            r = r[None]
        if tuple(r.shape) != (1, d, d):
            raise ValueError(f"rotation must be a ({d}, {d}) matrix, got shape {tuple(r.shape)}.")
        x, r = image.to(self.device, torch.float32), r.to(self.device)
        z = self.module.encode(x)
        z_v, z_i = self.module.split(z)
        mask = self.module.split(torch.ones_like(z))[0].flatten(2)[0, :, 0]
        pred = self.module.decode(self.module.apply_action(z, r))
        identity = self.module.decode(z)
        mask_np = mask.cpu().numpy() > 0.5
        means = z.flatten(2).mean(-1)[0].cpu().numpy()
        varying = [int(i) for i in np.flatnonzero(mask_np)]
        invariant = [int(i) for i in np.flatnonzero(~mask_np)]
        features = {
            "latent_shape": [int(s) for s in z.shape[1:]],
            "mask": [int(v) for v in mask_np],
            "varying_channels": varying,
            "invariant_channels": invariant,
            "z_v_mean": [float(means[i]) for i in varying],
            "z_i_mean": [float(means[i]) for i in invariant],
            "z_v_rms": float(z_v.pow(2).mean().sqrt()),
            "z_i_rms": float(z_i.pow(2).mean().sqrt()),
        }
        return {"pred": pred.cpu(), "identity": identity.cpu(), "features": features}


def _atomic_write(path: Path, write, suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (ending in ``suffix``), then move it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".part{suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


class ResultWriter:
    """Write ``<stem>_pred_<tag>.nii.gz`` (and the preprocessed input) plus ``<stem>_features.json``, atomically.

    Args:
        output_dir: folder for the results (created).
        save_input: also write ``<stem>_input.nii.gz``, the volume on the network grid.
    """

    def __init__(self, output_dir: str | os.PathLike, save_input: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.save_input = save_input

    @staticmethod
    def _nifti(array: torch.Tensor, affine: np.ndarray, path: Path) -> Path:
        import nibabel as nib

        data = np.asarray(array[0, 0].cpu().numpy(), np.float32)
        return _atomic_write(path, lambda tmp: nib.save(nib.Nifti1Image(data, affine), tmp), suffix=".nii.gz")

    def __call__(
        self, stem: str, image: torch.Tensor, affine: np.ndarray, result: dict[str, Any], record: dict[str, Any]
    ) -> dict[str, str]:
        """Write the files of one volume; ``record`` (input, rotation, model) goes into the JSON with the features.

        Returns:
            the written paths by role (``prediction``, ``input``, ``features``).
        """
        tag = record.get("rotation_tag", "rot")
        paths = {"prediction": str(self._nifti(result["pred"], affine, self.output_dir / f"{stem}_pred_{tag}.nii.gz"))}
        if self.save_input:
            paths["input"] = str(self._nifti(image, affine, self.output_dir / f"{stem}_input.nii.gz"))
        doc = {**record, "outputs": dict(paths), **result["features"]}
        features = self.output_dir / f"{stem}_features.json"
        _atomic_write(features, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2, sort_keys=True)))
        paths["features"] = str(features)
        return paths
