"""Latent group actions ``Phi^v_R``: how a rotation acts on the varying latent channels."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from monai_galr.groups import rotate_image

__all__ = ["GridRotation", "LearnedAction", "ACTIONS"]

ACTIONS = ("harmonic", "grid", "learned")


class GridRotation(nn.Module):
    """Rotate the spatial latent ``(B, L, h, w[, d])`` with the image-space convention of ``rotate_image``.

    Args:
        spatial_dims: 2 or 3.
        mode: interpolation, ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"border"`` (default: the latent of the background continues outside the grid),
            ``"zeros"`` or ``"reflection"``.
    """

    def __init__(self, spatial_dims: int, mode: str = "bilinear", padding_mode: str = "border") -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.mode = mode
        self.padding_mode = padding_mode

    def forward(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        return rotate_image(z, rotation, mode=self.mode, padding_mode=self.padding_mode, validate=False)


class LearnedAction(nn.Module):
    """A small network ``z' = z + f([z, vec(R)])`` conditioned on the rotation, for actions without geometry.

    The flattened rotation matrix is broadcast over the latent grid as ``d*d`` extra input channels.

    Args:
        spatial_dims: 2 or 3 (the rotation is ``(B, d, d)`` with ``d = spatial_dims``).
        channels: number of latent channels ``L``.
        hidden_channels: width of the hidden layers.
        num_layers: number of hidden convolution layers (>= 1).
    """

    def __init__(self, spatial_dims: int, channels: int, hidden_channels: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        self.spatial_dims = spatial_dims
        layers: list[nn.Module] = []
        c_in = channels + spatial_dims * spatial_dims
        for _ in range(num_layers):
            layers.append(
                Convolution(spatial_dims, c_in, hidden_channels, kernel_size=3, act="PRELU", norm=None, bias=True)
            )
            c_in = hidden_channels
        layers.append(Convolution(spatial_dims, c_in, channels, kernel_size=3, conv_only=True))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        code = rotation.reshape(rotation.shape[0], -1).to(z.dtype).expand(b, -1)
        code = code.view(b, -1, *([1] * (z.ndim - 2))).expand(b, code.shape[1], *z.shape[2:])
        return z + self.net(torch.cat([z, code], 1))
