"""GroupActionAutoEncoder: shapes in 2D/3D, validation, the latent actions and the training dict."""

from __future__ import annotations

import math

import pytest
import torch

from monai_galr.groups import angle_to_matrix, axis_angle_to_matrix, identity
from monai_galr.losses import GroupActionLoss
from monai_galr.networks import GroupActionAutoEncoder, LearnedAction, RotatedReconstruction


def _net2d(**kwargs) -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    args = dict(channels=(4, 8), strides=(1, 1), latent_channels=6)
    args.update(kwargs)
    return GroupActionAutoEncoder(2, 1, 1, **args)


def _rot90(batch: int) -> torch.Tensor:
    return angle_to_matrix(torch.full((batch,), math.pi / 2))


def test_shapes_2d():
    net = _net2d()
    x = torch.rand(2, 1, 16, 16)
    z = net.encode(x)
    assert z.shape == (2, 6, 16, 16)
    assert net(x).shape == x.shape
    assert net(x, _rot90(2)).shape == x.shape
    # bounded latent (tanh) and output in [0, 1] (sigmoid)
    assert z.abs().max() <= 1 and 0 <= net(x).min() and net(x).max() <= 1


def test_shapes_3d():
    torch.manual_seed(0)
    net = GroupActionAutoEncoder(3, 1, 2, channels=(4,), strides=(2,), latent_channels=3)
    x = torch.rand(1, 1, 8, 8, 8)
    assert net.encode(x).shape == (1, 3, 4, 4, 4)
    assert net(x).shape == (1, 2, 8, 8, 8)
    r = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.3]]))
    assert net(x, r).shape == (1, 2, 8, 8, 8)
    out = net(x, r, torch.rand(1, 1, 8, 8, 8))
    assert out["z_target"].shape == (1, 3, 4, 4, 4)


def test_strided_latent_shape_and_downsampling():
    net = _net2d(channels=(4, 8), strides=(2, 2))
    assert net.downsampling == 4
    x = torch.rand(2, 1, 16, 12)
    assert net.encode(x).shape == (2, 6, 4, 3)
    assert net(x).shape == x.shape


def test_latent_channels_default_to_last_width():
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 5), strides=(1, 1))
    assert net.latent_channels == 5 and net.ald.num_channels == 5


@pytest.mark.parametrize("dims", [1, 4, True])
def test_spatial_dims_must_be_2_or_3(dims):
    with pytest.raises(ValueError, match="spatial_dims"):
        GroupActionAutoEncoder(dims, 1, 1, channels=(4,), strides=(1,))


def test_unknown_action_and_partition_raise():
    with pytest.raises(ValueError, match="grid"):
        _net2d(action="rotate")
    with pytest.raises(ValueError, match="learned"):
        _net2d(partition="bogus")
    with pytest.raises(ValueError, match="tau"):
        _net2d(tau=1.5)


def test_channels_and_strides_length_mismatch():
    with pytest.raises(ValueError, match="channels and strides"):
        GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(1,))


def test_input_not_divisible_by_stride_raises_in_forward():
    net = _net2d(strides=(2, 2))
    with pytest.raises(ValueError, match=r"multiple of the total stride 4"):
        net(torch.rand(1, 1, 30, 30))
    with pytest.raises(ValueError, match=r"multiple of the total stride 4"):
        net.check_input(torch.rand(1, 1, 32, 30))
    net.check_input(torch.rand(1, 1, 32, 28))  # no error


def test_input_of_wrong_rank_or_channels_raises():
    net = _net2d()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(1, 8, 8))


def test_target_shape_mismatch_raises():
    net = _net2d()
    with pytest.raises(ValueError, match="target"):
        net(torch.rand(2, 1, 8, 8), _rot90(2), torch.rand(2, 1, 8, 12))


def test_identity_rotation_leaves_latent_unchanged():
    net = _net2d(partition="manual", varying_fraction=0.5)
    z = torch.randn(3, 6, 8, 8)
    torch.testing.assert_close(net.apply_action(z, identity(3, 2)), z, atol=1e-5, rtol=1e-5)


def test_grid_action_at_90_degrees_is_rot90_on_varying_channels_only():
    net = _net2d(partition="manual", varying_fraction=0.5)  # channels 0..2 vary, 3..5 invariant
    torch.manual_seed(3)
    z = torch.randn(2, 6, 8, 8)
    out = net.apply_action(z, _rot90(2))
    torch.testing.assert_close(out[:, :3], torch.rot90(z[:, :3], 1, dims=(2, 3)), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, 3:], z[:, 3:])
    # a rotation is visible: the varying part did change
    assert not torch.allclose(out[:, :3], z[:, :3], atol=1e-2)


def test_partition_all_rotates_every_channel():
    net = _net2d(partition="all")
    torch.manual_seed(4)
    z = torch.randn(2, 6, 8, 8)
    out = net.apply_action(z, _rot90(2))
    torch.testing.assert_close(out, torch.rot90(z, 1, dims=(2, 3)), atol=1e-5, rtol=1e-5)


