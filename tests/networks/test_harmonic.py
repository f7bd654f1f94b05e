"""The harmonic latent: exact group laws in the autoencoder, geometry checks, checkpoint guards, export; and the hybrid
latent (``harmonic_invariant="map"``: coefficients for the varying channels, the feature map for the invariant ones)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from monai_galr.groups import angle_to_matrix, compose, inverse, random_rotation
from monai_galr.networks import GroupActionAutoEncoder, RotatedReconstruction
from monai_galr.networks.blocks.harmonic import HarmonicAnalysis, HarmonicSynthesis, harmonic_latent_numel

_MODES = {2: 9, 3: 16}  # 2 * 5 - 1 Fourier numbers; (3 + 1)^2 spherical harmonics
HYBRID = {"harmonic_invariant": "map", "partition": "manual", "varying_fraction": 0.5}  # channels 0, 1 varying
POOLED = {**HYBRID, "harmonic_map_stride": 2}  # the map view average-pooled by 2


def _net(dim: int, **kw) -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    size = (16, 16) if dim == 2 else (8, 12, 16)
    args = dict(channels=(4, 8), strides=(2, 1), latent_channels=4, action="harmonic", spatial_size=size,
                harmonic_radii=3, harmonic_modes=5, harmonic_lmax=3)
    args.update(kw)
    return GroupActionAutoEncoder(dim, 1, 1, **args).eval()


def _image(net: GroupActionAutoEncoder, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 1, *net.spatial_size, generator=torch.Generator().manual_seed(1))


def _rot(dim: int, n: int, seed: int) -> torch.Tensor:
    return random_rotation(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [2, 3])
def test_latent_shape_and_map(dim):
    net = _net(dim)
    z = net.encode(_image(net))
    m = 9 if dim == 2 else 16
    assert z.shape == (2, 4, 3, m)
    assert net.latent_numel() == harmonic_latent_numel(4, 3, dim, 5 if dim == 2 else 3) == 4 * 3 * m
    lat_grid = tuple(n // 2 for n in net.spatial_size)
    assert net.latent_map(z).shape == (2, 4, *lat_grid)
    assert net(_image(net)).shape == (2, 1, *net.spatial_size)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kw", [{}, HYBRID, POOLED], ids=["harmonic", "hybrid", "hybrid_pooled_map"])
def test_group_laws_exact_in_latent(dim, kw):
    """Composition, inverse and the full circle hold on the decoded output to float rounding (the hybrid latent:
    half the channels read from their coefficients, half from their map)."""
    net = _net(dim, **kw)
    x = _image(net)
    a, b = _rot(dim, 2, 3), _rot(dim, 2, 4)
    with torch.no_grad():
        z = net.encode(x)
        two_steps = net.decode(net.apply_action(net.apply_action(z, b), a))
        one_shot = net.decode(net.apply_action(z, compose(a, b)))
        back = net.decode(net.apply_action(net.apply_action(z, a), inverse(a)))
        ident = net.decode(z)
    assert (two_steps - one_shot).abs().max() < 1e-5
    assert (back - ident).abs().max() < 1e-5


def test_twelve_steps_of_thirty_degrees_is_identity():
    net = _net(2, partition="all")
    x = _image(net)
    step = angle_to_matrix(torch.full((2,), math.pi / 6))
    with torch.no_grad():
        z = net.encode(x)
        zz = z
        for _ in range(12):
            zz = net.apply_action(zz, step)
        assert (zz - z).abs().max() < 1e-5
        assert not torch.allclose(net.apply_action(z, step), z, atol=1e-3)  # one step does move the latent


def test_invariant_channels_untouched():
    net = _net(3, partition="manual", varying_fraction=0.5)
    z = net.encode(_image(net))
    acted = net.apply_action(z, _rot(3, 2, 5))
    assert torch.equal(acted[:, 2:], z[:, 2:])
    assert not torch.allclose(acted[:, :2], z[:, :2], atol=1e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_training_pass_acts_on_every_channel_and_keeps_the_split(dim):
    """z_rotated (for mask_gradient: two_sided) rotates every channel; z_acted is the paper's M Phi(M z) + (1-M) z."""
    net = _net(dim, partition="manual", varying_fraction=0.5)
    x, r = _image(net), _rot(dim, 2, 7)
    out = net(x, r, x)
    m = net.ald.broadcast(net.ald.mask(), out["z"])
    assert torch.equal(out["z_acted"], m * net.action(m * out["z"], r) + (1 - m) * out["z"])
    torch.testing.assert_close(out["z_rotated"], net.action(out["z"], r))
    assert not torch.allclose(out["z_rotated"][:, 2:], out["z"][:, 2:], atol=1e-4)  # invariant channels too
    learned = GroupActionAutoEncoder(dim, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, action="learned",
                                     spatial_size=net.spatial_size)
    assert "z_rotated" not in learned(x, r, x)  # the learned action mixes channels: no per-channel rotation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spatial_size=None), "needs spatial_size"),
        (dict(spatial_size=(15, 16)), "multiple of the total stride"),
        (dict(harmonic_modes=9, harmonic_angles=16), r"harmonic_modes \(9\) must be <= harmonic_angles // 2"),
        (dict(harmonic_max_radius=20.0), "harmonic_max_radius must lie in"),
        (dict(harmonic_max_radius=0.0), "harmonic_max_radius must lie in"),
        (dict(harmonic_radii=0), "harmonic_radii must be an int >= 1"),
    ],
)
def test_bad_geometry_2d(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _net(2, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(harmonic_lmax=33), "harmonic_lmax must be <= 32"),
        (dict(harmonic_angles=7), "harmonic_angles .* must be even"),
        (dict(harmonic_angles=4), "harmonic_angles .* >= 2 \\(harmonic_lmax \\+ 1\\)"),
    ],
)
def test_bad_geometry_3d(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _net(3, **kwargs)


def test_outer_shell_reaches_corners_by_default():
    a = HarmonicAnalysis(3, (4, 6, 8), radii=2, degree=1)
    corner = math.sqrt(2**2 + 3**2 + 4**2)
    assert a.signature[4].item() == pytest.approx(corner)
    with pytest.raises(ValueError, match="half-diagonal"):
        HarmonicAnalysis(3, (4, 6, 8), radii=2, degree=1, max_radius=corner + 0.1)


def test_input_size_must_match_spatial_size():
    net = _net(2)
    with pytest.raises(ValueError, match="must equal the network's spatial_size"):
        net(torch.rand(1, 1, 32, 32))


def test_synthesis_inverts_analysis_on_band_limited_content():
    """A map built from the harmonics themselves comes back (interpolation error only)."""
    shape = (32, 32)
    ana = HarmonicAnalysis(2, shape, radii=12, degree=4, max_radius=16.0)
    syn = HarmonicSynthesis(2, shape, radii=12, degree=4, max_radius=16.0)
    coeff = torch.zeros(1, 1, 12, 7)
    coeff[..., 0] = 1.0
    coeff[..., 3] = 0.5  # cos(2 phi) at every ring
    back = ana(syn(coeff))
    assert (back[..., 2:10, :] - coeff[..., 2:10, :]).abs().max() < 0.05


def test_checkpoint_guards_name_the_action():
    harm = _net(2)
    grid = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, action="grid")
    with pytest.raises(RuntimeError, match="trained with action 'harmonic'"):
        grid.load_state_dict(harm.state_dict())
    with pytest.raises(RuntimeError, match="not trained with action 'harmonic'"):
        harm.load_state_dict(grid.state_dict())
    other = _net(2, harmonic_radii=4)
    with pytest.raises(RuntimeError, match="harmonic_radii=3.*differs.*harmonic_radii=4"):
        other.load_state_dict(harm.state_dict())
    same = _net(2)
    same.load_state_dict(harm.state_dict())  # the same geometry loads


