"""SO(2) frequency blocks and SO(3) Wigner-D: group laws, e3nn agreement, and the convention of rotate_image."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai_galr.groups import angle_to_matrix, compose, identity, inverse, random_rotation, rotate_image
from monai_galr.groups.representations import harmonic_dim, representation, so2_representation, so3_representation
from monai_galr.networks.blocks.harmonic import HarmonicAction, HarmonicAnalysis

TOL = {torch.float32: 2e-5, torch.float64: 1e-10}
DEGREE = {2: 7, 3: 6}


def _rotations(dim: int, n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    return random_rotation(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [2, 3])
class TestGroupLaws:
    def test_identity(self, dim, dtype):
        rho = representation(identity(2, dim, dtype=dtype), DEGREE[dim])
        eye = torch.eye(harmonic_dim(dim, DEGREE[dim]), dtype=dtype)
        assert rho.dtype == dtype
        assert torch.allclose(rho, eye.expand_as(rho), atol=TOL[dtype] * 10)

    def test_homomorphism(self, dim, dtype):
        a, b = _rotations(dim, 4, dtype, 0), _rotations(dim, 4, dtype, 1)
        k = DEGREE[dim]
        lhs = representation(compose(a, b), k)
        rhs = representation(a, k) @ representation(b, k)
        assert (lhs - rhs).abs().max() < TOL[dtype] * 10

    def test_inverse_is_transpose(self, dim, dtype):
        r = _rotations(dim, 4, dtype, 2)
        k = DEGREE[dim]
        rho = representation(r, k)
        assert (representation(inverse(r), k) - rho.transpose(-1, -2)).abs().max() < TOL[dtype] * 10
        eye = torch.eye(rho.shape[-1], dtype=dtype)
        assert (rho @ rho.transpose(-1, -2) - eye).abs().max() < TOL[dtype] * 10


def test_so3_equals_e3nn_wigner_d():
    from e3nn import o3

    r = _rotations(3, 5, torch.float64, 3)
    for lmax in (0, 1, 4, 12):
        ours = so3_representation(r, lmax)
        theirs = o3.Irreps.spherical_harmonics(lmax).D_from_matrix(r)
        assert ours.shape == (5, (lmax + 1) ** 2, (lmax + 1) ** 2)
        assert (ours - theirs).abs().max() < 1e-5


def test_so2_blocks_exact_at_quarter_turns():
    rho = so2_representation(angle_to_matrix(torch.tensor([math.pi / 2], dtype=torch.float64)).round(), 5)
    # mode k turns by k * 90 degrees: block 1 is [[0, 1], [-1, 0]], block 2 is -I
    assert torch.equal(rho[0, 1:3, 1:3], torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64))
    assert torch.equal(rho[0, 3:5, 3:5], -torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_degree(bad):
    with pytest.raises(ValueError, match="modes"):
        so2_representation(identity(1, 2), bad)


def test_lmax_above_the_supported_limit():
    with pytest.raises(ValueError, match="lmax must be <= 32"):
        so3_representation(identity(1, 3), 33)


def test_high_degree_wigner_d_keeps_the_group_laws_in_float32():
    """Above e3nn's polynomial degree 12 (here 20) the recursion stays orthogonal and a homomorphism."""
    a, b = _rotations(3, 2, torch.float32, 5), _rotations(3, 2, torch.float32, 6)
    da, db = so3_representation(a, 20), so3_representation(b, 20)
    eye = torch.eye(441)
    assert (da @ da.transpose(-1, -2) - eye).abs().max() < 1e-5
    assert (so3_representation(compose(a, b), 20) - da @ db).abs().max() < 1e-5


def test_shell_harmonics_above_degree_12_are_the_same_functions():
    """The Legendre path (degree > 12) equals e3nn's polynomial harmonics on their common degrees, and the
    Wigner-D of degree 14 rotates its samples: Y(R u) = D(R) Y(u)."""
    from e3nn import o3

    from monai_galr.networks.blocks.harmonic import _shell_harmonics

    dirs, y14 = _shell_harmonics(14, 30)
    _, y12 = _shell_harmonics(12, 30)
    assert y14.shape == (30 * 29, 225)
    assert (y14[:, :169] - y12).abs().max() < 1e-9
    r = _rotations(3, 1, torch.float64, 7)[0]
    alpha, beta = o3.xyz_to_angles(dirs @ r.T)
    y_rot = o3.spherical_harmonics_alpha_beta(list(range(15)), alpha, beta, normalization="component")
    assert (y_rot - y14 @ so3_representation(r[None], 14)[0].T).abs().max() < 1e-8


def _smooth(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, *shape, generator=g)
    pool = F.avg_pool2d if len(shape) == 2 else F.avg_pool3d
    for _ in range(4):
        x = pool(x, 5, 1, 2)
    return x / x.std()


@pytest.mark.parametrize(
    "dim, shape, degree, radius, tol",
    [(2, (32, 32), 12, 14.0, 0.03), (3, (16, 20, 24), 8, 7.5, 0.03), (3, (16, 20, 24), 14, 7.5, 0.03)],
)
def test_representation_matches_rotate_image(dim, shape, degree, radius, tol):
    """Sampling the rotated image and projecting equals acting on the coefficients (not with R^-1)."""
    x = _smooth(shape, seed=dim)
    analysis = HarmonicAnalysis(dim, shape, radii=6, degree=degree, max_radius=radius)
    action = HarmonicAction(dim, degree)
    r = angle_to_matrix(torch.tensor([0.7])) if dim == 2 else _rotations(3, 1, torch.float32, 4)
    target = analysis(rotate_image(x, r))
    coeff = analysis(x)
    err = (action(coeff, r) - target).norm() / target.norm()
    err_inverse = (action(coeff, inverse(r)) - target).norm() / target.norm()
    assert err < tol
    assert err_inverse > 0.5  # the check can tell the two conventions apart
