from __future__ import annotations

from monai_galr.networks.nets.group_action_autoencoder import (
    GroupActionAutoEncoder,
    RotatedReconstruction,
    parameter_groups,
)

__all__ = ["GroupActionAutoEncoder", "RotatedReconstruction", "parameter_groups"]
