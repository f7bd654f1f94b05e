"""Latent magnitude maps over rotations of the same input: 2D (with a fixed background layer) and 3D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_galr.analysis import latent_magnitude_maps, rotation_averaged_maps, rotation_set, run_latent_magnitudes
from monai_galr.groups import rotate_image


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


class _Copies(torch.nn.Module):
    def forward(self, x):
        return x.repeat(1, 8, *([1] * (x.ndim - 2)))


def _identity_encoder_net(make_net, spatial_dims=2):
    """A network whose latent is the image itself (8 copies, all channels varying): exactly rotation-equivariant."""
    net = make_net(spatial_dims=spatial_dims, partition="all").eval()
    net.encode = _Copies()
    return net


def test_rotation_averaged_maps_aligns_the_varying_maps(make_net):
    net = _identity_encoder_net(make_net)
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 2:5, 9:12] = 0.8  # an off-centre block: four rotations put it in four places
    rots = rotation_set(2, 4)  # multiples of 90 degrees: rotate_image is exact on this grid
    xr = rotate_image(x.expand(4, 1, 16, 16), rots)
    aligned = rotation_averaged_maps(net, xr, rots, align=True)["z_v"]
    smeared = rotation_averaged_maps(net, xr, rots, align=False)["z_v"]
    torch.testing.assert_close(aligned["mean"], x[0, 0], atol=1e-5, rtol=0)  # back in the frame of x, not smeared
    assert float(aligned["disagreement"]) < 1e-4
    assert float(smeared["mean"].max()) == pytest.approx(0.2, abs=1e-5)  # 0.8 / 4: the block smeared over 4 places
    assert float(smeared["disagreement"]) > 1.0
    with pytest.raises(ValueError, match="rotations must be"):
        rotation_averaged_maps(net, xr, rots[:2])


def test_rotation_averaged_maps_3d_haar_rotations(make_net):
    net = _identity_encoder_net(make_net, spatial_dims=3)
    x = torch.zeros(1, 1, 12, 12, 12)
    x[0, 0, 2:6, 2:6, 6:10] = 1.0  # off-centre: Haar rotations move it around; aligned maps agree up to interpolation
    rots = rotation_set(3, 4, seed=2)
    xr = rotate_image(x.expand(4, 1, 12, 12, 12), rots)
    aligned = rotation_averaged_maps(net, xr, rots, align=True)["z_v"]
    smeared = rotation_averaged_maps(net, xr, rots, align=False)["z_v"]
    assert float(aligned["disagreement"]) < 0.5 * float(smeared["disagreement"])
    err_aligned = (aligned["mean"] - x[0, 0]).abs().mean()
    err_smeared = (smeared["mean"] - x[0, 0]).abs().mean()
    assert float(err_aligned) < 0.5 * float(err_smeared)


def test_run_latent_magnitudes_records_the_frame(tmp_path, make_net, blob_items):
    items = blob_items(2)
    on = run_latent_magnitudes(make_net(), items, str(tmp_path / "on"), num_cases=2, num_rotations=4)
    off = run_latent_magnitudes(make_net(), items, str(tmp_path / "off"), num_cases=2, num_rotations=4, align="False")
    assert on["aligned"] is True and "rotated back by R^-1" in on["frame"]
    assert off["aligned"] is False and "NOT rotated back" in off["frame"]
    for a, b in zip(on["cases"], off["cases"]):  # the global means do not depend on the frame; the maps do
        assert a["mean_abs_z_v"] == pytest.approx(b["mean_abs_z_v"])
        assert a["disagreement_z_i"] == pytest.approx(b["disagreement_z_i"])
        assert a["disagreement_z_v"] >= 0.0 and b["disagreement_z_v"] >= 0.0
    assert json.loads((tmp_path / "on" / "latent_magnitudes.json").read_text())["aligned"] is True
    with pytest.raises(TypeError, match=r"align must be a bool \(true or false\), got str 'yes'"):
        run_latent_magnitudes(make_net(), items, str(tmp_path / "bad"), align="yes")
    assert not (tmp_path / "bad").exists()
