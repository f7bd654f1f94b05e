"""Networks: the ALD block, latent actions and the group-action autoencoder."""

from __future__ import annotations

from monai_galr.networks.blocks import ALD, GridRotation, LearnedAction, StraightThroughClamp
from monai_galr.networks.nets import GroupActionAutoEncoder, RotatedReconstruction, parameter_groups

__all__ = [
    "ALD",
    "GridRotation",
    "GroupActionAutoEncoder",
    "LearnedAction",
    "RotatedReconstruction",
    "StraightThroughClamp",
    "parameter_groups",
]
