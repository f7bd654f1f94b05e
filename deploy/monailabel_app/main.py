"""MONAI Label app serving the monai-galr 3D bundles: rotate a volume in a bundle's latent space.

    monailabel start_server --app deploy/monailabel_app --studies <folder of NIfTI volumes> \
        --host 127.0.0.1 --port 8000

One infer task per bundle (``GalrRotationInfer``, named after the bundle folder: ``brain_mri_so3``,
``adrenal_ct_so3``), reading the bundle's own ``configs/train.yaml`` + ``configs/inference.yaml`` (the overlay pair
of its inference) and ``models/model.pt`` in place.
App options (``--conf KEY VALUE``):

- ``bundles``: comma-separated bundle folders (default: ``brain_mri_so3`` and ``adrenal_ct_so3`` under the
  repository's ``bundles/``, two levels above this folder);
- ``<bundle name>_checkpoint``: other weights for that bundle (default: its config's ``ckpt_path``).

Then ``POST /infer/<bundle name>?image=<study id>&output=all`` with the form field ``params`` =
``{"euler": [30, 45, 60]}`` (or ``{"axis_angle": [...]}``, ``{"axis": [...], "angle": 30}``; degrees) returns the
rotated volume (NIfTI) and the JSON of the rotation and the ``z_v`` / ``z_i`` summaries. See deploy/README.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from galr_bundle import BundleModel
from galr_infer import GalrRotationInfer
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

from monai_galr.bundle import INFERENCE_CONFIGS

logger = logging.getLogger(__name__)

DEFAULT_BUNDLES = ("brain_mri_so3", "adrenal_ct_so3")


def bundle_dirs(conf: dict[str, str], app_dir: str | os.PathLike) -> list[Path]:
    """The bundle folders from ``conf["bundles"]`` (comma-separated) or the repository's 3D bundles.

    Raises:
        ValueError: an empty list, or a folder without ``configs/train.yaml`` and ``configs/inference.yaml`` (named in
            the message with the file it lacks).
    """
    value = conf.get("bundles")
    if value:
        dirs = [Path(v.strip()).expanduser() for v in str(value).split(",") if v.strip()]
    else:
        root = Path(app_dir).resolve().parents[1] / "bundles"
        dirs = [root / name for name in DEFAULT_BUNDLES]
    if not dirs:
        raise ValueError(f"conf 'bundles' lists no bundle folder, got {value!r}.")
    lacking = {}
    for d in dirs:
        absent = [f"configs/{f}" for f in INFERENCE_CONFIGS if not (d / "configs" / f).is_file()]
        if absent:
            lacking[str(d)] = absent
    if lacking:
        needed = " and ".join(f"configs/{f}" for f in INFERENCE_CONFIGS)
        raise ValueError(f"conf 'bundles': bundle folders need {needed}; missing: {lacking} (give bundle folders, "
                         f"comma-separated).")
    return dirs


class GalrLabelApp(MONAILabelApp):
    """The MONAI Label app: one ``GalrRotationInfer`` per bundle; no training, no active learning strategy."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundle_dirs = bundle_dirs(conf or {}, app_dir)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-galr",
            description="Rotate 3D volumes in the latent space of monai-galr bundles (ALD split latent)",
            version="1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for d in self.bundle_dirs:
            bundle = BundleModel(d, checkpoint=self.conf.get(f"{d.name}_checkpoint"))
            logger.info(f"monai-galr: serving {bundle!r} with weights {bundle.checkpoint}")
            infers[bundle.name] = GalrRotationInfer(bundle)
        return infers

    def init_strategies(self):
        return {}
