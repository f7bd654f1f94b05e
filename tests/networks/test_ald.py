"""ALD: argument validation, the hard 0/1 mask, the straight-through gradient, fixed partitions, split."""

from __future__ import annotations

import math

import pytest
import torch

from monai_galr.networks import ALD


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.1, 1.5])
def test_tau_outside_open_interval_raises(tau):
    with pytest.raises(ValueError, match="tau"):
        ALD(4, tau=tau)


@pytest.mark.parametrize("tau", [0.01, 0.5, 0.99])
def test_tau_inside_interval_accepted(tau):
    assert ALD(4, tau=tau).tau == pytest.approx(tau)


def test_unknown_partition_raises_with_suggestion():
    with pytest.raises(ValueError, match="learned"):
        ALD(4, partition="learnd")
    with pytest.raises(ValueError, match="bogus"):
        ALD(4, partition="bogus")


@pytest.mark.parametrize("fraction", [-0.01, 1.01, 2.0])
def test_varying_fraction_outside_unit_interval_raises(fraction):
    with pytest.raises(ValueError, match="varying_fraction"):
        ALD(4, partition="manual", varying_fraction=fraction)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0), (1.0, 4), (0.5, 2), (0.25, 1)])
def test_varying_fraction_bounds_accepted(fraction, expected):
    ald = ALD(4, partition="manual", varying_fraction=fraction)
    assert int(ald.hard_mask().sum()) == expected
    assert ald.varying_fraction() == pytest.approx(expected / 4)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_num_channels_must_be_positive_int(n):
    with pytest.raises(ValueError, match="num_channels"):
        ALD(n)


def test_hard_mask_is_indicator_of_sigmoid_above_tau():
    ald = ALD(6, tau=0.3)
    with torch.no_grad():
        ald.alpha.copy_(torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0]))
    expected = (torch.sigmoid(ald.alpha) > 0.3).float()  # sigmoid(-1)=0.27, sigmoid(-0.5)=0.38
    assert torch.equal(ald.hard_mask(), expected)
    assert torch.equal(expected, torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0]))
    assert not ald.hard_mask().requires_grad
    # the forward-pass mask has exactly the same values (only its gradient differs)
    m = ald.mask()
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m.detach(), expected)
    assert ald.varying_fraction() == pytest.approx(4 / 6)


def test_straight_through_gradient_equals_sigmoid_derivative():
    torch.manual_seed(0)
    ald = ALD(8, alpha_init_std=2.0)
    w = torch.randn(8)
    (ald.mask() * w).sum().backward()
    s = torch.sigmoid(ald.alpha.detach())
    analytic = w * s * (1 - s)
    assert ald.alpha.grad is not None
    torch.testing.assert_close(ald.alpha.grad, analytic, rtol=1e-6, atol=1e-7)
    # the hard step itself would give zero gradient: the STE gradient is not zero
    assert ald.alpha.grad.abs().min() > 0


