"""Latent swap: the algebra of the swap and the study for 2D and 3D networks."""

from __future__ import annotations

import json

import pytest
import torch

from monai_galr.analysis import run_latent_swap, swap_latents


def test_swap_latents_exchanges_the_parts(make_net):
    net = make_net(partition="manual", varying_fraction=0.25)  # channels 0, 1 vary
    z_a, z_b = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    ab, ba = swap_latents(net, z_a, z_b)
    torch.testing.assert_close(ab[:, :2], z_a[:, :2])
    torch.testing.assert_close(ab[:, 2:], z_b[:, 2:])
    torch.testing.assert_close(ba[:, :2], z_b[:, :2])
    torch.testing.assert_close(ba[:, 2:], z_a[:, 2:])
    all_net = make_net(partition="all")
    ab, ba = swap_latents(all_net, z_a, z_b)
    torch.testing.assert_close(ab, z_a)
    torch.testing.assert_close(ba, z_b)
    with pytest.raises(ValueError, match="same shape"):
        swap_latents(net, z_a, z_b[:1])


@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
def test_latent_swap_study(tmp_path, make_net, blob_items, spatial):
    out = run_latent_swap(make_net(spatial_dims=len(spatial)), blob_items(5, spatial=spatial), str(tmp_path),
                          num_pairs=2)
    png = tmp_path / "latent_swap.png"
    assert png.is_file() and png.stat().st_size > 1000
    saved = json.loads((tmp_path / "latent_swap.json").read_text())
    assert [(p["a"], p["b"]) for p in saved["pairs"]] == [(0, 1), (2, 3)] == [(p["a"], p["b"]) for p in out["pairs"]]
    assert all(0.0 <= v <= 1.0 for p in saved["pairs"] for k, v in p.items() if k.startswith("mad_"))
    assert saved["varying_channels"] == 4 and saved["latent_channels"] == 8


def test_latent_swap_too_few_items(tmp_path, make_net, blob_items):
    with pytest.raises(ValueError, match="test_items must hold at least 6"):
        run_latent_swap(make_net(), blob_items(5), str(tmp_path), num_pairs=3)
    with pytest.raises(ValueError, match="num_pairs"):
        run_latent_swap(make_net(), blob_items(5), str(tmp_path), num_pairs=0)
