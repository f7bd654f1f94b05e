"""Batch preparation: move a batch to the device and apply the image-space action ``T_R`` there, batched."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_galr.groups import identity, random_rotation, rotate_image, validate_rotation
from monai_galr.utils import composite

__all__ = ["PrepareGroupActionBatch", "start_iteration"]


class PrepareGroupActionBatch:
    """``prepare_batch`` callable for the group-action engines.

    Reads ``image`` (the foreground that rotates, ``(B, C, *spatial)``), ``rotation`` (``(B, d, d)``) and, when
    present, ``background`` / ``background_mask`` (a fixed layer that does not rotate) from the batch dict; on the
    device it builds the input ``x = composite(image, background, mask)`` and the target
    ``T_R x = composite(rotate_image(image, R), background, mask)`` with one ``grid_sample`` for the whole batch.

    Returns ``(x, T_R x, (R,), {})``, the 4-tuple form MONAI's engines accept.

    Args:
        image_key / rotation_key / background_key / mask_key: keys of the batch dict.
        random_if_missing: sample Haar-uniform rotations on the device when the batch has no ``rotation_key``
            (training); when False a missing rotation is an error (evaluation needs the fixed protocol).
        identity_if_missing: use the identity (``T_R x = x``) when the batch has no ``rotation_key`` (the studies
            that look at unrotated inputs only); ``random_if_missing`` wins when both are set.
        seed: seed of the generator used for those samples.
        mode / padding_mode: interpolation of ``T_R`` (see ``monai_galr.groups.rotate_image``).

    Raises:
        ValueError: the batch is not a dict, lacks ``image_key`` (or ``rotation_key`` when required), or shapes
            do not agree.
    """

    def __init__(
        self,
        image_key: str = "image",
        rotation_key: str = "rotation",
        background_key: str = "background",
        mask_key: str = "background_mask",
        random_if_missing: bool = False,
        seed: int = 0,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        identity_if_missing: bool = False,
    ) -> None:
        self.image_key, self.rotation_key = image_key, rotation_key
        self.background_key, self.mask_key = background_key, mask_key
        self.random_if_missing, self.identity_if_missing = random_if_missing, identity_if_missing
        self.seed = int(seed)
        self.mode, self.padding_mode = mode, padding_mode
        self._generator: torch.Generator | None = None

    def _random(self, batch: int, dim: int) -> torch.Tensor:
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return random_rotation(batch, dim, generator=self._generator)

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        if not isinstance(batchdata, Mapping):
            raise ValueError(f"the batch must be a dict with key {self.image_key!r}, got {type(batchdata).__name__}.")
        if self.image_key not in batchdata:
            raise ValueError(f"the batch has no {self.image_key!r} key; keys: {sorted(batchdata)}.")
        fg = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        if fg.ndim not in (4, 5):
            raise ValueError(f"batch[{self.image_key!r}] must be (B, C, H, W[, D]), got {tuple(fg.shape)}.")
        if not fg.is_floating_point():
            fg = fg.float()
        dim = fg.ndim - 2
        if self.rotation_key in batchdata:
            r = torch.as_tensor(batchdata[self.rotation_key], dtype=torch.float32)
        elif self.random_if_missing:
            r = self._random(fg.shape[0], dim)
        elif self.identity_if_missing:
            r = identity(fg.shape[0], dim)
        else:
            raise ValueError(
                f"the batch has no {self.rotation_key!r} key: evaluation uses a fixed rotation per image "
                "(monai_galr.data.attach_fixed_rotations) and training a RandGroupElementd transform."
            )
        validate_rotation(r, dim=dim, name=f"batch[{self.rotation_key!r}]")
        if r.shape[0] != fg.shape[0]:
            raise ValueError(f"batch[{self.rotation_key!r}] has {r.shape[0]} rotations for {fg.shape[0]} images.")
        r = r.to(device=device, non_blocking=non_blocking)
        target = rotate_image(fg, r, mode=self.mode, padding_mode=self.padding_mode, validate=False)
        if self.background_key in batchdata:
            bg = torch.as_tensor(batchdata[self.background_key]).to(device=device, non_blocking=non_blocking).float()
            if self.mask_key in batchdata:
                m = torch.as_tensor(batchdata[self.mask_key]).to(device=device, non_blocking=non_blocking).float()
            else:
                m = (bg > 0).float()
            if bg.shape[0] != fg.shape[0] or bg.shape[2:] != fg.shape[2:] or m.shape[2:] != fg.shape[2:]:
                raise ValueError(
                    f"batch[{self.background_key!r}] {tuple(bg.shape)} / batch[{self.mask_key!r}] {tuple(m.shape)} "
                    f"must match the image {tuple(fg.shape)} in batch and spatial size."
                )
            x, target = composite(fg, bg, m), composite(target, bg, m)
        else:
            x = fg
        return x, target, (r,), {}


def start_iteration(engine, batchdata) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The common start of the engines' ``_iteration``: prepare the batch and seed ``engine.state.output``.

    Returns ``(x, T_R x, R)``; ``engine.state.output`` becomes ``{"image": x, "label": T_R x, "rotation": R}``.

    Raises:
        ValueError: ``batchdata`` is None.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    inputs, targets, (rotation,), _ = engine.prepare_batch(
        batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
    )
    engine.state.output = {"image": inputs, "label": targets, "rotation": rotation}
    return inputs, targets, rotation
