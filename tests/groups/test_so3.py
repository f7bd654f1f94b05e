"""SO(3) conversions: quaternion, axis-angle and Euler angles round-trip in float32 and float64."""

from __future__ import annotations

import math

import pytest
import torch

from monai_galr.groups import (
    axis_angle_to_matrix,
    compose,
    euler_to_matrix,
    identity,
    matrix_to_axis_angle,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    random_rotation,
    validate_rotation,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
DTYPES = (torch.float32, torch.float64)
CONVENTIONS = ("ZYX", "XYZ", "ZXY", "YXZ", "XZY", "YZX")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return random_rotation(batch, 3, generator=_gen(seed), dtype=dtype)


def _quarter_turns(dtype: torch.dtype) -> torch.Tensor:
    """All 24 rotations of the cube (exact 0/+-1 entries): 180-degree turns and exact gimbal locks included."""
    k = torch.cartesian_prod(*(torch.arange(4, dtype=dtype),) * 3) * (math.pi / 2)
    r = euler_to_matrix(k, "XYZ").round()
    return torch.unique(r, dim=0)


@pytest.mark.parametrize("dtype", DTYPES)
class TestQuaternion:
    def test_matrix_round_trip(self, dtype):
        r = _rand(200, dtype)
        q = matrix_to_quaternion(r)
        assert q.shape == (200, 4) and q.dtype == dtype
        torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=dtype), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(quaternion_to_matrix(q), r, atol=10 * TOL[dtype], rtol=0)

    def test_quaternion_round_trip_up_to_sign(self, dtype):
        q = torch.randn(200, 4, dtype=dtype, generator=_gen(1))
        q = q / q.norm(dim=-1, keepdim=True)
        back = matrix_to_quaternion(quaternion_to_matrix(q))
        # q and -q are the same rotation; the canonical representative has w >= 0
        assert (back[:, 0] >= 0).all()
        torch.testing.assert_close(back, q * torch.sign(q[:, :1]), atol=10 * TOL[dtype], rtol=0)

    def test_double_cover(self, dtype):
        q = torch.randn(50, 4, dtype=dtype, generator=_gen(2))
        torch.testing.assert_close(quaternion_to_matrix(q), quaternion_to_matrix(-q), atol=TOL[dtype], rtol=0)

    def test_unnormalized_input_is_normalized(self, dtype):
        q = torch.randn(20, 4, dtype=dtype, generator=_gen(3))
        torch.testing.assert_close(quaternion_to_matrix(3.7 * q), quaternion_to_matrix(q), atol=TOL[dtype], rtol=0)
        validate_rotation(quaternion_to_matrix(3.7 * q))

    def test_identity_and_known_value(self, dtype):
        torch.testing.assert_close(
            matrix_to_quaternion(identity(1, 3, dtype=dtype)), torch.tensor([[1.0, 0, 0, 0]], dtype=dtype)
        )
        # 90 degrees about the first axis: q = (cos 45, sin 45, 0, 0)
        s = math.sqrt(0.5)
        r = quaternion_to_matrix(torch.tensor([[s, s, 0.0, 0.0]], dtype=dtype))
        expect = torch.tensor([[[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]], dtype=dtype)
        torch.testing.assert_close(r, expect, atol=TOL[dtype], rtol=0)

    def test_product_is_composition(self, dtype):
        qa = torch.randn(30, 4, dtype=dtype, generator=_gen(4))
        qb = torch.randn(30, 4, dtype=dtype, generator=_gen(5))
        qa, qb = qa / qa.norm(dim=-1, keepdim=True), qb / qb.norm(dim=-1, keepdim=True)
        wa, va = qa[:, :1], qa[:, 1:]
        wb, vb = qb[:, :1], qb[:, 1:]
        prod = torch.cat(
            [wa * wb - (va * vb).sum(-1, keepdim=True), wa * vb + wb * va + torch.linalg.cross(va, vb)], -1
        )
        torch.testing.assert_close(
            quaternion_to_matrix(prod),
            compose(quaternion_to_matrix(qa), quaternion_to_matrix(qb)),
            atol=10 * TOL[dtype],
            rtol=0,
        )

    def test_half_turns_and_cube_group(self, dtype):
        r = _quarter_turns(dtype)
        assert r.shape == (24, 3, 3)
        torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
class TestAxisAngle:
    def test_matrix_round_trip(self, dtype):
        r = _rand(200, dtype)
        v = matrix_to_axis_angle(r)
        assert v.shape == (200, 3) and v.dtype == dtype
        assert (v.norm(dim=-1) <= math.pi + TOL[dtype]).all()
        torch.testing.assert_close(axis_angle_to_matrix(v), r, atol=10 * TOL[dtype], rtol=0)

    def test_vector_round_trip(self, dtype):
        axis = torch.randn(100, 3, dtype=dtype, generator=_gen(1))
        axis = axis / axis.norm(dim=-1, keepdim=True)
        angle = torch.rand(100, 1, dtype=dtype, generator=_gen(2)) * (math.pi - 0.01)
        v = axis * angle
        torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(v)), v, atol=100 * TOL[dtype], rtol=0)

    def test_zero_angle(self, dtype):
        zero = torch.zeros(2, 3, dtype=dtype)
        torch.testing.assert_close(axis_angle_to_matrix(zero), identity(2, 3, dtype=dtype), atol=0, rtol=0)
        torch.testing.assert_close(matrix_to_axis_angle(identity(2, 3, dtype=dtype)), zero, atol=0, rtol=0)

    def test_tiny_angle_is_smooth(self, dtype):
        v = torch.tensor([[1e-4, -2e-4, 3e-4], [1e-10, -2e-10, 3e-10]], dtype=dtype)
        r = axis_angle_to_matrix(v)
        # first order: R = I + [v]_x
        skew = torch.zeros(2, 3, 3, dtype=dtype)
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
        skew = skew - skew.transpose(-1, -2)
        torch.testing.assert_close(r, identity(2, 3, dtype=dtype) + skew, atol=1e-7, rtol=0)
        torch.testing.assert_close(matrix_to_axis_angle(r)[0], v[0], atol=0, rtol=1e-3)
        torch.testing.assert_close(matrix_to_axis_angle(r)[1], v[1], atol=1e-7, rtol=0)

    def test_known_values(self, dtype):
        # right-hand rule on (H, W, D): a quarter turn about axis 2 sends axis 0 to axis 1
        r = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=dtype))
        e0, e1 = torch.tensor([1.0, 0, 0], dtype=dtype), torch.tensor([0.0, 1, 0], dtype=dtype)
        torch.testing.assert_close(r[0] @ e0, e1, atol=TOL[dtype], rtol=0)

    def test_half_turn(self, dtype):
        h = math.pi / math.sqrt(2)
        v = torch.tensor([[math.pi, 0, 0], [0, 0, math.pi], [h, -h, 0]], dtype=dtype)
        r = axis_angle_to_matrix(v)
        back = matrix_to_axis_angle(r)
        torch.testing.assert_close(back.norm(dim=-1), torch.full((3,), math.pi, dtype=dtype), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(axis_angle_to_matrix(back), r, atol=10 * TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
class TestEuler:
    def test_matrix_round_trip(self, dtype, convention):
        r = _rand(200, dtype)
        e = matrix_to_euler(r, convention)
        assert e.shape == (200, 3) and e.dtype == dtype
        assert (e[:, 1].abs() <= math.pi / 2 + TOL[dtype]).all()
        torch.testing.assert_close(euler_to_matrix(e, convention), r, atol=10 * TOL[dtype], rtol=0)

    def test_angle_round_trip(self, dtype, convention):
        g = _gen(7)
        a = torch.stack(
            [
                (torch.rand(200, dtype=dtype, generator=g) * 2 - 1) * (math.pi - 0.01),
                (torch.rand(200, dtype=dtype, generator=g) * 2 - 1) * (math.pi / 2 - 0.01),
                (torch.rand(200, dtype=dtype, generator=g) * 2 - 1) * (math.pi - 0.01),
            ],
            -1,
        )
        torch.testing.assert_close(
            matrix_to_euler(euler_to_matrix(a, convention), convention), a, atol=100 * TOL[dtype], rtol=0
        )

    def test_is_product_of_axis_rotations(self, dtype, convention):
        a = torch.tensor([[0.3, -0.7, 1.9]], dtype=dtype)
        mats = []
        for i, c in enumerate(convention):
            v = torch.zeros(1, 3, dtype=dtype)
            v[0, "XYZ".index(c)] = a[0, i]
            mats.append(axis_angle_to_matrix(v))
        torch.testing.assert_close(
            euler_to_matrix(a, convention), mats[0] @ mats[1] @ mats[2], atol=TOL[dtype], rtol=0
        )

    @pytest.mark.parametrize("middle", [math.pi / 2, -math.pi / 2, math.pi / 2 - 1e-6])
    def test_gimbal_lock(self, dtype, convention, middle):
        a = torch.tensor([[0.4, middle, 0.3], [-2.0, middle, 2.5]], dtype=dtype)
        r = euler_to_matrix(a, convention)
        back = euler_to_matrix(matrix_to_euler(r, convention), convention)
        torch.testing.assert_close(back, r, atol=TOL[dtype], rtol=0)

    def test_exact_quarter_turns(self, dtype, convention):
        # exact 0/+-1 matrices, 8 of the 24 in exact gimbal lock for every convention
        r = _quarter_turns(dtype)
        back = euler_to_matrix(matrix_to_euler(r, convention), convention)
        torch.testing.assert_close(back, r, atol=TOL[dtype], rtol=0)


def test_default_convention_is_zyx():
    a = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(euler_to_matrix(a), euler_to_matrix(a, "ZYX"))
    torch.testing.assert_close(matrix_to_euler(euler_to_matrix(a)), a)


def test_lowercase_convention():
    a = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(euler_to_matrix(a, "xyz"), euler_to_matrix(a, "XYZ"))


@pytest.mark.parametrize(
    "convention, match",
    [
        ("ZY", "three letters"),
        ("ABC", "three letters"),
        (3, "three letters"),
        ("ZZX", "must not repeat"),
        ("ZXZ", "Tait-Bryan"),
    ],
)
def test_bad_convention(convention, match):
    with pytest.raises(ValueError, match=match):
        euler_to_matrix(torch.zeros(1, 3), convention)
    with pytest.raises(ValueError, match=match):
        matrix_to_euler(identity(1, 3), convention)


@pytest.mark.parametrize(
    "fn, arg, match",
    [
        (quaternion_to_matrix, torch.zeros(2, 3), r"quaternion must have shape \(B, 4\), got \(2, 3\)"),
        (axis_angle_to_matrix, torch.zeros(3), r"axis_angle must have shape \(B, 3\), got \(3,\)"),
        (euler_to_matrix, torch.zeros(2, 4), r"angles must have shape \(B, 3\)"),
        (matrix_to_quaternion, torch.zeros(2, 2, 2), r"rotation must have shape \(B, 3, 3\)"),
        (matrix_to_axis_angle, torch.zeros(3, 3), r"rotation must have shape \(B, 3, 3\)"),
        (matrix_to_euler, torch.zeros(1, 3, 4), r"rotation must have shape \(B, 3, 3\)"),
    ],
)
def test_shape_errors(fn, arg, match):
    with pytest.raises(ValueError, match=match):
        fn(arg)


def test_conversions_agree_with_scipy_rotation():
    """The batched torch conversions are scipy's (scalar-last quaternions, uppercase = intrinsic Euler axes)."""
    from scipy.spatial.transform import Rotation

    from monai_galr.groups import random_quaternion

    q = random_quaternion(32, torch.Generator().manual_seed(9))
    ref = Rotation.from_quat(q.numpy()[:, [1, 2, 3, 0]])
    m = quaternion_to_matrix(q)
    torch.testing.assert_close(m, torch.from_numpy(ref.as_matrix()), rtol=0, atol=1e-12)
    torch.testing.assert_close(matrix_to_axis_angle(m), torch.from_numpy(ref.as_rotvec()), rtol=0, atol=1e-9)
    for conv in ("ZYX", "XYZ", "YZX"):
        angles = torch.from_numpy(ref.as_euler(conv))
        torch.testing.assert_close(euler_to_matrix(angles, conv), m, rtol=0, atol=1e-12)
