"""Tests for monai_galr.transforms.overlay: compositing and the (random) block overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_galr.transforms import BlockOverlay, BlockOverlayd, BlockOverlayDict, RandBlockOverlayd, composite


def test_composite_numpy_semantics():
    fg = np.full((2, 1, 4, 4), 0.3, np.float32)
    bg = np.full((2, 1, 4, 4), 0.9, np.float32)
    mask = np.zeros((2, 1, 4, 4), np.float32)
    mask[:, :, :2] = 1
    out = composite(fg, bg, mask)
    assert isinstance(out, np.ndarray) and out.shape == fg.shape
    np.testing.assert_allclose(out[:, :, :2], 0.9)
    np.testing.assert_allclose(out[:, :, 2:], 0.3)
    np.testing.assert_allclose(composite(fg, bg, np.full_like(mask, 0.25)), 0.25 * 0.9 + 0.75 * 0.3)


def test_composite_torch_broadcast_and_grad():
    fg = torch.rand(3, 2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    bg = torch.rand(3, 2, 5, 6, 7, dtype=torch.float64)
    mask = (torch.rand(3, 1, 5, 6, 7) > 0.5).double()  # one mask channel for all image channels
    out = composite(fg, bg, mask)
    torch.testing.assert_close(out, torch.where(mask.bool(), bg, fg))
    out.sum().backward()
    torch.testing.assert_close(fg.grad, (1 - mask).expand_as(fg))


def test_composite_mixed_numpy_torch():
    out = composite(torch.zeros(2, 1, 3, 3), np.ones((1, 3, 3), np.float32), np.ones((1, 3, 3), np.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.ones(2, 1, 3, 3))


def test_block_overlay_position_size_value():
    img = np.zeros((2, 28, 20), np.float32)
    bg, mask = BlockOverlay(block_size=7, value=0.8)(img, np.array([3, 13]))
    assert bg.shape == (2, 28, 20) and mask.shape == (1, 28, 20)
    assert bg.dtype == np.float32 and mask.dtype == np.float32
    expected = np.zeros((28, 20), np.float32)
    expected[3:10, 13:20] = 1
    np.testing.assert_array_equal(mask[0], expected)
    np.testing.assert_allclose(bg, 0.8 * np.broadcast_to(expected, (2, 28, 20)))
    x = composite(np.full_like(img, 0.1), bg, mask)
    assert np.allclose(x[:, 3:10, 13:20], 0.8) and np.allclose(x[:, :3], 0.1)


def test_block_overlay_3d_torch_per_axis_size():
    img = torch.zeros(1, 10, 20, 31, dtype=torch.float64)
    bg, mask = BlockOverlay(block_size=(2, 3, 4))(img, torch.tensor([8, 0, 27]))
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.float32 and mask.shape == (1, 10, 20, 31)
    assert mask.sum() == 24 and mask[0, 8:10, 0:3, 27:31].min() == 1
    assert bg.sum() == 24


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": -3}, ValueError, "block_size"),
        ({"block_size": 2.5}, ValueError, "block_size"),
        ({"block_size": True}, ValueError, "block_size"),
        ({"block_size": "7"}, ValueError, "block_size"),
        ({"block_size": (7,)}, ValueError, "block_size"),
        ({"block_size": (7, 0)}, ValueError, "block_size"),
        ({"value": "white"}, TypeError, "value"),
    ],
)
def test_block_overlay_bad_init(kwargs, err, match):
    with pytest.raises(err, match=match):
        BlockOverlay(**kwargs)
    with pytest.raises(err, match=match):
        RandBlockOverlayd(**kwargs)


@pytest.mark.parametrize(
    "block, img_shape, corner, match",
    [
        (29, (1, 28, 28), (0, 0), "block_size.*larger"),
        ((7, 7, 7), (1, 28, 28), (0, 0), "block_size.*3 entries"),
        (7, (1, 28, 28), (22, 0), "does not fit"),
        (7, (1, 28, 28), (-1, 0), "does not fit"),
        (7, (1, 28, 28), (0, 0, 0), "corner"),
        (7, (1, 28, 28), (0.5, 1.0), "corner"),
        (7, (28, 28), (0, 0), "channel-first"),
    ],
)
def test_block_overlay_bad_call(block, img_shape, corner, match):
    with pytest.raises(ValueError, match=match):
        BlockOverlay(block)(np.zeros(img_shape, np.float32), corner)


def test_block_overlay_d_reads_corner():
    d = {"image": np.zeros((1, 28, 28), np.float32), "block_corner": np.array([0, 21]), "label": 3}
    out = BlockOverlayd(block_size=7)(d)
    assert "background" not in d  # input not modified
    assert out["label"] == 3 and out["background_mask"][0, 0:7, 21:28].sum() == 49
    assert out["background_mask"].sum() == 49 and out["background"].max() == 1.0
    assert BlockOverlayDict is BlockOverlayd
    out = BlockOverlayd(block_size=7, background_key="bg", mask_key="m")(d)
    assert "bg" in out and "m" in out


def test_block_overlay_d_missing_corner():
    with pytest.raises(KeyError, match="block_corner"):
        BlockOverlayd()({"image": np.zeros((1, 28, 28), np.float32)})


def test_rand_block_overlay_d_reproducible_and_recorded():
    img = np.zeros((1, 28, 28), np.float32)
    t1 = RandBlockOverlayd(block_size=7).set_random_state(seed=0)
    t2 = RandBlockOverlayd(block_size=7).set_random_state(seed=0)
    corners = []
    for _ in range(200):
        a, b = t1({"image": img}), t2({"image": img})
        np.testing.assert_array_equal(a["block_corner"], b["block_corner"])
        c = a["block_corner"]
        assert c.dtype == np.int64 and c.shape == (2,)
        # the recorded corner reproduces the same layer with the deterministic transform
        np.testing.assert_array_equal(BlockOverlayd(block_size=7)(a)["background_mask"], a["background_mask"])
        assert a["background_mask"][0, c[0] : c[0] + 7, c[1] : c[1] + 7].sum() == 49
        corners.append(c)
    corners = np.stack(corners)
    assert corners.min() == 0 and corners.max() == 21  # every position where the block fits is reachable


def test_rand_block_overlay_d_3d_and_block_too_large():
    out = RandBlockOverlayd(block_size=4).set_random_state(1)({"image": np.zeros((1, 10, 20, 31), np.float32)})
    assert out["block_corner"].shape == (3,) and out["background_mask"].sum() == 64
    with pytest.raises(ValueError, match="block_size.*larger"):
        RandBlockOverlayd(block_size=11)({"image": np.zeros((1, 10, 20, 31), np.float32)})


def test_rand_block_overlay_d_missing_key():
    with pytest.raises(KeyError):
        RandBlockOverlayd()({"label": 1})
    assert RandBlockOverlayd(allow_missing_keys=True)({"label": 1}) == {"label": 1}


def test_attach_background_by_index_and_shape_checks():
    from monai_galr.transforms import AttachBackgroundd, attach_background_ids

    layers = np.zeros((3, 6, 6, 6), np.uint8)
    masks = np.zeros((3, 6, 6, 6), np.uint8)
    for k in range(3):
        layers[k, k, :, :] = 100 + k
        masks[k, k, :, :] = 255
    t = AttachBackgroundd(layers, masks, spatial_size=(6, 6, 6))
    out = t({"image": np.zeros((1, 6, 6, 6), np.float32), "background_id": 2})
    assert out["background"].shape == (1, 6, 6, 6) and out["background_mask"].shape == (1, 6, 6, 6)
    assert out["background"][0, 2, 0, 0] == pytest.approx(102 / 255) and out["background_mask"][0, 2].min() == 1.0
    assert out["background_mask"][0, 1].max() == 0.0
    assert np.shares_memory(out["background"], t.backgrounds)  # a view of the shared layers, no copy per item
    with pytest.raises(ValueError, match=r"background \[6, 6, 6\] does not match the volume \[8, 8, 8\]"):
        t({"image": np.zeros((1, 8, 8, 8)), "background_id": 0})
    with pytest.raises(ValueError, match=r"spatial shape \[6, 6, 6\] but spatial_size is \[8, 8, 8\]"):
        AttachBackgroundd(layers, masks, spatial_size=(8, 8, 8))
    with pytest.raises(ValueError, match="outside"):
        t({"image": np.zeros((1, 6, 6, 6)), "background_id": 3})
    with pytest.raises(KeyError, match="attach_background_ids"):
        t({"image": np.zeros((1, 6, 6, 6))})
    with pytest.raises(ValueError, match="masks"):
        AttachBackgroundd(layers, masks[:2])
    splits = attach_background_ids({"train": [{"i": i} for i in range(50)], "test": [{"i": 0}]}, 3, seed=0)
    ids = [d["background_id"] for d in splits["train"]]
    assert set(ids) == {0, 1, 2} and ids == [d["background_id"] for d in attach_background_ids(
        {"train": [{"i": i} for i in range(50)], "test": []}, 3, seed=0)["train"]]
    with pytest.raises(ValueError, match="num_backgrounds"):
        attach_background_ids([{}], 0)


def test_synthetic_backgrounds_file_and_loader(tmp_path):
    from monai_galr.data import ensure_synthetic_backgrounds, load_backgrounds

    path = ensure_synthetic_backgrounds(str(tmp_path), num_backgrounds=2, size=16, seed=3)
    layers, masks = load_backgrounds(path, size=16)
    assert layers.shape == masks.shape == (2, 1, 16, 16, 16) and layers.dtype == np.float32
    assert 0.02 < float((masks > 0.5).mean()) < 0.4  # anatomy around the centre, not everywhere
    assert not np.array_equal(masks[0], masks[1])
    with pytest.raises(ValueError, match=r"16\^3 but the volumes are 28\^3"):
        load_backgrounds(path, size=28)
