"""TensorBoard image logging for group actions: input, target, prediction and error map side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine

from monai_galr.handlers.tensorboard import LazyTensorBoardHandler
from monai_galr.utils import check_positive_int, mid_slices

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["GroupActionImageHandler", "action_panel"]


def action_panel(image: Any, target: Any, pred: Any, pad: int = 1) -> np.ndarray:
    """One grid for one sample: rows input, target, prediction, ``|target - prediction|``.

    Args:
        image: ``(C, H, W[, D])`` input (only the first channel is shown).
        target: same shape, the target ``T_g(x)``.
        pred: same shape, the prediction.
        pad: pixels of white (1.0) between the tiles.

    Returns:
        ``(1, rows, cols)`` float32 in [0, 1]: 4 rows of tiles, 1 column for 2D images, 3 columns (the three
        orthogonal mid-slices) for 3D volumes; tiles of different sizes are zero-padded to the largest.

    Raises:
        ValueError: the three inputs differ in shape or are not ``(C, H, W[, D])``.
    """
    arrays = [torch.as_tensor(a).detach().float().cpu().numpy() for a in (image, target, pred)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"image, target and pred must have the same shape, got {[a.shape for a in arrays]}.")
    if arrays[0].ndim not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or (C, H, W, D), got shape {arrays[0].shape}.")
    x, y, p = (np.clip(a[0], 0.0, 1.0) for a in arrays)
    err = np.abs(y - p)  # both clipped, so already in [0, 1]
    rows = [[tile for _, tile in mid_slices(a)] for a in (x, y, p, err)]
    th = max(t.shape[0] for t in rows[0])
    tw = max(t.shape[1] for t in rows[0])
    ncols = len(rows[0])
    out = np.ones((4 * th + 3 * pad, ncols * tw + (ncols - 1) * pad), dtype=np.float32)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            y0, x0 = r * (th + pad), c * (tw + pad)
            out[y0 : y0 + th, x0 : x0 + tw] = 0.0
            out[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] = tile
    return out[None]


def _as_batch(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, (list, tuple)):  # decollated output: a list of channel-first items
        value = torch.stack([torch.as_tensor(v) for v in value])
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"engine.state.output[{key!r}] must be a tensor or array, got {type(value).__name__}.")
    value = torch.as_tensor(value)
    if value.ndim not in (4, 5):
        raise ValueError(
            f"engine.state.output[{key!r}] must be batch-first (B, C, H, W[, D]), got shape {tuple(value.shape)}."
        )
    return value


class GroupActionImageHandler(LazyTensorBoardHandler):
    """Write, for up to ``max_images`` samples of the last batch, a grid input / target / prediction / error map.

    The data is read from ``engine.state.output`` (a dict of batched ``(B, C, H, W[, D])`` tensors, or a list
    of per-sample dicts) with ``from_engine(output_keys)``. Intensities are clipped to [0, 1]; 3D volumes show the
    three orthogonal mid-slices (see :func:`action_panel`). One image per sample, tagged ``{tag}/{i}``.

    Args:
        summary_writer: a TensorBoard ``SummaryWriter``; by default one is created lazily in ``log_dir``.
        log_dir: directory of the default writer.
        interval: write every ``interval`` epochs (or iterations with ``epoch_level=False``).
        epoch_level: trigger on ``EPOCH_COMPLETED`` (step = epoch) or on ``ITERATION_COMPLETED`` (step = iteration).
        max_images: at most this many samples of the batch.
        tag: TensorBoard tag prefix.
        output_keys: the keys of the input, target and prediction in ``engine.state.output``; for the identity
            reconstruction of the evaluator use ``("image", "image", "pred_identity")``.
        global_iter_transform: maps the step (epoch or iteration) to the TensorBoard step, e.g.
            ``lambda _: trainer.state.epoch`` for an evaluator run inside training.

    Raises:
        ValueError: ``interval`` or ``max_images`` not a positive int, or ``output_keys`` not three keys.
        TypeError: ``tag`` not a string.

    Example::

        GroupActionImageHandler(log_dir="./runs", interval=5).attach(trainer)
    """

    def __init__(
        self,
        summary_writer: SummaryWriter | None = None,
        log_dir: str = "./runs",
        interval: int = 1,
        epoch_level: bool = True,
        max_images: int = 4,
        tag: str = "group_action",
        output_keys: Sequence[str] = ("image", "label", "pred"),
        global_iter_transform: Callable[[int], int] = lambda x: x,
    ) -> None:
        check_positive_int(interval, "interval")
        check_positive_int(max_images, "max_images")
        if not isinstance(tag, str):
            raise TypeError(f"tag must be a str, got {type(tag).__name__}.")
        keys = tuple(output_keys) if not isinstance(output_keys, str) else (output_keys,)
        if len(keys) != 3 or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"output_keys must be three keys (input, target, prediction), got {output_keys!r}.")
        super().__init__(summary_writer, log_dir)
        self.interval = interval
        self.epoch_level = bool(epoch_level)
        self.max_images = max_images
        self.tag = tag
        self.output_keys = keys
        self.output_transform = from_engine(list(keys))
        self.global_iter_transform = global_iter_transform

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (trainer or evaluator)."""
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        """Write the panels of the current ``engine.state.output``."""
        output = engine.state.output
        if isinstance(output, dict):
            missing = [k for k in self.output_keys if k not in output]
            if missing:
                raise ValueError(
                    f"engine.state.output lacks the keys {missing} named in output_keys={self.output_keys}; "
                    f"it has {sorted(output)}."
                )
        image, target, pred = (_as_batch(v, k) for v, k in zip(self.output_transform(output), self.output_keys))
        step = self.global_iter_transform(engine.state.epoch if self.epoch_level else engine.state.iteration)
        writer = self.writer
        for i in range(min(self.max_images, image.shape[0])):
            panel = action_panel(image[i], target[i], pred[i])
            writer.add_image(f"{self.tag}/{i}", panel, step, dataformats="CHW")
        writer.flush()