@pytest.mark.parametrize("dim", [2, 3])
def test_traced_export_matches_eager(dim):
    net = _net(dim)
    wrapped = RotatedReconstruction(net, _rot(dim, 1, 6)[0]).eval()
    x = _image(net)
    traced = torch.jit.trace(wrapped, x)  # check_trace on: the graph must be the same on every invocation
    x2 = torch.rand_like(x)
    assert torch.allclose(traced(x2), wrapped(x2), atol=1e-5)


def test_gradients_reach_encoder_through_analysis():
    net = _net(3).train()
    x = _image(net)
    r = _rot(3, 2, 7)
    out = net(x, r, x)
    out["pred"].mean().backward()
    first = next(net.encode.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


# ---- the hybrid latent -------------------------------------------------------------------------------------------
def _hybrid(dim: int, **kw) -> GroupActionAutoEncoder:
    return _net(dim, **{**HYBRID, **kw})


def _grid(net: GroupActionAutoEncoder) -> tuple[int, ...]:
    return tuple(n // 2 for n in net.spatial_size)


@pytest.mark.parametrize("dim", [2, 3])
def test_layout_coefficients_then_the_feature_map(dim):
    net = _hybrid(dim)
    x = _image(net)
    grid = _grid(net)
    with torch.no_grad():
        z = net.encode(x)
        feat = net.encode[:-1](x)  # the encoder up to (not including) the harmonic step: the tanh feature map
        coeff = HarmonicAnalysis.forward(net.encode.harmonic, feat)  # the plain harmonic analysis of that map
    s = 3 * _MODES[dim]
    assert z.shape == (2, 4, s + math.prod(grid))
    assert net.latent_numel() == 4 * (s + math.prod(grid))
    torch.testing.assert_close(z[..., s:].reshape(2, 4, *grid), feat)
    torch.testing.assert_close(z[..., :s].reshape(2, 4, 3, -1), coeff)


@pytest.mark.parametrize("dim", [2, 3])
def test_decoder_reads_coefficients_of_varying_and_map_of_invariant_channels(dim):
    net = _hybrid(dim)  # channels 0, 1 varying; 2, 3 invariant
    with torch.no_grad():
        z = net.encode(_image(net))
        rendered = net.latent_map(z)
        s = 3 * _MODES[dim]
        feat = z[..., s:].reshape(2, 4, *_grid(net))
        torch.testing.assert_close(rendered[:, 2:], feat[:, 2:])  # invariant: the map as held
        assert not torch.allclose(rendered[:, :2], feat[:, :2], atol=1e-3)  # varying: rendered from coefficients
        # changing a varying channel's map view, or an invariant channel's coefficients, changes nothing decoded
        poked = z.clone()
        poked[:, :2, s:] += 1.0
        poked[:, 2:, :s] += 1.0
        torch.testing.assert_close(net.decode(poked), net.decode(z))


@pytest.mark.parametrize("dim", [2, 3])
def test_action_leaves_invariant_channels_and_moves_the_rest(dim):
    """(The exact group laws of the hybrid latent: tests/networks/test_harmonic.py, test_group_laws_exact_in_latent.)"""
    net = _hybrid(dim)
    with torch.no_grad():
        z = net.encode(_image(net))
        acted = net.apply_action(z, _rot(dim, 2, 3))
    assert torch.equal(acted[:, 2:], z[:, 2:])  # invariant channels untouched, both views
    assert not torch.allclose(net.decode(acted), net.decode(z), atol=1e-3)  # the rotation does act


@pytest.mark.parametrize("dim", [2, 3])
def test_learned_mask_gets_a_gradient_through_the_view_choice(dim):
    net = _hybrid(dim, partition="learned", alpha_init=1.0).train()
    x, r = _image(net), _rot(dim, 2, 7)
    out = net(x, r, x)
    assert out["z_rotated"].shape == out["z"].shape == out["z_target"].shape
    out["pred"].mean().backward()
    assert net.ald.alpha.grad is not None and net.ald.alpha.grad.abs().min() > 0
    twin = copy.deepcopy(net)  # the decoder's mask follows the copy's own ALD
    assert twin.decode.harmonic.mask.__self__ is twin.ald


def test_checkpoint_guards_name_the_invariant_view():
    hybrid, plain = _hybrid(2), _hybrid(2, harmonic_invariant="harmonic")
    with pytest.raises(RuntimeError, match="as 'map' but this network's harmonic_invariant is 'harmonic'"):
        plain.load_state_dict(hybrid.state_dict())
    with pytest.raises(RuntimeError, match="as 'harmonic' but this network's harmonic_invariant is 'map'"):
        hybrid.load_state_dict(plain.state_dict())
    _hybrid(2).load_state_dict(hybrid.state_dict())


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
def test_hybrid_traced_export_matches_eager(dim, stride):
    net = _hybrid(dim, harmonic_map_stride=stride)
    wrapped = RotatedReconstruction(net, _rot(dim, 1, 6)[0]).eval()
    x = _image(net)
    traced = torch.jit.trace(wrapped, x)
    x2 = torch.rand_like(x)
    assert torch.allclose(traced(x2), wrapped(x2), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(action="grid"), "harmonic_invariant 'map' .* needs action 'harmonic', got action 'grid'"),
        (dict(partition="learned", mask_gate="gumbel"), "needs mask_gate 'ste'.*got mask_gate 'gumbel'"),
        (dict(harmonic_invariant="cartesian"),
         r"harmonic_invariant must be one of \('harmonic', 'map'\), got 'cartesian'"),
        (dict(harmonic_map_stride=3), r"harmonic_map_stride \(3\) must divide every size of the \(8, 8\) latent grid"),
        (dict(harmonic_map_stride=0), "harmonic_map_stride must be an int >= 1, got 0"),
        (dict(harmonic_map_stride=2, harmonic_invariant="harmonic"),
         "harmonic_map_stride 2 pools the map view of the hybrid latent and needs harmonic_invariant 'map'"),
    ],
)
def test_hybrid_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _hybrid(2, **kwargs)