def test_training_dict_keys_and_stop_gradient():
    net = _net2d()
    x = torch.rand(2, 1, 8, 8)
    r = _rot90(2)
    out = net(x, r, torch.rot90(x, 1, dims=(2, 3)))
    assert set(out) == {"pred", "z", "z_acted", "z_target", "mask", "z_rotated"}
    assert out["pred"].shape == x.shape
    assert out["z"].shape == out["z_acted"].shape == out["z_target"].shape == out["z_rotated"].shape == (2, 6, 8, 8)
    # z_rotated: every channel acted on; z_acted takes it on the varying channels, z on the others
    m = net.ald.hard_mask().view(1, -1, 1, 1)
    assert torch.equal(out["z_acted"], m * out["z_rotated"] + (1 - m) * out["z"])
    torch.testing.assert_close(out["z_rotated"], net.action(out["z"], r))
    assert out["mask"].shape == (6,)
    assert not out["z_target"].requires_grad and out["z_target"].grad_fn is None
    assert out["z"].requires_grad and out["pred"].requires_grad and out["mask"].requires_grad
    # the dict's prediction is the rotated prediction of forward(x, R)
    torch.testing.assert_close(out["pred"], net(x, r))


def test_gradient_reaches_alpha_through_training_dict_and_loss():
    net = _net2d(alpha_init_std=0.5)
    torch.manual_seed(5)
    x = torch.rand(2, 1, 8, 8)
    out = net(x, _rot90(2), torch.rot90(x, 1, dims=(2, 3)))
    losses = GroupActionLoss()(out["pred"], torch.rot90(x, 1, dims=(2, 3)), out["z"], out["z_target"],
                               out["z_acted"], out["mask"])
    losses["loss"].backward()
    assert net.ald.alpha.grad is not None
    assert torch.isfinite(net.ald.alpha.grad).all() and net.ald.alpha.grad.abs().sum() > 0


def test_learned_action_shape_and_dependence_on_rotation():
    torch.manual_seed(6)
    act = LearnedAction(2, channels=3, hidden_channels=4, num_layers=1)
    z = torch.randn(2, 3, 5, 5)
    a = act(z, angle_to_matrix(torch.tensor([0.0, 0.0])))
    b = act(z, angle_to_matrix(torch.tensor([1.0, 0.0])))
    assert a.shape == z.shape
    assert not torch.allclose(a[0], b[0])  # R changed for sample 0
    torch.testing.assert_close(a[1], b[1])  # unchanged for sample 1
    with pytest.raises(ValueError, match="num_layers"):
        LearnedAction(2, channels=3, num_layers=0)


def test_learned_action_in_network():
    net = _net2d(action="learned", action_hidden_channels=4, action_layers=1, partition="manual")
    assert isinstance(net.action, LearnedAction)
    x = torch.rand(2, 1, 8, 8)
    assert net(x, _rot90(2)).shape == x.shape


def test_rotated_reconstruction_equals_forward_with_rotation():
    net = _net2d().eval()
    r = angle_to_matrix(torch.tensor([0.7]))
    wrapper = RotatedReconstruction(net, r[0]).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x), net(x, r.expand(3, -1, -1)))
    with pytest.raises(ValueError, match="rotation"):
        RotatedReconstruction(net, torch.eye(3))
    with pytest.raises(ValueError, match="stride|shape"):
        RotatedReconstruction(_net2d(strides=(2, 1)), r)(torch.rand(1, 1, 7, 7))


def test_straight_through_clamp():
    from monai_galr.networks import StraightThroughClamp

    x = torch.tensor([-0.5, 0.25, 1.5], requires_grad=True)
    y = StraightThroughClamp(0.0, 1.0)(x)
    assert torch.allclose(y.detach(), torch.tensor([0.0, 0.25, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))
    with pytest.raises(ValueError, match="low < high"):
        StraightThroughClamp(1.0, 0.0)


def test_clamp_output_activation_bounds_and_state_dict():
    torch.manual_seed(0)
    kw = dict(channels=(4, 8), strides=(2, 1), latent_channels=4)
    net = GroupActionAutoEncoder(3, 1, 1, output_activation="clamp", **kw).eval()
    plain = GroupActionAutoEncoder(3, 1, 1, output_activation="none", **kw).eval()
    plain.load_state_dict(net.state_dict())  # the clamp holds no weights: checkpoints are interchangeable
    x = torch.rand(2, 1, 8, 8, 8) * 4 - 2
    with torch.no_grad():
        y, raw = net(x), plain(x)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert float((raw < 0).float().mean()) > 0  # the check below is not vacuous
        assert torch.allclose(y, raw.clamp(0, 1), atol=1e-6)
        traced = torch.jit.trace(net, x)
        assert torch.allclose(traced(x), y, atol=1e-6)
