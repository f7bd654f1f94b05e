"""A MONAI Label infer task that rotates a volume in the latent space of a monai-galr bundle.

Request parameters (JSON, all angles in degrees; see ``galr_bundle.rotation_from_params``): ``euler`` (three
intrinsic Euler angles; ``convention``, default the bundle's ``euler_convention``, ZYX on the array axes), or
``axis_angle`` (a rotation vector whose norm is the angle), or ``axis`` + ``angle``; none: the identity.

The response: the image ``decode(Phi_R(encode(x)))`` on the bundle's grid (float32 NIfTI, the affine of the
preprocessed input, as the bundle's own ``inferring`` writes it) and a JSON with the rotation, the bundle and the
split-latent summary (ALD ``mask``, ``varying_channels`` / ``invariant_channels``, ``z_v_mean`` / ``z_i_mean``,
``z_v_rms`` / ``z_i_rms``, ``latent_shape``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from galr_bundle import BundleModel, rotation_from_params
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

__all__ = ["GalrRotationInfer", "RotationFromRequestd"]

logger = logging.getLogger(__name__)


class RotationFromRequestd:
    """Write the request's rotation (``float32 (d, d)``) under ``key`` and its record under ``record_key``.

    Raises:
        MONAILabelException: ``INVALID_INPUT`` with the parameter named, for a malformed rotation.
    """

    def __init__(self, spatial_dims: int, convention: str, key: str = "rotation", record_key: str = "rotation_record"):
        self.spatial_dims = spatial_dims
        self.convention = convention
        self.key = key
        self.record_key = record_key

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            matrix, record = rotation_from_params(data, self.spatial_dims, self.convention)
        except (TypeError, ValueError) as e:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"bad rotation parameters: {e}") from e
        data[self.key] = matrix
        data[self.record_key] = record
        return data


class GalrRotationInfer(BasicInferTask):
    """Serve one bundle: the request's rotation applied in latent space (``BasicInferTask`` subclass).

    Args:
        bundle: the bundle (its ``configs/train.yaml`` + ``configs/inference.yaml`` and checkpoint, read in place).
        description: shown by ``/info/`` (default: the bundle's ``metadata.json`` name and version).

    The preprocessing is the bundle's own ``preprocessing`` (its rotation entry replaced by the request's), the
    network its ``network_def`` with the checkpoint loaded, once; ``/info/`` lists the parameters.
    """

    def __init__(self, bundle: BundleModel, description: str | None = None) -> None:
        self.bundle = bundle
        meta = bundle.metadata
        desc = description or f"{meta.get('name', bundle.name)} {meta.get('version', '')}: rotate in latent space"
        super().__init__(
            path=bundle.checkpoint,
            network=bundle.network,
            type=InferType.OTHERS,
            labels=None,
            dimension=bundle.spatial_dims,
            description=desc.strip(),
            config={
                "euler": "",
                "convention": bundle.convention,
                "axis_angle": "",
                "axis": "",
                "angle": "",
                "spatial_size": ",".join(str(s) for s in bundle.spatial_size),
            },
        )

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        # the rotation first: a malformed parameter fails before the volume is read
        return [RotationFromRequestd(self.bundle.spatial_dims, self.bundle.convention), *self.bundle.preprocessing]

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return []

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict[str, Any]:
        """The rotated prediction into ``data["pred"]``, the JSON into ``data["result"]``."""
        device = device if torch.cuda.is_available() or not str(device).startswith("cuda") else "cpu"
        try:
            pred, summary = self.bundle.to(device).rotate(data[self.input_key], data["rotation"])
        except ValueError as e:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(e)) from e
        data[self.output_label_key] = pred
        data[self.output_json_key] = {
            "rotation": data["rotation_record"],
            **self.bundle.describe(),
            **summary,
        }
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        """Write the prediction as float32 NIfTI (the preprocessed input's affine) and return it with the JSON."""
        import nibabel as nib

        pred = np.asarray(data[self.output_label_key], np.float32)
        array = pred[0] if pred.shape[0] == 1 else np.moveaxis(pred, 0, -1)
        meta = data.get(f"{self.input_key}_meta_dict") or {}
        affine = meta.get("affine")
        if affine is None:
            affine = getattr(data[self.input_key], "affine", None)
        affine = np.eye(4) if affine is None else np.asarray(affine, np.float64)
        fd, path = tempfile.mkstemp(suffix=".nii.gz", prefix="galr_pred_")
        os.close(fd)
        nib.save(nib.Nifti1Image(array, affine), path)
        return path, dict(data[self.output_json_key])
