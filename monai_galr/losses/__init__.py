from __future__ import annotations

from monai_galr.losses.group_action_loss import GroupActionLoss

__all__ = ["GroupActionLoss"]
