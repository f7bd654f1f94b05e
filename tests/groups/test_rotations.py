"""Property tests of the SO(2)/SO(3) algebra: identity, compose, inverse, Haar sampling, validation, SO(2) angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_galr.groups import (
    angle_to_matrix,
    compose,
    identity,
    inverse,
    matrix_to_angle,
    quaternion_to_matrix,
    random_c4,
    random_quaternion,
    random_rotation,
    rotation_tolerance,
    validate_rotation,
)

# float32 and float64 each with its own tolerance
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
DTYPES = (torch.float32, torch.float64)
DIMS = (2, 3)


def _rand(batch: int, dim: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return random_rotation(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", DIMS)
class TestAlgebra:
    def test_identity(self, dim, dtype):
        e = identity(4, dim, dtype=dtype)
        assert e.shape == (4, dim, dim) and e.dtype == dtype
        r = _rand(4, dim, dtype)
        torch.testing.assert_close(compose(e, r), r, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(compose(r, e), r, atol=TOL[dtype], rtol=0)

    def test_identity_is_not_a_view(self, dim, dtype):
        e = identity(2, dim, dtype=dtype)
        e[0, 0, 0] = 5.0
        assert e[1, 0, 0] == 1.0

    def test_inverse(self, dim, dtype):
        r = _rand(16, dim, dtype)
        e = identity(16, dim, dtype=dtype)
        torch.testing.assert_close(compose(r, inverse(r)), e, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(compose(inverse(r), r), e, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(inverse(inverse(r)), r, atol=0, rtol=0)

    def test_associativity(self, dim, dtype):
        a, b, c = (_rand(16, dim, dtype, seed=s) for s in (1, 2, 3))
        torch.testing.assert_close(compose(compose(a, b), c), compose(a, compose(b, c)), atol=TOL[dtype], rtol=0)

    def test_compose_order_b_first(self, dim, dtype):
        a, b = _rand(8, dim, dtype, seed=4), _rand(8, dim, dtype, seed=5)
        v = torch.randn(8, dim, 1, dtype=dtype, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(compose(a, b) @ v, a @ (b @ v), atol=10 * TOL[dtype], rtol=0)

    def test_compose_broadcasts(self, dim, dtype):
        a, b = _rand(1, dim, dtype, seed=7), _rand(5, dim, dtype, seed=8)
        assert compose(a, b).shape == (5, dim, dim)

    def test_random_is_proper_rotation(self, dim, dtype):
        r = _rand(256, dim, dtype)
        assert r.shape == (256, dim, dim) and r.dtype == dtype
        e = identity(256, dim, dtype=dtype)
        torch.testing.assert_close(r.transpose(-1, -2) @ r, e, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(torch.linalg.det(r), torch.ones(256, dtype=dtype), atol=TOL[dtype], rtol=0)
        assert validate_rotation(r, dim=dim) is r

    def test_generator_reproducible(self, dim, dtype):
        torch.testing.assert_close(_rand(8, dim, dtype, seed=42), _rand(8, dim, dtype, seed=42), atol=0, rtol=0)
        assert not torch.allclose(_rand(8, dim, dtype, seed=42), _rand(8, dim, dtype, seed=43))


def test_compose_dimension_mismatch():
    with pytest.raises(ValueError, match="same dimension"):
        compose(identity(1, 2), identity(1, 3))


@pytest.mark.parametrize("bad", [1, 4, 2.0, True])
def test_identity_bad_dim(bad):
    with pytest.raises((ValueError, TypeError), match="dim"):
        identity(1, bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_bad_batch(bad):
    with pytest.raises(ValueError, match="batch must be a non-negative int"):
        random_rotation(bad, 2)


def test_empty_batch():
    assert random_rotation(0, 3).shape == (0, 3, 3)
    assert validate_rotation(identity(0, 3)).shape == (0, 3, 3)


class TestHaar:
    """Loose statistical checks, seeded so they cannot flake."""

    def test_so3_mean_and_trace_moments(self):
        r = random_rotation(20000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        # Haar: E[R] = 0 (each entry has std 1/sqrt(3); 20k samples -> std of the mean ~0.004)
        assert r.mean(0).abs().max() < 0.02
        # the character of the defining representation: E[tr R] = 0, E[(tr R)^2] = 1 (irreducible)
        tr = r.diagonal(dim1=-2, dim2=-1).sum(-1)
        assert abs(tr.mean().item()) < 0.03
        assert abs((tr**2).mean().item() - 1.0) < 0.05
        # rotation angle density (1 - cos t) / pi on [0, pi]: E[cos t] = -1/2
        cos_t = ((tr - 1) / 2).clamp(-1, 1)
        assert abs(cos_t.mean().item() + 0.5) < 0.02

    def test_so2_uniform_angle(self):
        r = random_rotation(20000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert r.mean(0).abs().max() < 0.02
        angle = matrix_to_angle(r)
        hist = torch.histc(angle, bins=8, min=0, max=2 * math.pi) / angle.numel()
        assert (hist - 1 / 8).abs().max() < 0.01

    def test_device_and_dtype(self):
        r = random_rotation(3, 3, dtype=torch.float64, device="cpu")
        assert r.dtype == torch.float64 and r.device.type == "cpu"


class TestC4:
    def test_values_are_exact_quarter_turns(self):
        r = random_c4(400, generator=torch.Generator().manual_seed(0))
        assert r.shape == (400, 2, 2)
        quarter = [angle_to_matrix(torch.tensor([k * math.pi / 2])).round() for k in range(4)]
        counts = [int(((r - q).abs().amax((-1, -2)) == 0).sum()) for q in quarter]
        assert sum(counts) == 400  # every element exactly one of the four
        assert min(counts) > 60  # and all four occur
        validate_rotation(r, dim=2)

    def test_reproducible(self):
        a = random_c4(10, generator=torch.Generator().manual_seed(3))
        b = random_c4(10, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
class TestSO2Angles:
    def test_matrix_form(self, dtype):
        r = angle_to_matrix(torch.tensor([math.pi / 2], dtype=dtype))
        torch.testing.assert_close(r[0], torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=dtype), atol=TOL[dtype], rtol=0)

    def test_round_trip(self, dtype):
        angle = torch.rand(100, dtype=dtype, generator=torch.Generator().manual_seed(0)) * (2 * math.pi)
        back = matrix_to_angle(angle_to_matrix(angle))
        assert back.dtype == dtype
        assert ((back >= 0) & (back < 2 * math.pi)).all()
        torch.testing.assert_close(back, angle, atol=10 * TOL[dtype], rtol=0)

    def test_wraps_into_0_2pi(self, dtype):
        angle = torch.tensor([-math.pi / 2, 5 * math.pi / 2, 0.0], dtype=dtype)
        expect = torch.tensor([3 * math.pi / 2, math.pi / 2, 0.0], dtype=dtype)
        torch.testing.assert_close(matrix_to_angle(angle_to_matrix(angle)), expect, atol=10 * TOL[dtype], rtol=0)

    def test_angles_add_under_compose(self, dtype):
        a, b = torch.tensor([0.3, 2.0], dtype=dtype), torch.tensor([1.1, 5.0], dtype=dtype)
        torch.testing.assert_close(
            compose(angle_to_matrix(a), angle_to_matrix(b)), angle_to_matrix(a + b), atol=TOL[dtype], rtol=0
        )


def test_angle_shape_errors():
    with pytest.raises(ValueError, match=r"angle must have shape \(B,\)"):
        angle_to_matrix(torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"shape \(B, 2, 2\)"):
        matrix_to_angle(torch.zeros(2, 3, 3))


def test_integer_angles_are_promoted():
    assert angle_to_matrix(torch.tensor([0, 1])).is_floating_point()


class TestValidateRotation:
    def test_tolerance_by_dtype(self):
        assert rotation_tolerance(torch.float64) < rotation_tolerance(torch.float32)

    def test_accepts_rotations(self):
        r = random_rotation(4, 3)
        assert validate_rotation(r) is r
        assert validate_rotation(r, dim=3) is r

    def test_not_a_tensor(self):
        with pytest.raises(TypeError, match="rotation must be a torch.Tensor.*got list"):
            validate_rotation([[1.0, 0.0], [0.0, 1.0]])

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match="floating point tensor, got dtype torch.int64"):
            validate_rotation(torch.eye(3, dtype=torch.int64)[None])

    @pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 2, 3), (1, 1, 1, 1)])
    def test_wrong_shape(self, shape):
        with pytest.raises(ValueError, match=r"must have shape \(B, 2, 2\) or \(B, 3, 3\)"):
            validate_rotation(torch.zeros(shape))

    def test_wrong_dim(self):
        with pytest.raises(ValueError, match=r"\(B, 3, 3\) for SO\(3\), got \(1, 2, 2\)"):
            validate_rotation(identity(1, 2), dim=3)

    def test_not_orthonormal(self):
        r = identity(2, 3) * 1.1
        with pytest.raises(ValueError, match="orthonormal"):
            validate_rotation(r)

    def test_nan(self):
        r = identity(1, 2)
        r[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="orthonormal"):
            validate_rotation(r)

    def test_reflection(self):
        r = identity(3, 3)
        r[2, 0, 0] = -1.0
        with pytest.raises(ValueError, match=r"proper rotation \(det = \+1\); element 2 has det = -1"):
            validate_rotation(r)

    def test_custom_name(self):
        with pytest.raises(ValueError, match="^my_r must"):
            validate_rotation(torch.zeros(2, 3), name="my_r")

    def test_float32_tolerance_accepts_rounding(self):
        r = random_rotation(8, 3, generator=torch.Generator().manual_seed(0)) + 1e-5
        validate_rotation(r)  # within the float32 tolerance
        with pytest.raises(ValueError, match="orthonormal"):
            validate_rotation(r.double())  # but not within the float64 one


class TestOneSampler:
    """random_quaternion is the one SO(3) sampler: each generator kind keeps its own seeded stream."""

    @pytest.mark.parametrize("make", [lambda: np.random.default_rng(4), lambda: np.random.RandomState(4)])
    def test_numpy_generators_draw_the_normals_in_wxyz_order(self, make):
        q = random_quaternion(5, make()).numpy()
        raw = make().standard_normal((5, 4))
        np.testing.assert_allclose(q, raw / np.linalg.norm(raw, axis=-1, keepdims=True), rtol=0, atol=1e-15)

    def test_matrices_agree_with_the_torch_conversion_and_scipy(self):
        from scipy.spatial.transform import Rotation

        q = random_quaternion(64, torch.Generator().manual_seed(2))
        m = random_rotation(64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        torch.testing.assert_close(m, quaternion_to_matrix(q), rtol=0, atol=1e-12)
        # scipy's quaternions are scalar-last
        np.testing.assert_allclose(m.numpy(), Rotation.from_quat(q.numpy()[:, [1, 2, 3, 0]]).as_matrix(), atol=1e-12)
        validate_rotation(m, dim=3)

    def test_torch_stream_is_the_previous_one(self):
        g = torch.Generator().manual_seed(0)
        q = torch.randn(8, 4, generator=g, dtype=torch.float64)
        old = quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True)).float()
        assert torch.equal(random_rotation(8, 3, generator=torch.Generator().manual_seed(0)), old)

    def test_so2_from_numpy(self):
        r = random_rotation(6, 2, generator=np.random.default_rng(1), dtype=torch.float64)
        angle = np.random.default_rng(1).random(6) * 2 * math.pi
        torch.testing.assert_close(r, angle_to_matrix(torch.as_tensor(angle)))

    def test_empty_batch(self):
        assert random_rotation(0, 3, generator=np.random.default_rng(0)).shape == (0, 3, 3)
