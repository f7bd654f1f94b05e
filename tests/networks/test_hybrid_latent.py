"""The hybrid harmonic latent (``harmonic_invariant="map"``): coefficients for the varying channels, the Cartesian
feature map for the invariant ones; exact group laws on what is decoded, checkpoint guards, export, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from monai_galr.groups import compose, inverse, random_rotation
from monai_galr.networks import GroupActionAutoEncoder, RotatedReconstruction
from monai_galr.networks.blocks.harmonic import HarmonicAnalysis

_MODES = {2: 9, 3: 16}  # 2 * 5 - 1 Fourier numbers; (3 + 1)^2 spherical harmonics


def _net(dim: int, **kw) -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    size = (16, 16) if dim == 2 else (8, 12, 16)
    args = dict(channels=(4, 8), strides=(2, 1), latent_channels=4, action="harmonic", spatial_size=size,
                harmonic_radii=3, harmonic_modes=5, harmonic_lmax=3, harmonic_invariant="map",
                partition="manual", varying_fraction=0.5)
    args.update(kw)
    return GroupActionAutoEncoder(dim, 1, 1, **args).eval()


def _image(net: GroupActionAutoEncoder, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 1, *net.spatial_size, generator=torch.Generator().manual_seed(1))


def _rot(dim: int, n: int, seed: int) -> torch.Tensor:
    return random_rotation(n, dim, generator=torch.Generator().manual_seed(seed))


def _grid(net: GroupActionAutoEncoder) -> tuple[int, ...]:
    return tuple(n // 2 for n in net.spatial_size)


@pytest.mark.parametrize("dim", [2, 3])
def test_layout_coefficients_then_the_feature_map(dim):
    net = _net(dim)
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
    net = _net(dim)  # channels 0, 1 varying; 2, 3 invariant
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
def test_group_laws_exact_on_what_is_decoded(dim):
    net = _net(dim)
    x = _image(net)
    a, b = _rot(dim, 2, 3), _rot(dim, 2, 4)
    with torch.no_grad():
        z = net.encode(x)
        two_steps = net.decode(net.apply_action(net.apply_action(z, b), a))
        one_shot = net.decode(net.apply_action(z, compose(a, b)))
        back = net.decode(net.apply_action(net.apply_action(z, a), inverse(a)))
        ident = net.decode(z)
        acted = net.apply_action(z, a)
    assert (two_steps - one_shot).abs().max() < 1e-5
    assert (back - ident).abs().max() < 1e-5
    assert torch.equal(acted[:, 2:], z[:, 2:])  # invariant channels untouched, both views
    assert not torch.allclose(net.decode(acted), ident, atol=1e-3)  # the rotation does act


@pytest.mark.parametrize("dim", [2, 3])
def test_learned_mask_gets_a_gradient_through_the_view_choice(dim):
    net = _net(dim, partition="learned", alpha_init=1.0).train()
    x, r = _image(net), _rot(dim, 2, 7)
    out = net(x, r, x)
    assert out["z_rotated"].shape == out["z"].shape == out["z_target"].shape
    out["pred"].mean().backward()
    assert net.ald.alpha.grad is not None and net.ald.alpha.grad.abs().min() > 0
    twin = copy.deepcopy(net)  # the decoder's mask follows the copy's own ALD
    assert twin.decode.harmonic.mask.__self__ is twin.ald


def test_checkpoint_guards_name_the_invariant_view():
    hybrid, plain = _net(2), _net(2, harmonic_invariant="harmonic")
    with pytest.raises(RuntimeError, match="as 'map' but this network's harmonic_invariant is 'harmonic'"):
        plain.load_state_dict(hybrid.state_dict())
    with pytest.raises(RuntimeError, match="as 'harmonic' but this network's harmonic_invariant is 'map'"):
        hybrid.load_state_dict(plain.state_dict())
    _net(2).load_state_dict(hybrid.state_dict())


@pytest.mark.parametrize("dim", [2, 3])
def test_traced_export_matches_eager(dim):
    net = _net(dim)
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
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _net(2, **kwargs)


def test_malformed_latent_is_named():
    net = _net(2)
    with pytest.raises(ValueError, match=r"hybrid harmonic latent must have shape \(B, L, 27 \+ 64\)"):
        net.decode(torch.zeros(1, 4, 90))
