from __future__ import annotations

from monai_galr.networks.blocks.actions import ACTIONS, GridRotation, LearnedAction
from monai_galr.networks.blocks.ald import ALD, PARTITIONS, AdaptiveLatentDisentanglement
from monai_galr.networks.blocks.clamp import StraightThroughClamp

__all__ = ["ACTIONS", "ALD", "AdaptiveLatentDisentanglement", "GridRotation", "LearnedAction", "PARTITIONS", "StraightThroughClamp"]
