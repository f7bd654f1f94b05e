"""GroupActionLoss: each term by hand, the weights, the stop-gradient and the shape checks."""

from __future__ import annotations

import pytest
import torch

from monai_galr.losses import GroupActionLoss


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(2, 1, 4, 4, generator=g)
    target = torch.rand(2, 1, 4, 4, generator=g)
    z = torch.randn(2, 3, 2, 2, generator=g)
    z_target = torch.randn(2, 3, 2, 2, generator=g)
    z_acted = torch.randn(2, 3, 2, 2, generator=g)
    mask = torch.tensor([1.0, 0.0, 1.0])
    return pred, target, z, z_target, z_acted, mask


def _by_hand(pred, target, z, z_target, z_acted, mask):
    n_img = pred.numel()
    n_lat = z.numel()
    loss_r = sum(float(a - b) ** 2 for a, b in zip(pred.flatten(), target.flatten())) / n_img
    loss_i = loss_v = 0.0
    for c in range(z.shape[1]):
        if mask[c] == 0:
            loss_i += float(((z[:, c] - z_target[:, c]) ** 2).sum())
        else:
            loss_v += float(((z_acted[:, c] - z_target[:, c]) ** 2).sum())
    return loss_r, loss_i / n_lat, loss_v / n_lat


def test_terms_match_hand_computation():
    args = _inputs()
    out = GroupActionLoss()(*args)
    r, i, v = _by_hand(*args)
    assert set(out) == {"loss", "loss_r", "loss_i", "loss_v", "loss_s"}
    assert out["loss_s"].item() == pytest.approx(float(args[-1].float().mean()), rel=1e-6)
    assert out["loss_r"].item() == pytest.approx(r, rel=1e-5)
    assert out["loss_i"].item() == pytest.approx(i, rel=1e-5)
    assert out["loss_v"].item() == pytest.approx(v, rel=1e-5)
    assert out["loss"].item() == pytest.approx(r + i + v, rel=1e-5)
    assert out["loss"].ndim == 0


def test_lambdas_weight_the_total():
    args = _inputs(1)
    r, i, v = _by_hand(*args)
    out = GroupActionLoss(lambda_r=2.0, lambda_i=0.5, lambda_v=3.0)(*args)
    assert out["loss"].item() == pytest.approx(2.0 * r + 0.5 * i + 3.0 * v, rel=1e-5)
    # terms are reported unweighted
    assert out["loss_v"].item() == pytest.approx(v, rel=1e-5)


@pytest.mark.parametrize("zeroed", ["lambda_r", "lambda_i", "lambda_v"])
def test_zero_lambda_removes_term(zeroed):
    args = _inputs(2)
    terms = dict(zip(("lambda_r", "lambda_i", "lambda_v"), _by_hand(*args)))
    out = GroupActionLoss(**{zeroed: 0.0})(*args)
    expected = sum(v for k, v in terms.items() if k != zeroed)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert terms[zeroed] > 0  # the removed term was not zero to begin with


@pytest.mark.parametrize("name", ["lambda_r", "lambda_i", "lambda_v"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_lambda_raises(name, value):
    with pytest.raises(ValueError, match=name):
        GroupActionLoss(**{name: value})


def test_no_gradient_flows_into_z_target():
    pred, target, z, z_target, z_acted, mask = _inputs(3)
    for t in (pred, z, z_target, z_acted):
        t.requires_grad_(True)
    GroupActionLoss()(pred, target, z, z_target, z_acted, mask)["loss"].backward()
    assert z_target.grad is None
    assert z.grad is not None and z_acted.grad is not None and pred.grad is not None
    # z only feeds the invariant channels, z_acted only the varying ones
    assert torch.all(z.grad[:, [0, 2]] == 0) and z.grad[:, 1].abs().sum() > 0
    assert torch.all(z_acted.grad[:, 1] == 0) and z_acted.grad[:, [0, 2]].abs().sum() > 0


def test_mask_gradient_pushes_each_logit_by_the_error_on_either_side():
    pred, target, z, z_target, z_acted, _ = _inputs(4)
    mask = torch.tensor([1.0, 0.0, 1.0], requires_grad=True)
    GroupActionLoss()(pred, target, z, z_target, z_acted, mask)["loss"].backward()
    n = z.numel()
    for c in range(3):
        # d/dm [(1-m)^2 a + m^2 b] / n at m in {0, 1}
        a = float(((z[:, c] - z_target[:, c]) ** 2).sum())
        b = float(((z_acted[:, c] - z_target[:, c]) ** 2).sum())
        m = float(mask[c].detach())
        assert mask.grad[c].item() == pytest.approx((-2 * (1 - m) * a + 2 * m * b) / n, rel=1e-4)


@pytest.mark.parametrize("index, match", [(1, "reconstruction"), (3, "latent"), (4, "acted latent")])
def test_shape_mismatch_raises(index, match):
    args = list(_inputs(5))
    args[index] = args[index][..., :1]
    with pytest.raises(ValueError, match=match):
        GroupActionLoss()(*args)


def test_mask_shape_mismatch_raises():
    args = list(_inputs(6))
    args[5] = torch.ones(4)
    with pytest.raises(ValueError, match="mask"):
        GroupActionLoss()(*args)


def test_sparsity_prior_adds_the_weighted_fraction_and_pulls_logits_down():
    args = list(_inputs())
    alpha = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)  # one logit per latent channel
    soft = torch.sigmoid(alpha)
    args[-1] = (alpha.detach() > 0).float() + (soft - soft.detach())
    plain = GroupActionLoss()(*args)
    out = GroupActionLoss(lambda_s=0.5)(*args)
    frac = float((alpha > 0).float().mean())
    assert out["loss"].item() == pytest.approx(plain["loss"].item() + 0.5 * frac, rel=1e-6)
    (g_plain,) = torch.autograd.grad(plain["loss"], alpha, retain_graph=True)
    (g,) = torch.autograd.grad(out["loss"], alpha)
    expected = 0.5 * soft.detach() * (1 - soft.detach()) / alpha.numel()
    torch.testing.assert_close(g - g_plain, expected)


@pytest.mark.parametrize("bad", [-0.1, 10.5, float("nan"), float("inf"), "0.1", True])
def test_sparsity_weight_out_of_range_names_the_entry(bad):
    with pytest.raises(ValueError, match="lambda_s"):
        GroupActionLoss(lambda_s=bad)
