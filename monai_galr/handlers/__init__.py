"""Ignite handlers: ALD mask statistics, group-action image panels, SSIM (PSNR/RMSE come from monai.handlers)."""

from __future__ import annotations

from monai_galr.handlers.checkpoint import GroupActionCheckpointLoader, load_network_weights
from monai_galr.handlers.images import GroupActionImageHandler, action_panel
from monai_galr.handlers.mask_stats import MaskStatsHandler, find_ald
from monai_galr.handlers.metrics import StructuralSimilarity
from monai_galr.handlers.random_state import RandomStateCheckpoint
from monai_galr.handlers.report import MetricsReport, write_json_atomic
from monai_galr.handlers.run_guard import KeepNSaved, RunGuard, SafeDiskSaver
from monai_galr.handlers.terminate_on_nan import TerminateOnNan

__all__ = [
    "GroupActionCheckpointLoader",
    "GroupActionImageHandler",
    "KeepNSaved",
    "MaskStatsHandler",
    "MetricsReport",
    "RandomStateCheckpoint",
    "RunGuard",
    "SafeDiskSaver",
    "StructuralSimilarity",
    "TerminateOnNan",
    "action_panel",
    "find_ald",
    "load_network_weights",
    "write_json_atomic",
]
