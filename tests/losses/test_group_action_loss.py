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


# ---- mask_gradient: where the mask stands in L_inv / L_const --------------------------------------------------------


def _two_sided_inputs(seed: int = 3):
    """A latent with a channel-wise action: z_rotated on every channel, z_acted = M z_rotated + (1 - M) z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    z_target = torch.randn(2, 4, 3, 3, generator=g)
    z_rotated = torch.flip(z, dims=(-1,)) * 0.8  # any channel-wise map of z with a gradient
    alpha = torch.tensor([1.0, -0.5, 0.3, -2.0], requires_grad=True)
    soft = torch.sigmoid(alpha)
    mask = (alpha.detach() > 0).float() + (soft - soft.detach())
    m = mask.view(1, -1, 1, 1)
    z_acted = m * z_rotated + (1 - m) * z
    pred = torch.rand(2, 1, 4, 4, generator=g)
    target = torch.rand(2, 1, 4, 4, generator=g)
    return pred, target, z, z_target, z_acted, mask, z_rotated, alpha


def test_two_sided_has_the_paper_values_and_encoder_gradient():
    pred, target, z, z_target, z_acted, mask, z_rotated, _ = _two_sided_inputs()
    kw = dict(lambda_i=0.3, lambda_v=0.7)
    one = GroupActionLoss(**kw)(pred, target, z, z_target, z_acted, mask)
    two = GroupActionLoss(mask_gradient="two_sided", **kw)(
        pred, target, z, z_target, z_acted, mask, z_rotated=z_rotated
    )
    for key in ("loss", "loss_i", "loss_v", "loss_s"):
        torch.testing.assert_close(two[key], one[key], rtol=1e-6, atol=1e-7)
    (g_one,) = torch.autograd.grad(one["loss"], z, retain_graph=True)
    (g_two,) = torch.autograd.grad(two["loss"], z)
    torch.testing.assert_close(g_two, g_one, rtol=1e-5, atol=1e-7)


def test_two_sided_logit_gradient_compares_both_costs_on_every_channel():
    pred, target, z, z_target, z_acted, mask, z_rotated, alpha = _two_sided_inputs()
    li, lv = 0.3, 0.7
    two = GroupActionLoss(lambda_r=0.0, lambda_i=li, lambda_v=lv, mask_gradient="two_sided")(
        pred, target, z, z_target, z_acted, mask, z_rotated=z_rotated
    )
    (g,) = torch.autograd.grad(two["loss"], alpha, retain_graph=True)
    zd, zt, zr = z.detach(), z_target, z_rotated.detach()
    c_inv = ((zd - zt) ** 2).mean(dim=(0, 2, 3))
    c_var = ((zr - zt) ** 2).mean(dim=(0, 2, 3))
    s = torch.sigmoid(alpha.detach())
    expected = (lv * c_var - li * c_inv) / 4 * s * (1 - s)
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-8)
    assert bool((g != 0).all())
    # the paper's form: L_inv is silent on the varying channels' logits, L_const on the invariant ones
    one = GroupActionLoss(lambda_r=0.0, lambda_i=li, lambda_v=0.0)(pred, target, z, z_target, z_acted, mask)
    (g_inv,) = torch.autograd.grad(one["loss"], alpha, retain_graph=True)
    varying = alpha.detach() > 0
    assert bool((g_inv[varying] == 0).all()) and bool((g_inv[~varying] < 0).all())


def test_two_sided_needs_z_rotated_and_the_mode_is_checked():
    pred, target, z, z_target, z_acted, mask, _, _ = _two_sided_inputs()
    with pytest.raises(ValueError, match="z_rotated.*action: learned"):
        GroupActionLoss(mask_gradient="two_sided")(pred, target, z, z_target, z_acted, mask)
    with pytest.raises(ValueError, match="mask_gradient must be one of .*'both'"):
        GroupActionLoss(mask_gradient="both")
    with pytest.raises(ValueError, match="rotated latent"):
        GroupActionLoss(mask_gradient="two_sided")(pred, target, z, z_target, z_acted, mask, z_rotated=z[:, :2])


def test_from_outputs_reads_the_training_dict():
    pred, target, z, z_target, z_acted, mask, z_rotated, _ = _two_sided_inputs()
    outs = {"pred": pred, "z": z, "z_target": z_target, "z_acted": z_acted, "mask": mask, "z_rotated": z_rotated}
    loss = GroupActionLoss(mask_gradient="two_sided")
    expected = loss(pred, target, z, z_target, z_acted, mask, z_rotated=z_rotated)
    for key, value in loss.from_outputs(outs, target).items():
        torch.testing.assert_close(value, expected[key])
