"""Tests for monai_galr.transforms.group: fixed and random group elements in the data dict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from monai_galr.groups import angle_to_matrix, euler_to_matrix, rotate_image
from monai_galr.transforms import GroupElement, GroupElementd, GroupElementD, RandGroupElement, RandGroupElementd


def _assert_rotation(m: np.ndarray, d: int) -> None:
    assert isinstance(m, np.ndarray) and m.dtype == np.float32 and m.shape == (d, d)
    np.testing.assert_allclose(m.T @ m, np.eye(d), atol=1e-5)
    assert abs(np.linalg.det(m) - 1.0) < 1e-5


def test_group_element_angle_degrees_and_radians():
    m = GroupElement(2, angle=90)()
    np.testing.assert_array_equal(m, [[0, -1], [1, 0]])  # exact at 90 degrees
    np.testing.assert_allclose(GroupElement(2, angle=math.pi / 6, degrees=False)(), GroupElement(2, angle=30)())
    x = torch.rand(1, 1, 6, 6)
    torch.testing.assert_close(rotate_image(x, torch.from_numpy(m)), torch.rot90(x, 1, dims=(2, 3)))


def test_group_element_3d_and_identity():
    np.testing.assert_array_equal(GroupElement(3)(), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(GroupElement(2)(), np.eye(2, dtype=np.float32))
    e = GroupElement(3, euler=(10, 20, 30))()
    ref = euler_to_matrix(torch.deg2rad(torch.tensor([[10.0, 20.0, 30.0]], dtype=torch.float64)))[0].numpy()
    np.testing.assert_allclose(e, ref, atol=1e-6)
    a = GroupElement(3, axis_angle=(0, 0, 90))()
    np.testing.assert_array_equal(a, [[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    _assert_rotation(GroupElement(3, axis_angle=(1, 2, 3), degrees=False)(), 3)


def test_group_element_matrix_reorthonormalized():
    m = GroupElement(2, matrix=[[0.7071, -0.7071], [0.7071, 0.7071]])()
    np.testing.assert_allclose(m, angle_to_matrix(torch.tensor([math.pi / 4]))[0].numpy(), atol=1e-6)
    _assert_rotation(m, 2)


def test_group_element_returns_copies():
    t = GroupElement(2, angle=10)
    t()[0, 0] = 5.0
    assert t()[0, 0] != 5.0


def test_group_element_d():
    out = GroupElementd(spatial_dims=2, angle=180)({"image": 1})
    np.testing.assert_array_equal(out["rotation"], [[-1, 0], [0, -1]])
    assert out["image"] == 1 and GroupElementD is GroupElementd
    out = GroupElementd(keys=("r1", "r2"), spatial_dims=3, euler=(0, 0, 0))({})
    np.testing.assert_array_equal(out["r1"], np.eye(3))
    assert out["r1"] is not out["r2"]


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"spatial_dims": 1}, ValueError, "spatial_dims"),
        ({"spatial_dims": 2.0}, ValueError, "spatial_dims"),
        ({"spatial_dims": 2, "angle": 10, "matrix": np.eye(2)}, ValueError, "at most one"),
        ({"spatial_dims": 3, "angle": 10}, ValueError, "angle.*SO\\(2\\)"),
        ({"spatial_dims": 2, "euler": (1, 2, 3)}, ValueError, "euler.*SO\\(3\\)"),
        ({"spatial_dims": 2, "axis_angle": (1, 2, 3)}, ValueError, "axis_angle.*SO\\(3\\)"),
        ({"spatial_dims": 2, "angle": "ten"}, TypeError, "angle"),
        ({"spatial_dims": 2, "angle": float("nan")}, ValueError, "angle"),
        ({"spatial_dims": 3, "euler": (1, 2)}, ValueError, "euler.*3"),
        ({"spatial_dims": 3, "axis_angle": ("a", 1, 2)}, TypeError, "axis_angle"),
        ({"spatial_dims": 2, "matrix": np.eye(3)}, ValueError, "matrix.*\\(2, 2\\)"),
        ({"spatial_dims": 2, "matrix": [[1, 0], [0, -1]]}, ValueError, "matrix.*det"),
        ({"spatial_dims": 2, "matrix": [[2, 0], [0, 1]]}, ValueError, "matrix.*orthonormal"),
        ({"spatial_dims": 2, "degrees": "yes"}, TypeError, "degrees"),
        ({"spatial_dims": 3, "euler": (1, 2, 3), "convention": "ZZX"}, ValueError, "convention"),
    ],
)
def test_group_element_bad_args(kwargs, err, match):
    with pytest.raises(err, match=match):
        GroupElement(**kwargs)


@pytest.mark.parametrize("d", [2, 3])
def test_rand_group_element_d_reproducible_and_proper(d):
    t1 = RandGroupElementd(spatial_dims=d).set_random_state(seed=7)
    t2 = RandGroupElementd(spatial_dims=d).set_random_state(seed=7)
    a = [t1({"image": 0})["rotation"] for _ in range(20)]
    b = [t2({"image": 0})["rotation"] for _ in range(20)]
    for m, n in zip(a, b):
        _assert_rotation(m, d)
        np.testing.assert_array_equal(m, n)
    assert len({m.tobytes() for m in a}) == 20
    t3 = RandGroupElementd(spatial_dims=d).set_random_state(seed=8)
    assert not np.allclose(a[0], t3({})["rotation"])
    # state= works too and the sampled parameters are recorded
    t4 = RandGroupElementd(spatial_dims=d).set_random_state(state=np.random.RandomState(7))
    np.testing.assert_array_equal(t4({})["rotation"], a[0])
    assert (t4.sampler.angle is not None) if d == 2 else (t4.sampler.quaternion.shape == (4,))


def test_rand_group_element_d_in_compose():
    # Compose.set_random_state reseeds its members, which must forward the state to the sampler
    a = Compose([RandGroupElementd(spatial_dims=2)]).set_random_state(seed=3)
    b = Compose([RandGroupElementd(spatial_dims=2)]).set_random_state(seed=3)
    c = Compose([RandGroupElementd(spatial_dims=2)]).set_random_state(seed=4)
    ra, rb, rc = a({})["rotation"], b({})["rotation"], c({})["rotation"]
    np.testing.assert_array_equal(ra, rb)
    assert not np.allclose(ra, rc)


def test_rand_group_element_so2_uniform_angles():
    t = RandGroupElement(2).set_random_state(0)
    angles = []
    for _ in range(400):
        t()
        angles.append(t.angle)
    assert min(angles) >= 0 and max(angles) < 2 * math.pi
    hist = np.histogram(angles, bins=4, range=(0, 2 * math.pi))[0]
    assert hist.min() > 60


def test_rand_group_element_matches_recorded_angle():
    t = RandGroupElement(2).set_random_state(1)
    m = t()
    np.testing.assert_allclose(m, GroupElement(2, angle=t.angle, degrees=False)())
    np.testing.assert_array_equal(t(randomize=False), m)


def test_rand_group_element_c4_exact():
    t = RandGroupElementd(spatial_dims=2, angles="c4").set_random_state(0)
    seen = set()
    for _ in range(40):
        m = t({})["rotation"]
        _assert_rotation(m, 2)
        assert set(np.unique(m).tolist()) <= {-1.0, 0.0, 1.0}
        k = round(math.atan2(m[1, 0], m[0, 0]) / (math.pi / 2)) % 4
        assert t.sampler.angle == pytest.approx(k * math.pi / 2)
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_rand_group_element_so3_haar_mean():
    t = RandGroupElement(3).set_random_state(0)
    mats = np.stack([t() for _ in range(2000)])
    np.testing.assert_allclose(mats.mean(0), 0.0, atol=0.06)


def test_rand_group_element_prob_zero_is_identity():
    t = RandGroupElementd(spatial_dims=3, prob=0.0).set_random_state(0)
    np.testing.assert_array_equal(t({})["rotation"], np.eye(3))


def test_rand_group_element_call_without_randomize():
    with pytest.raises(RuntimeError, match="randomize"):
        RandGroupElement(3)(randomize=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"spatial_dims": None}, "spatial_dims"),
        ({"spatial_dims": 2, "angles": "c8"}, "angles"),
        ({"spatial_dims": 3, "angles": "c4"}, "c4"),
        ({"spatial_dims": 2, "prob": 1.5}, "prob"),
    ],
)
def test_rand_group_element_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandGroupElement(**kwargs)
    with pytest.raises(ValueError, match=match):
        RandGroupElementd(**kwargs)
