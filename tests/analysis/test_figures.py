"""Error-map figures for 2D and 3D networks; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_galr.analysis import error_map_figure, run_error_maps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_error_maps_2d(tmp_path, ckpt2d, make_net, blob_items):
    out = run_error_maps(make_net(seed=3), blob_items(6), str(tmp_path), ckpt_path=ckpt2d, num_cases=3)
    _check_png(tmp_path / "error_maps.png")
    saved = json.loads((tmp_path / "error_maps.json").read_text())
    assert len(saved["cases"]) == 3 == len(out["cases"])
    for case in saved["cases"]:
        assert 0.0 <= case["mae"] <= case["max_error"] <= 1.0
        assert case["rotation"].endswith("deg")
    assert not list(tmp_path.glob(".tmp_*"))


def test_error_maps_3d(tmp_path, make_net, blob_items):
    run_error_maps(make_net(spatial_dims=3), blob_items(2, spatial=(8, 8, 8)), str(tmp_path), num_cases=2)
    _check_png(tmp_path / "error_maps.png")
    assert "axis-angle" in json.loads((tmp_path / "error_maps.json").read_text())["cases"][0]["rotation"]


def test_error_maps_bad_inputs(tmp_path, make_net, blob_items, save_ckpt):
    with pytest.raises(ValueError, match="num_cases"):
        run_error_maps(make_net(), blob_items(2), str(tmp_path), num_cases=0)
    with pytest.raises(ValueError, match="'rotation'"):
        run_error_maps(make_net(), blob_items(2, rotations=False), str(tmp_path))
    other = save_ckpt(make_net(partition="learned"), tmp_path / "learned.pt")
    with pytest.raises(ValueError, match="learned.pt.*does not match"):
        run_error_maps(make_net(), blob_items(2), str(tmp_path / "eval"), ckpt_path=other)
    assert not (tmp_path / "eval").exists()


def test_error_map_figure_3d_has_three_labelled_mid_slices_per_case():
    vol = np.random.default_rng(0).random((6, 8, 10)).astype(np.float32)
    fig = error_map_figure([vol, vol], [vol, vol], [vol, 1 - vol], ["case 0", "case 1"], title="t")
    grid = fig.axes[:24]  # 2 cases x 3 mid-slices rows, 4 columns; then the colour bars of columns 2 and 3
    assert len(fig.axes) == 24 + 12
    assert [ax.get_title() for ax in grid[:4]] == ["input x", "target T_R x", "prediction D(Phi_R(E(x)))",
                                                    "|target - prediction|"]
    assert [ax.get_ylabel() for ax in grid[::4]] == [f"case {c}\nslice {s}" for c in (0, 1) for s in
                                                    ("H=3 (W x D)", "W=4 (H x D)", "D=5 (H x W)")]
    err_tile = grid[4 * 3 + 3].get_images()[0]  # case 1, first mid-slice, |error| column
    assert err_tile.get_clim() == (0.0, 1.0)
    np.testing.assert_allclose(err_tile.get_array(), np.abs(vol[3] - (1 - vol[3])), atol=1e-6)
    assert fig.axes[-1].get_ylabel() == "absolute error"
