from __future__ import annotations

import torch

from monai_galr.networks import GroupActionAutoEncoder, parameter_groups


def _net(partition: str) -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    return GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(1, 1), latent_channels=4, partition=partition)


def test_learned_partition_gets_its_own_group():
    net = _net("learned")
    groups = parameter_groups(net, 1e-3, 5e-2)
    assert len(groups) == 2
    assert groups[1]["params"] == [net.ald.alpha] and groups[1]["lr"] == 5e-2
    assert groups[0]["lr"] == 1e-3
    n_all = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for g in groups for p in g["params"]) == n_all
    assert all(p is not net.ald.alpha for p in groups[0]["params"])


def test_default_mask_rate_equals_learning_rate_and_fixed_partitions_have_one_group():
    assert parameter_groups(_net("learned"), 2e-3)[1]["lr"] == 2e-3
    for partition in ("manual", "all"):
        net = _net(partition)
        groups = parameter_groups(net, 1e-3, 5e-2)
        assert len(groups) == 1 and len(groups[0]["params"]) == len(list(net.parameters()))


def test_mask_rate_moves_alpha_faster():
    net = _net("learned")
    opt = torch.optim.Adam(parameter_groups(net, 1e-4, 1e-1))
    before = net.ald.alpha.detach().clone()
    z = torch.rand(2, 4, 6, 6)
    (net.ald.split(z)[0].sum()).backward()
    opt.step()
    assert torch.allclose((net.ald.alpha - before).abs(), torch.full((4,), 1e-1), atol=1e-6)
