"""Tests for monai_galr.data.protocol: fixed, seeded rotations and block positions."""

from __future__ import annotations

import numpy as np
import pytest

from monai_galr.data import attach_fixed_blocks, attach_fixed_rotations


def _items(n: int = 64) -> list[dict]:
    return [{"image": np.zeros((1, 8, 8), np.float32), "label": i % 10} for i in range(n)]


def _check_rotations(mats: np.ndarray, d: int) -> None:
    assert mats.dtype == np.float32 and mats.shape[1:] == (d, d)
    eye = np.broadcast_to(np.eye(d), mats.shape)
    np.testing.assert_allclose(np.transpose(mats, (0, 2, 1)) @ mats, eye, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-5)


@pytest.mark.parametrize("d", [2, 3])
def test_rotations_are_fixed_and_proper(d):
    items = _items()
    out = attach_fixed_rotations(items, d, seed=5)
    assert "rotation" not in items[0] and out[0] is not items[0] and out[0]["image"] is items[0]["image"]
    mats = np.stack([o["rotation"] for o in out])
    _check_rotations(mats, d)
    again = np.stack([o["rotation"] for o in attach_fixed_rotations(items, d, seed=5)])
    np.testing.assert_array_equal(mats, again)
    other = np.stack([o["rotation"] for o in attach_fixed_rotations(items, d, seed=6)])
    assert not np.allclose(mats, other)
    assert len({m.tobytes() for m in mats}) == len(items)


def test_so2_uniform_angles_cover_circle():
    out = attach_fixed_rotations(_items(400), 2, seed=0)
    angles = np.mod(np.arctan2([o["rotation"][1, 0] for o in out], [o["rotation"][0, 0] for o in out]), 2 * np.pi)
    hist = np.histogram(angles, bins=4, range=(0, 2 * np.pi))[0]
    assert hist.min() > 60  # roughly 100 per quadrant


def test_c4_exact():
    out = attach_fixed_rotations(_items(40), 2, seed=1, angles="c4")
    mats = np.stack([o["rotation"] for o in out])
    assert set(np.unique(mats).tolist()) <= {-1.0, 0.0, 1.0}
    _check_rotations(mats, 2)
    k = {int(round(np.arctan2(m[1, 0], m[0, 0]) / (np.pi / 2))) % 4 for m in mats}
    assert k == {0, 1, 2, 3}


def test_so3_haar_mean_is_zero():
    mats = np.stack([o["rotation"] for o in attach_fixed_rotations(_items(2000), 3, seed=0)])
    np.testing.assert_allclose(mats.mean(0), 0.0, atol=0.06)  # Haar measure: E[R] = 0


def test_blocks_fit_and_are_fixed():
    items = _items(200)
    out = attach_fixed_blocks(items, (28, 20), 7, seed=2)
    corners = np.stack([o["block_corner"] for o in out])
    assert corners.dtype == np.int64 and corners.shape == (200, 2)
    assert corners.min() == 0 and corners[:, 0].max() == 21 and corners[:, 1].max() == 13
    again = attach_fixed_blocks(items, (28, 20), 7, seed=2)
    np.testing.assert_array_equal(corners, np.stack([o["block_corner"] for o in again]))
    assert "block_corner" not in items[0]
    c3 = attach_fixed_blocks(items[:5], (10, 20, 31), (10, 3, 4), seed=0)
    assert all(c["block_corner"][0] == 0 and c["block_corner"].shape == (3,) for c in c3)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"spatial_dims": 4}, ValueError, "spatial_dims"),
        ({"spatial_dims": True}, ValueError, "spatial_dims"),
        ({"spatial_dims": "2"}, ValueError, "spatial_dims"),
        ({"angles": "c8"}, ValueError, "angles"),
        ({"angles": "c4", "spatial_dims": 3}, ValueError, "c4"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": None}, ValueError, "seed"),
        ({"items": {"image": 1}}, TypeError, "items"),
        ({"items": [1, 2]}, TypeError, "item 0"),
    ],
)
def test_bad_rotation_args(kwargs, err, match):
    args = {"items": _items(3), "spatial_dims": 2, "seed": 0, **kwargs}
    with pytest.raises(err, match=match):
        attach_fixed_rotations(**args)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": 2.5}, ValueError, "block_size"),
        ({"block_size": True}, ValueError, "block_size"),
        ({"block_size": (3, 3, 3)}, ValueError, "block_size"),
        ({"block_size": 29}, ValueError, "block_size.*larger"),
        ({"spatial_shape": (28,)}, ValueError, "spatial_shape"),
        ({"spatial_shape": (28, 0)}, ValueError, "spatial_shape"),
        ({"spatial_shape": 28}, ValueError, "spatial_shape"),
        ({"seed": "a"}, ValueError, "seed"),
        ({"items": "abc"}, TypeError, "items"),
    ],
)
def test_bad_block_args(kwargs, err, match):
    args = {"items": _items(3), "spatial_shape": (28, 28), "block_size": 7, "seed": 0, **kwargs}
    with pytest.raises(err, match=match):
        attach_fixed_blocks(**args)
