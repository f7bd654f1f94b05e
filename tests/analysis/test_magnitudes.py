"""Latent magnitude maps over rotations of the same input: 2D (with a fixed background layer) and 3D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_galr.analysis import latent_magnitude_maps, rotation_set, run_latent_magnitudes


@pytest.mark.parametrize("dims", [2, 3])
def test_rotation_set(dims):
    r = rotation_set(dims, 8, seed=1)
    assert r.shape == (8, dims, dims)
    torch.testing.assert_close(r[0], torch.eye(dims))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(dims).expand(8, dims, dims), atol=1e-5, rtol=0)
    assert rotation_set(dims, 1).shape == (1, dims, dims)
    with pytest.raises(ValueError, match="num_rotations"):
        rotation_set(dims, 0)


def test_latent_magnitude_maps_shapes_and_empty_part(make_net):
    maps = latent_magnitude_maps(make_net().eval(), torch.rand(3, 1, 16, 16))
    assert maps["z_v"].shape == maps["z_i"].shape == (3, 8, 8)
    assert (maps["z_v"] >= 0).all() and (maps["z_v"] <= 1).all()  # tanh-bounded latent
    maps = latent_magnitude_maps(make_net(partition="all").eval(), torch.rand(2, 1, 16, 16))
    assert torch.isnan(maps["z_i"]).all() and torch.isfinite(maps["z_v"]).all()


def test_latent_magnitudes_2d_with_fixed_background(tmp_path, make_net, blob_items):
    items = blob_items(2)
    for d in items:  # a fixed 3x3 block that does not rotate
        d["background"] = np.zeros((1, 16, 16), np.float32)
        d["background_mask"] = np.zeros((1, 16, 16), np.float32)
        d["background"][0, :3, :3] = d["background_mask"][0, :3, :3] = 1.0
    out = run_latent_magnitudes(make_net(), items, str(tmp_path), num_cases=2, num_rotations=4)
    png = tmp_path / "latent_magnitudes.png"
    assert png.is_file() and png.stat().st_size > 1000
    saved = json.loads((tmp_path / "latent_magnitudes.json").read_text())
    assert saved["num_rotations"] == 4 and len(saved["cases"]) == 2 == len(out["cases"])
    for case in saved["cases"]:
        assert 0.0 < case["mean_abs_z_v"] <= 1.0 and 0.0 < case["mean_abs_z_i"] <= 1.0
        assert case["rotation_spread_z_v"] >= 0.0


def test_latent_magnitudes_3d_and_empty_partition(tmp_path, make_net, blob_items):
    run_latent_magnitudes(make_net(spatial_dims=3), blob_items(1, spatial=(8, 8, 8)), str(tmp_path / "a"),
                          num_rotations=3)
    assert (tmp_path / "a" / "latent_magnitudes.png").stat().st_size > 1000
    out = run_latent_magnitudes(make_net(partition="all"), blob_items(1), str(tmp_path / "b"), num_rotations=2)
    saved = json.loads((tmp_path / "b" / "latent_magnitudes.json").read_text())
    assert "no channels" in saved["note"] and saved["cases"][0]["mean_abs_z_i"] is None
    assert out["cases"][0]["mean_abs_z_v"] > 0
