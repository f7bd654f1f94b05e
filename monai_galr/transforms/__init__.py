"""MONAI array/dictionary transforms: group elements in the data dict and foreground/background compositing."""

from __future__ import annotations

from monai_galr.transforms import checked_load, group, overlay
from monai_galr.transforms.checked_load import LoadCheckedImage, LoadCheckedImaged, check_image_array
from monai_galr.transforms.group import (
    GroupElement,
    GroupElementD,
    GroupElementd,
    GroupElementDict,
    RandGroupElement,
    RandGroupElementD,
    RandGroupElementd,
    RandGroupElementDict,
)
from monai_galr.transforms.overlay import (
    AttachBackgroundD, AttachBackgroundd, AttachBackgroundDict, BlockOverlay, BlockOverlayD, BlockOverlayd,
    BlockOverlayDict, RandBlockOverlayD, RandBlockOverlayd, RandBlockOverlayDict, attach_background_ids, composite,
)

__all__ = [*checked_load.__all__, *group.__all__, *overlay.__all__]