def test_split_carries_straight_through_gradient():
    torch.manual_seed(1)
    ald = ALD(3, alpha_init_std=1.0)
    z = torch.randn(2, 3, 4, 4)
    z_v, z_i = ald.split(z)
    (z_v.sum() - 2 * z_i.sum()).backward()
    s = torch.sigmoid(ald.alpha.detach())
    per_channel = z.sum(dim=(0, 2, 3))
    # d/dm [m*S - 2(1-m)*S] = 3*S; dm/dalpha = s(1-s)
    torch.testing.assert_close(ald.alpha.grad, 3 * per_channel * s * (1 - s), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("partition, fraction, expected", [
    ("manual", 0.25, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ("all", 0.25, [1.0] * 8),
])
def test_fixed_partitions_have_no_parameters(partition, fraction, expected):
    ald = ALD(8, partition=partition, varying_fraction=fraction, tau=0.9)
    assert ald.alpha is None
    assert list(ald.parameters()) == []
    assert ald.hard_mask().tolist() == expected
    assert ald.mask().tolist() == expected
    assert ald.probabilities().tolist() == expected
    assert not ald.mask().requires_grad
    assert "fixed_mask" in ald.state_dict()


def test_learned_partition_probabilities_and_state():
    ald = ALD(5, alpha_init=1.0)
    torch.testing.assert_close(ald.probabilities(), torch.sigmoid(torch.ones(5)))
    assert list(ald.state_dict()) == ["alpha"]
    assert ald.varying_fraction() == 1.0


@pytest.mark.parametrize("partition", ["learned", "manual", "all"])
def test_split_sums_back_to_z(partition):
    torch.manual_seed(2)
    ald = ALD(6, partition=partition, alpha_init_std=1.0, varying_fraction=0.5)
    z = torch.randn(2, 6, 3, 5)
    z_v, z_i = ald.split(z)
    assert z_v.shape == z_i.shape == z.shape
    torch.testing.assert_close(z_v + z_i, z)
    m = ald.hard_mask().bool()
    assert torch.all(z_v[:, ~m] == 0) and torch.all(z_i[:, m] == 0)


def test_split_rejects_wrong_channel_count():
    ald = ALD(4)
    with pytest.raises(ValueError, match=r"\(B, 4"):
        ald.split(torch.zeros(1, 3, 2, 2))


def test_settle_logits_keeps_the_mask_and_clears_the_threshold():
    ald = ALD(6, partition="learned", tau=0.5)
    with torch.no_grad():
        ald.alpha.copy_(torch.tensor([1e-9, -1e-9, 3e-8, 0.0, 2.0, -5e-5]))
    before = ald.hard_mask().clone()
    assert ald.settle_logits(1e-4) == 5  # all but the logit at 2.0
    assert torch.equal(ald.hard_mask(), before)
    assert float((ald.alpha.detach().abs() - 1e-4).min()) >= -1e-9
    assert float(ald.alpha[4]) == 2.0
    # float64 sigmoid now agrees with float32 on every channel (it did not before, for 1e-9 and 3e-8)
    assert torch.equal((torch.sigmoid(ald.alpha.detach().double()) > 0.5).float(), before)
    assert ald.settle_logits(1e-4) == 0
    with pytest.raises(ValueError, match="margin must be > 0"):
        ald.settle_logits(0.0)
    assert ALD(4, partition="manual", varying_fraction=0.5).settle_logits() == 0


def test_hard_mask_is_an_exact_logit_comparison():
    # alpha = 3e-8: sigmoid rounds to exactly 0.5 in float32, so `sigmoid(alpha) > 0.5` would say "invariant" on
    # PyTorch's CPU while a float64 (or another backend's) sigmoid says "varying"; alpha > logit(tau) has one answer
    ald = ALD(3, partition="learned", tau=0.5)
    with torch.no_grad():
        ald.alpha.copy_(torch.tensor([3e-8, -3e-8, 0.0]))
    assert torch.sigmoid(ald.alpha.detach())[0] == 0.5  # the float32 sigmoid cannot tell
    assert ald.hard_mask().tolist() == [1.0, 0.0, 0.0]
    assert ald.mask().detach().tolist() == [1.0, 0.0, 0.0]
    ald.tau = 0.3  # the threshold follows tau
    assert ald.threshold == pytest.approx(math.log(0.3 / 0.7))
    assert ald.hard_mask().tolist() == [1.0, 1.0, 1.0]


def test_gumbel_gate_samples_in_training_and_is_exact_in_eval():
    torch.manual_seed(0)
    ald = ALD(6, gate="gumbel", alpha_init=0.0, alpha_init_std=2.0)
    hard = ald.hard_mask().clone()
    ald.train()
    samples = torch.stack([ald.mask().detach() for _ in range(400)])
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    # Bernoulli(p): the sample mean follows sigmoid(alpha), and undecided channels are seen in both states
    torch.testing.assert_close(samples.mean(0), ald.probabilities().detach(), atol=0.08, rtol=0)
    assert not torch.equal(samples[0], samples[1]) or not torch.equal(samples[1], samples[2])
    ald.eval()
    for _ in range(5):
        assert torch.equal(ald.mask().detach(), hard)
    z = torch.randn(2, 6, 3, 3)
    z_v, z_i = ald.split(z)
    torch.testing.assert_close(z_v, hard.view(1, -1, 1, 1) * z, rtol=0, atol=0)


def test_gumbel_gate_gradient_reaches_alpha():
    torch.manual_seed(1)
    ald = ALD(4, gate="gumbel")
    ald.train()
    (ald.mask() * torch.arange(1.0, 5.0)).sum().backward()
    assert ald.alpha.grad is not None and (ald.alpha.grad > 0).all()


def test_temperature_scales_probabilities_and_threshold():
    ald = ALD(3, tau=0.7, temperature=0.25)
    with torch.no_grad():
        ald.alpha.copy_(torch.tensor([0.1, 0.25 * math.log(0.7 / 0.3) + 1e-3, -1.0]))
    torch.testing.assert_close(ald.probabilities(), torch.sigmoid(ald.alpha / 0.25))
    assert ald.hard_mask().tolist() == [0.0, 1.0, 0.0]
    assert torch.equal(ald.hard_mask(), (ald.probabilities() > 0.7).float())
    assert ald.decided_fraction(0.3) == pytest.approx(1 / 3)  # p = 0.60, 0.70, 0.02


@pytest.mark.parametrize("bad", [0.0, -1.0, 101.0, float("nan"), "1", True])
def test_temperature_out_of_range_names_the_entry(bad):
    with pytest.raises(ValueError, match="mask_temperature"):
        ALD(4, temperature=bad)


def test_unknown_gate_names_the_entry():
    with pytest.raises(ValueError, match="mask_gate"):
        ALD(4, gate="concrete")


@pytest.mark.parametrize("tau", [0.3, 0.5, 0.7])
def test_alpha_init_at_threshold_starts_every_tau_undecided(tau):
    at = ALD(4, tau=tau, alpha_init=0.25, temperature=0.5)
    torch.testing.assert_close(at.alpha.detach(), torch.full((4,), 0.5 * math.log(tau / (1 - tau)) + 0.25))
    assert at.hard_mask().tolist() == [1.0] * 4  # 0.25 above the threshold
    zero = ALD(4, tau=tau, alpha_init=0.25, alpha_init_at="zero")
    torch.testing.assert_close(zero.alpha.detach(), torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="alpha_init_at"):
        ALD(4, alpha_init_at="one")
