"""The switched-channel logit gradient (``mask_switch_images``): each logit receives the reconstruction error's
actual change between its two states; the loss value and the encoder / decoder gradients are those of the
straight-through pass; eval passes are unchanged; bad settings fail clearly."""

from __future__ import annotations

import pytest
import torch

from monai_galr.groups import random_rotation, rotate_image
from monai_galr.losses import GroupActionLoss
from monai_galr.networks.nets import GroupActionAutoEncoder

NETS = {
    "grid": dict(action="grid"),
    "hybrid": dict(action="harmonic", harmonic_invariant="map", harmonic_radii=3, harmonic_modes=4,
                   spatial_size=(16, 16)),
}


def _net(kind: str, switch: int, norm: str = "instance") -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 4), strides=(2, 1), latent_channels=4, alpha_init_std=1.0,
                                 mask_switch_images=switch, norm=norm, **NETS[kind])
    return net.train()


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, generator=g)
    torch.manual_seed(2)
    r = random_rotation(3, 2)

    return x, r, rotate_image(x, r)


def _grads(net, loss_fn, x, r, t):
    net.zero_grad()
    out = loss_fn.from_outputs(net(x, r, t), t)
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("kind", sorted(NETS))
def test_loss_and_network_gradients_match_the_straight_through_pass(kind, norm):
    x, r, t = _batch()
    loss_fn = GroupActionLoss(lambda_i=0.1, lambda_v=0.1, mask_gradient="two_sided")
    net_ste, net_sw = _net(kind, 0, norm), _net(kind, 2, norm)
    ste, g_ste = _grads(net_ste, loss_fn, x, r, t)
    sw, g_sw = _grads(net_sw, loss_fn, x, r, t)
    # the extra decodes run in eval mode: batch-norm running statistics move as in the straight-through pass
    buffers = dict(net_ste.named_buffers())
    assert net_sw.training and any("running_mean" in k for k in buffers) == (norm == "batch")
    for name, value in net_sw.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=1e-6, atol=1e-7, msg=name)
    assert 0 < _net(kind, 0).ald.hard_mask().sum() < 4  # both states present
    for k in ("loss", "loss_r", "loss_i", "loss_v"):
        assert torch.equal(ste[k], sw[k]), k
    for name in g_ste:
        if name != "ald.alpha":
            torch.testing.assert_close(g_sw[name], g_ste[name], rtol=1e-5, atol=1e-7, msg=name)
    assert not torch.allclose(g_sw["ald.alpha"], g_ste["ald.alpha"])


@pytest.mark.parametrize("kind", sorted(NETS))
def test_logit_gradient_is_the_switch_of_the_reconstruction_error(kind):
    x, r, t = _batch()
    loss_fn = GroupActionLoss(lambda_i=0.0, lambda_v=0.0, mask_gradient="two_sided")
    net = _net(kind, 3)  # every image of the batch
    _, grads = _grads(net, loss_fn, x, r, t)
    alpha0 = net.ald.alpha.detach().clone()
    slope = torch.sigmoid(alpha0) * (1 - torch.sigmoid(alpha0))

    def rec_error(c: int, varying: bool) -> float:
        with torch.no_grad():
            net.ald.alpha.copy_(alpha0)
            net.ald.alpha[c] = net.ald.threshold + (1e-3 if varying else -1e-3)
            return torch.mean((net(x, r) - t) ** 2).item()

    net.eval()
    for c in range(4):
        expected = (rec_error(c, True) - rec_error(c, False)) * slope[c].item()
        assert grads["ald.alpha"][c].item() == pytest.approx(expected, rel=1e-4, abs=1e-10)
    net.ald.alpha.data.copy_(alpha0)