def test_hybrid_malformed_latent_is_named():
    net = _hybrid(2)
    with pytest.raises(ValueError, match=r"hybrid harmonic latent must have shape \(B, L, 27 \+ 64\)"):
        net.decode(torch.zeros(1, 4, 90))


# ---- the pooled map view (harmonic_map_stride) ----------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3])
def test_pooled_map_view_is_the_average_pooled_feature_map(dim):
    net = _hybrid(dim, harmonic_map_stride=2)
    x = _image(net)
    pooled = tuple(n // 2 for n in _grid(net))
    with torch.no_grad():
        z = net.encode(x)
        feat = net.encode[:-1](x)
        coeff = HarmonicAnalysis.forward(net.encode.harmonic, feat)  # the rings still sample the full map
    pool = torch.nn.functional.avg_pool2d if dim == 2 else torch.nn.functional.avg_pool3d
    s = 3 * _MODES[dim]
    assert z.shape == (2, 4, s + math.prod(pooled))
    assert net.latent_numel() == 4 * (s + math.prod(pooled))
    torch.testing.assert_close(z[..., :s].reshape(2, 4, 3, -1), coeff)
    torch.testing.assert_close(z[..., s:].reshape(2, 4, *pooled), pool(feat, 2))
    with torch.no_grad():  # the decoder reads an invariant channel's pooled map, brought back by nearest upsampling
        rendered = net.latent_map(z)
    up = torch.nn.functional.interpolate(pool(feat, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(rendered[:, 2:], up[:, 2:])
    assert rendered.shape == (2, 4, *_grid(net))


def test_checkpoint_guard_names_the_map_stride():
    pooled, full = _hybrid(2, harmonic_map_stride=2), _hybrid(2)
    with pytest.raises(RuntimeError, match="harmonic_map_stride 2 but this network's is 1; set harmonic_map_stride: 2"):
        full.load_state_dict(pooled.state_dict())
    with pytest.raises(RuntimeError, match="harmonic_map_stride 1 but this network's is 2; set harmonic_map_stride: 1"):
        pooled.load_state_dict(full.state_dict())
    state = full.state_dict()
    state["encode.harmonic.invariant_map"] = torch.ones(1)  # a hybrid checkpoint from before the entry
    _hybrid(2).load_state_dict(state)
