"""The image-space action ``rotate_image``: exactness at quarter turns, group law, rigidity, errors."""

from __future__ import annotations

import math

import pytest
import torch

from monai_galr.groups import (
    angle_to_matrix,
    axis_angle_to_matrix,
    compose,
    identity,
    inverse,
    random_rotation,
    rotate_image,
    rotation_to_theta,
)

DTYPES = (torch.float32, torch.float64)
# resampling at quarter turns lands on voxel centres: exact up to the arithmetic of the sampling grid
EXACT_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
# stated interpolation tolerance: two (tri)linear resamplings vs one, on smooth content (Gaussian blobs, sigma 3-3.5
# voxels, peak 1) that stays inside the inscribed disc/ball; measured errors are below 0.05 (max) and 0.002 (mean)
INTERP_MAX, INTERP_MEAN = 0.07, 0.004


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coords(shape: tuple[int, ...], dtype: torch.dtype) -> list[torch.Tensor]:
    """Index coordinates relative to the grid centre ``(N - 1) / 2``, one tensor per axis."""
    axes = [torch.arange(n, dtype=dtype) - (n - 1) / 2 for n in shape]
    return list(torch.meshgrid(*axes, indexing="ij"))


def _smooth(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Two Gaussian blobs (sigma 3 and 3.5 voxels), ``(1, 1, *shape)``.

    They stay inside the inscribed disc/ball of any grid of side >= 26, so no content leaves the grid.
    """
    c = _coords(shape, dtype)
    off_a = [2.0, -2.0, 1.0][: len(shape)]
    off_b = [-3.0, 3.0, -2.0][: len(shape)]
    a = torch.exp(-sum((ci - o) ** 2 for ci, o in zip(c, off_a)) / (2 * 3.5**2))
    b = torch.exp(-sum((ci - o) ** 2 for ci, o in zip(c, off_b)) / (2 * 3.0**2))
    return (a + 0.5 * b)[None, None]


def _ball(shape: tuple[int, ...], radius: float, centre: tuple[float, ...] | None = None) -> torch.Tensor:
    """A disc/ball with a soft edge (sigmoid, 0.5 voxel), ``(1, 1, *shape)``, centred at the grid centre + ``centre``.

    Thresholding at 0.5 gives the binary ball ``|p - centre| <= radius``.
    """
    c = _coords(shape, torch.float64)
    centre = centre or (0.0,) * len(shape)
    dist = torch.sqrt(sum((ci - o) ** 2 for ci, o in zip(c, centre)))
    return torch.sigmoid((radius - dist) / 0.5).to(torch.float32)[None, None]


def _naive_rotate(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """A rotation in normalized [-1, 1] coordinates (the common mistake): it shears/scales non-cubic grids."""
    a = r.transpose(-1, -2).flip(-1).flip(-2)
    theta = torch.cat([a, torch.zeros(*a.shape[:-1], 1, dtype=a.dtype)], -1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float(2 * (a * b).sum() / (a.sum() + b.sum()))


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    c = _coords(tuple(mask.shape[2:]), torch.float64)
    m = mask[0, 0].to(torch.float64)
    return torch.stack([(ci * m).sum() / m.sum() for ci in c])


def _axis_rotation(axis: int, angle: float, batch: int, dtype: torch.dtype) -> torch.Tensor:
    v = torch.zeros(batch, 3, dtype=dtype)
    v[:, axis] = angle
    return axis_angle_to_matrix(v)


@pytest.mark.parametrize("dtype", DTYPES)
class TestExact:
    def test_identity_2d(self, dtype):
        x = torch.rand(3, 2, 9, 14, dtype=dtype, generator=_gen())
        torch.testing.assert_close(rotate_image(x, identity(3, 2, dtype=dtype)), x, atol=EXACT_TOL[dtype], rtol=0)

    def test_identity_3d(self, dtype):
        x = torch.rand(2, 1, 5, 7, 6, dtype=dtype, generator=_gen())
        torch.testing.assert_close(rotate_image(x, identity(2, 3, dtype=dtype)), x, atol=EXACT_TOL[dtype], rtol=0)

    @pytest.mark.parametrize("k", [1, 2, 3])
    @pytest.mark.parametrize("mode", ["bilinear", "nearest"])
    def test_rot90_2d(self, dtype, k, mode):
        x = torch.rand(2, 3, 8, 8, dtype=dtype, generator=_gen(k))
        r = angle_to_matrix(torch.full((2,), k * math.pi / 2, dtype=dtype))
        y = rotate_image(x, r, mode=mode)
        assert y.shape == x.shape and y.dtype == dtype
        torch.testing.assert_close(y, torch.rot90(x, k, dims=(2, 3)), atol=EXACT_TOL[dtype], rtol=0)

    def test_rot90_2d_odd_size(self, dtype):
        x = torch.rand(1, 1, 7, 7, dtype=dtype, generator=_gen())
        r = angle_to_matrix(torch.tensor([math.pi / 2], dtype=dtype))
        torch.testing.assert_close(rotate_image(x, r), torch.rot90(x, 1, dims=(2, 3)), atol=EXACT_TOL[dtype], rtol=0)

    # a quarter turn about array axis a turns the next axis (a+1) towards (a+2): rot90 over those dims
    @pytest.mark.parametrize("axis, dims", [(0, (3, 4)), (1, (4, 2)), (2, (2, 3))])
    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_rot90_3d(self, dtype, axis, dims, k):
        x = torch.rand(2, 2, 8, 8, 8, dtype=dtype, generator=_gen(k))
        y = rotate_image(x, _axis_rotation(axis, k * math.pi / 2, 2, dtype))
        torch.testing.assert_close(y, torch.rot90(x, k, dims=dims), atol=EXACT_TOL[dtype], rtol=0)

    def test_half_turn_non_square(self, dtype):
        # a 180-degree turn keeps a non-square grid: it is exactly the flip of both axes
        x = torch.rand(2, 1, 16, 24, dtype=dtype, generator=_gen())
        r = angle_to_matrix(torch.full((2,), math.pi, dtype=dtype))
        torch.testing.assert_close(rotate_image(x, r), x.flip(2, 3), atol=EXACT_TOL[dtype], rtol=0)

    @pytest.mark.parametrize("axis", [0, 1, 2])
    def test_half_turn_non_cubic(self, dtype, axis):
        x = torch.rand(1, 1, 6, 8, 10, dtype=dtype, generator=_gen(axis))
        others = tuple(2 + a for a in range(3) if a != axis)
        y = rotate_image(x, _axis_rotation(axis, math.pi, 1, dtype))
        torch.testing.assert_close(y, x.flip(*others), atol=EXACT_TOL[dtype], rtol=0)

    def test_quarter_turn_3d_keeps_unchanged_axis_non_cubic(self, dtype):
        # about axis 2 on 6x6x10: the turned plane is square, so the result is still exact
        x = torch.rand(1, 1, 6, 6, 10, dtype=dtype, generator=_gen())
        y = rotate_image(x, _axis_rotation(2, math.pi / 2, 1, dtype))
        torch.testing.assert_close(y, torch.rot90(x, 1, dims=(2, 3)), atol=EXACT_TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
class TestGroupLaw:
    @pytest.mark.parametrize("shape", [(32, 32), (28, 36)])
    def test_composition_2d(self, dtype, shape):
        x = _smooth(shape, dtype).expand(4, 1, *shape)
        g = random_rotation(4, 2, generator=_gen(1), dtype=dtype)
        h = random_rotation(4, 2, generator=_gen(2), dtype=dtype)
        err = (rotate_image(rotate_image(x, h), g) - rotate_image(x, compose(g, h))).abs()
        assert err.max() < INTERP_MAX and err.mean() < INTERP_MEAN

    @pytest.mark.parametrize("shape", [(26, 26, 26), (26, 28, 32)])
    def test_composition_3d(self, dtype, shape):
        x = _smooth(shape, dtype).expand(3, 1, *shape)
        g = random_rotation(3, 3, generator=_gen(3), dtype=dtype)
        h = random_rotation(3, 3, generator=_gen(4), dtype=dtype)
        err = (rotate_image(rotate_image(x, h), g) - rotate_image(x, compose(g, h))).abs()
        assert err.max() < INTERP_MAX and err.mean() < INTERP_MEAN

    def test_composition_order_matters(self, dtype):
        # the group-law test can fail: with the factors swapped the error is far above the tolerance
        shape = (26, 26, 26)
        x = _smooth(shape, dtype)
        g = _axis_rotation(0, math.pi / 2, 1, dtype)
        h = _axis_rotation(1, math.pi / 2, 1, dtype)
        wrong = (rotate_image(rotate_image(x, h), g) - rotate_image(x, compose(h, g))).abs()
        assert wrong.max() > 5 * INTERP_MAX

    @pytest.mark.parametrize("shape", [(32, 32), (27, 33), (26, 26, 26), (26, 28, 31)])
    def test_inverse_undoes(self, dtype, shape):
        d = len(shape)
        x = _smooth(shape, dtype).expand(3, 1, *shape)
        g = random_rotation(3, d, generator=_gen(5), dtype=dtype)
        err = (rotate_image(rotate_image(x, g), inverse(g)) - x).abs()
        assert err.max() < INTERP_MAX and err.mean() < INTERP_MEAN

    def test_channels_rotate_together(self, dtype):
        x = torch.cat([_smooth((26, 26), dtype), 2 * _smooth((26, 26), dtype)], 1)
        y = rotate_image(x, angle_to_matrix(torch.tensor([0.7], dtype=dtype)))
        torch.testing.assert_close(y[:, 1], 2 * y[:, 0], atol=EXACT_TOL[dtype], rtol=0)


@pytest.mark.parametrize("shape", [(32, 32), (16, 24), (20, 20, 20), (16, 24, 32), (15, 20, 27)])
def test_exact_on_affine_content(shape):
    """(Tri)linear interpolation reproduces an affine image exactly, so y(p) = x(R^T (p - c) + c) holds to machine
    precision wherever the source point lies inside the grid: the geometry (centre, axis order, aspect ratio) is exact.
    """
    d = len(shape)
    c = _coords(shape, torch.float64)
    slope = [0.3, -0.7, 0.5][:d]

    def image(coords):
        return 5.0 + sum(a * ci for a, ci in zip(slope, coords))

    x = image(c)[None, None]
    half = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64)
    for seed in range(3):
        r = random_rotation(1, d, generator=_gen(seed), dtype=torch.float64)
        src = torch.stack(c, -1) @ r[0]  # rows p^T R = (R^T p)^T
        expect = image(src.unbind(-1))
        inside = (src.abs() <= half - 1).all(-1)
        assert inside.sum() > 0.2 * inside.numel()
        err = (rotate_image(x, r)[0, 0] - expect)[inside].abs().max()
        assert err < 1e-12


class TestRigidity:
    """Rotations are rigid on non-cubic grids: discs stay discs, balls stay balls, centres move by R."""

    def test_disc_in_16x24(self):
        x = _ball((16, 24), 5.0)
        r = random_rotation(8, 2, generator=_gen(0))
        y = rotate_image(x.expand(8, 1, 16, 24), r)
        for i in range(8):
            assert _dice(y[i : i + 1] > 0.5, x > 0.5) > 0.95

    def test_ball_in_16x24x32(self):
        # radius 6: at radius 5 a whole lattice shell of this half-integer grid lies 0.025 voxel inside the sphere,
        # so thresholding at 0.5 hinges on interpolation noise there (Dice then ~0.945 for a correct rotation)
        x = _ball((16, 24, 32), 6.0)
        r = random_rotation(8, 3, generator=_gen(1))
        y = rotate_image(x.expand(8, 1, 16, 24, 32), r)
        for i in range(8):
            assert _dice(y[i : i + 1] > 0.5, x > 0.5) > 0.95

    @pytest.mark.parametrize("shape, radius", [((16, 24), 5.0), ((16, 24, 32), 6.0)])
    def test_a_non_rigid_rotation_would_fail(self, shape, radius):
        # the two checks above can fail: rotating in normalized coordinates stretches the ball
        d = len(shape)
        x = _ball(shape, radius)
        r = random_rotation(8, d, generator=_gen(d - 1))
        y = _naive_rotate(x.expand(8, 1, *shape), r)
        assert min(_dice(y[i : i + 1] > 0.5, x > 0.5) for i in range(8)) < 0.9

    @pytest.mark.parametrize(
        "shape, radius, offset", [((16, 24), 3.0, (2.0, -3.0)), ((16, 24, 32), 3.5, (1.0, -2.0, 2.5))]
    )
    def test_off_centre_ball_moves_by_r(self, shape, radius, offset):
        d = len(shape)
        x = _ball(shape, radius, offset)
        off = torch.tensor(offset, dtype=torch.float64)
        for seed in range(4):
            r = random_rotation(1, d, generator=_gen(seed))
            y = rotate_image(x, r)
            assert (_centroid(y) - r[0].double() @ off).abs().max() < 0.25
            assert abs(float(y.sum() / x.sum()) - 1) < 0.04


class TestOptions:
    def test_single_rotation_broadcasts(self):
        x = torch.rand(3, 1, 10, 12, generator=_gen())
        r = angle_to_matrix(torch.tensor([0.4]))
        expect = rotate_image(x, r.expand(3, 2, 2))
        torch.testing.assert_close(rotate_image(x, r[0]), expect, atol=0, rtol=0)
        torch.testing.assert_close(rotate_image(x, r), expect, atol=0, rtol=0)

    def test_zeros_padding_and_border(self):
        x = torch.ones(1, 1, 16, 16)
        r = angle_to_matrix(torch.tensor([math.pi / 4]))
        assert rotate_image(x, r, padding_mode="zeros")[0, 0, 0, 0] == 0
        torch.testing.assert_close(rotate_image(x, r, padding_mode="border"), x)
        torch.testing.assert_close(rotate_image(x, r, padding_mode="reflection"), x)

    def test_nearest_keeps_labels(self):
        x = torch.randint(0, 4, (1, 1, 12, 12), generator=_gen()).float()
        y = rotate_image(x, angle_to_matrix(torch.tensor([0.3])), mode="nearest")
        assert set(y.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}

    def test_gradient_flows_to_image(self):
        x = torch.rand(1, 1, 8, 8, generator=_gen(), requires_grad=True)
        rotate_image(x, angle_to_matrix(torch.tensor([0.5]))).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0

    def test_rotation_dtype_follows_image(self):
        x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=_gen())
        y = rotate_image(x, angle_to_matrix(torch.tensor([0.5])))  # float32 rotation, float64 image
        assert y.dtype == torch.float64

    def test_validate_false_skips_the_rotation_check(self):
        x = torch.rand(1, 1, 8, 8, generator=_gen())
        scaled = 0.5 * identity(1, 2)
        rotate_image(x, scaled, validate=False)  # trusted caller: no check
        with pytest.raises(ValueError, match="orthonormal"):
            rotate_image(x, scaled)

    def test_theta_has_no_translation(self):
        theta = rotation_to_theta(random_rotation(2, 3, generator=_gen()), (16, 24, 32))
        assert theta.shape == (2, 3, 4)
        assert (theta[..., -1] == 0).all()


class TestErrors:
    @pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 1, 2, 8, 8, 8)])
    def test_wrong_ndim(self, shape):
        with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\) or \(B, C, H, W, D\) tensor, got"):
            rotate_image(torch.zeros(shape), identity(1, 2))

    def test_not_a_tensor(self):
        with pytest.raises(ValueError, match="got ndarray"):
            import numpy as np

            rotate_image(np.zeros((1, 1, 4, 4)), identity(1, 2))

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match="rotation has batch size 3 but the image batch has 2"):
            rotate_image(torch.zeros(2, 1, 8, 8), identity(3, 2))

    def test_rotation_dim_mismatch(self):
        with pytest.raises(ValueError, match=r"\(B, 3, 3\) for SO\(3\)"):
            rotate_image(torch.zeros(1, 1, 4, 4, 4), identity(1, 2))
        with pytest.raises(ValueError, match=r"\(B, 2, 2\) for a 2D image"):
            rotate_image(torch.zeros(1, 1, 4, 4), identity(1, 3), validate=False)

    def test_bad_mode(self):
        with pytest.raises(ValueError, match=r"mode must be one of \('bilinear', 'nearest'\), got 'bicubic'"):
            rotate_image(torch.zeros(1, 1, 4, 4), identity(1, 2), mode="bicubic")

    def test_bad_padding(self):
        with pytest.raises(ValueError, match=r"padding_mode must be one of .*got 'constant'"):
            rotate_image(torch.zeros(1, 1, 4, 4), identity(1, 2), padding_mode="constant")

    def test_reflection_rotation(self):
        r = identity(1, 2)
        r[0, 0, 0] = -1
        with pytest.raises(ValueError, match="proper rotation"):
            rotate_image(torch.zeros(1, 1, 4, 4), r)

    def test_theta_shape_mismatch(self):
        with pytest.raises(ValueError, match="acts on 3 spatial dims"):
            rotation_to_theta(identity(1, 3), (8, 8))


@pytest.mark.parametrize("shape", [(10, 12), (7, 5), (16, 24, 32), (7, 9, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_grid_equals_torch(shape, dtype):
    """The axis-by-axis grid is ``F.affine_grid`` (align_corners=False) on non-square grids, any affine theta."""
    from monai_galr.groups.action import affine_grid

    d = len(shape)
    g = torch.Generator().manual_seed(len(shape) * 7 + shape[0])
    theta = rotation_to_theta(random_rotation(3, d, generator=g).to(dtype), shape)
    theta = theta + 0.1 * torch.randn(3, d, d + 1, generator=g).to(dtype)  # shear and translation too
    ours = affine_grid(theta, shape)
    theirs = torch.nn.functional.affine_grid(theta, [3, 1, *shape], align_corners=False)
    assert ours.shape == theirs.shape == (3, *shape, d)
    assert ours.dtype == dtype
    assert (ours - theirs).abs().max() < (1e-6 if dtype == torch.float32 else 1e-12)


def test_affine_grid_bad_theta():
    from monai_galr.groups.action import affine_grid

    with pytest.raises(ValueError, match=r"theta must have shape \(B, 3, 4\) for a 3D grid, got \(2, 2, 3\)"):
        affine_grid(torch.zeros(2, 2, 3), (4, 4, 4))
