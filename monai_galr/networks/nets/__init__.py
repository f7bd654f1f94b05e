from __future__ import annotations

from monai_galr.networks.nets.group_action_autoencoder import GroupActionAutoEncoder, RotatedReconstruction

__all__ = ["GroupActionAutoEncoder", "RotatedReconstruction"]
