"""Tiny seeded networks and data for the analysis tests, as factory fixtures (``--import-mode=importlib``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_galr.data import attach_fixed_rotations
from monai_galr.networks import GroupActionAutoEncoder

INTENSITIES = (0.2, 0.5, 0.9)


def _make_net(spatial_dims: int = 2, partition: str = "manual", channels=(4, 8), seed: int = 0, **kw):
    """An untrained tiny network (batch norm: eval mode keeps the intensity information an instance norm drops)."""
    torch.manual_seed(seed)
    return GroupActionAutoEncoder(spatial_dims, 1, 1, channels=channels, strides=(2, 1), latent_channels=8,
                                  norm="batch", partition=partition, **kw)


def _blob_items(n: int, seed: int = 0, spatial=(16, 16), rotations: bool = True) -> list[dict]:
    """Class = the intensity of a 4-pixel square blob at a random position (separable for any encoder)."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        c = int(rng.integers(0, len(INTENSITIES)))
        img = np.zeros((1, *spatial), np.float32)
        corner = [int(rng.integers(s // 4, 3 * s // 4 - 4 + 1)) for s in spatial]
        img[(0, *[slice(k, k + 4) for k in corner])] = INTENSITIES[c]
        items.append({"image": img, "label": c})
    return attach_fixed_rotations(items, len(spatial), seed) if rotations else items


def _noise_items(n: int, seed: int = 0, spatial=(16, 16)) -> list[dict]:
    """Uniform noise images with random binary labels: nothing to learn."""
    rng = np.random.default_rng(seed)
    items = [{"image": rng.random((1, *spatial)).astype(np.float32), "label": int(rng.integers(0, 2))}
             for _ in range(n)]
    return attach_fixed_rotations(items, len(spatial), seed)


def _save_ckpt(net, path) -> str:
    torch.save({"model": net.state_dict()}, str(path))
    return str(path)


@pytest.fixture
def make_net():
    return _make_net


@pytest.fixture
def blob_items():
    return _blob_items


@pytest.fixture
def noise_items():
    return _noise_items


@pytest.fixture
def save_ckpt():
    return _save_ckpt


@pytest.fixture
def ckpt2d(tmp_path):
    """A checkpoint of the default tiny 2D network in ``tmp_path``."""
    return _save_ckpt(_make_net(), tmp_path / "model.pt")