def test_with_batch_norm_each_switch_is_measured_on_the_running_statistics():
    """The switch and its reference are decoded in eval mode from the training pass's latents, so a batch norm's
    batch statistics of the few switched images (a bias shared by every switch) do not enter the logits."""
    x, r, t = _batch()
    loss_fn = GroupActionLoss(lambda_i=0.0, lambda_v=0.0, mask_gradient="two_sided")
    net = _net("hybrid", 2, "batch")
    net.zero_grad()
    out = net(x, r, t)
    loss_fn.from_outputs(out, t)["loss"].backward()
    z, zr = out["z"].detach()[:2], out["z_rotated"].detach()[:2]
    hard = net.ald.hard_mask().float()
    slope = torch.sigmoid(net.ald.alpha) * (1 - torch.sigmoid(net.ald.alpha))
    net.eval()

    def rec_error(mask: torch.Tensor) -> float:
        m = net.ald.broadcast(mask, z)
        with torch.no_grad(), net.ald.use_mask(mask):
            return torch.mean((net.decode(m * zr + (1 - m) * z) - t[:2]) ** 2).item()

    for c in range(4):
        on, off = hard.clone(), hard.clone()
        on[c], off[c] = 1.0, 0.0
        expected = (rec_error(on) - rec_error(off)) * slope[c].item()
        assert net.ald.alpha.grad[c].item() == pytest.approx(expected, rel=1e-4, abs=1e-8)
    # the reference is the current mask decoded the same way
    torch.testing.assert_close(out["pred_switch_base"], net.decode(net.ald.broadcast(hard, z) * zr
                                                                   + (1 - net.ald.broadcast(hard, z)) * z).detach())


def test_eval_pass_and_the_first_images_only():
    x, r, t = _batch()
    net = _net("hybrid", 2)
    out = net(x, r, t)
    assert out["pred_switch"].shape == (2, 4, 1, 16, 16) and out["pred_switch_base"].shape == (2, 1, 16, 16)
    net.eval()
    assert "pred_switch" not in net(x, r, t)
    torch.testing.assert_close(net(x, r), _net("hybrid", 0).eval()(x, r))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask_switch_images=-1), "mask_switch_images must be an int >= 0, got -1"),
        (dict(mask_switch_images=2, partition="manual"), "needs partition 'learned'.*got partition 'manual'"),
        (dict(mask_switch_images=2, action="learned"), "action 'grid' or 'harmonic'.*action 'learned'"),
        (dict(mask_switch_images=2, mask_gate="gumbel"), "mask_gate 'ste'.*mask_gate 'gumbel'"),
    ],
)
def test_bad_settings_name_the_entry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GroupActionAutoEncoder(2, 1, 1, channels=(4, 4), strides=(2, 1), latent_channels=4, **kwargs)


def test_the_loss_needs_two_sided_and_a_matching_shape():
    x, r, t = _batch()
    out = _net("grid", 2)(x, r, t)
    with pytest.raises(ValueError, match="needs mask_gradient='two_sided'"):
        GroupActionLoss(mask_gradient="one_sided").from_outputs(out, t)
    out["pred_switch"] = out["pred_switch"][:, :3]
    with pytest.raises(ValueError, match=r"pred_switch must be \(N, 4, \*\(1, 16, 16\)\)"):
        GroupActionLoss(mask_gradient="two_sided").from_outputs(out, t)
    out = _net("grid", 2)(x, r, t)
    out["pred_switch_base"] = out["pred_switch_base"][:1]
    with pytest.raises(ValueError, match=r"pred_switch_base must be \(2, 1, 16, 16\).*got \(1, 1, 16, 16\)"):
        GroupActionLoss(mask_gradient="two_sided").from_outputs(out, t)


def test_use_mask_restores_and_checks_the_shape():
    net = _net("grid", 0)
    own = net.ald.mask().detach().clone()
    with net.ald.use_mask(torch.ones(4)):
        assert torch.equal(net.ald.mask(), torch.ones(4))
    assert torch.equal(net.ald.mask().detach(), own)
    with pytest.raises(ValueError, match=r"use_mask needs an \(4,\) mask, got \(3,\)"):
        with net.ald.use_mask(torch.ones(3)):
            pass
