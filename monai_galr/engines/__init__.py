"""Engines: the group-action trainer and evaluator and their batch preparation."""

from __future__ import annotations

from monai_galr.engines.batch import PrepareGroupActionBatch
from monai_galr.engines.evaluator import GroupActionEvaluator
from monai_galr.engines.trainer import GroupActionTrainer, unwrap_network

__all__ = ["GroupActionEvaluator", "GroupActionTrainer", "PrepareGroupActionBatch", "unwrap_network"]
