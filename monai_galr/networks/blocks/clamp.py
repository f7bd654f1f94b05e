"""A clamp to a fixed range whose backward pass is the identity."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StraightThroughClamp"]


class StraightThroughClamp(nn.Module):
    """``y = clamp(x, low, high)`` in the forward pass, ``dy/dx = 1`` in the backward pass.

    An output activation for intensities in ``[low, high]`` that leaves an empty background exactly at ``low`` (a
    sigmoid never reaches 0, an offset SSIM's luminance term punishes on mostly-empty volumes) without the dead
    zone of a hard clamp, whose gradient is 0 wherever the pre-activation leaves the range.

    Args:
        low / high: the range, ``low < high``.

    Raises:
        ValueError: ``low >= high``.
    """

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        if not float(low) < float(high):
            raise ValueError(f"StraightThroughClamp needs low < high, got low={low!r}, high={high!r}.")
        self.low = float(low)
        self.high = float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x.clamp(self.low, self.high) - x).detach()

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
