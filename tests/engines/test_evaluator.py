"""GroupActionEvaluator: rotated and identity predictions side by side, rotations required."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import DataLoader
from monai.engines.utils import IterationEvents

from monai_galr.engines import GroupActionEvaluator
from monai_galr.groups import angle_to_matrix
from monai_galr.networks import GroupActionAutoEncoder


def _net() -> GroupActionAutoEncoder:
    torch.manual_seed(0)
    return GroupActionAutoEncoder(2, 1, 1, channels=(4,), strides=(2,), latent_channels=3, partition="manual")


def _items(with_rotation: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    items = []
    for k in range(4):
        item = {"image": torch.rand(1, 8, 8, generator=g)}
        if with_rotation:
            item["rotation"] = angle_to_matrix(torch.tensor([k * math.pi / 3]))[0]
        items.append(item)
    return items


def test_evaluator_outputs_rotated_and_identity_predictions():
    net = _net()
    evaluator = GroupActionEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(_items(), batch_size=2), network=net
    )
    fired = []
    evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda e: fired.append("forward"))
    evaluator.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: fired.append("model"))
    evaluator.run()
    out = evaluator.state.output
    assert {"image", "label", "pred", "pred_identity", "rotation"} <= set(out)
    assert out["pred"].shape == out["pred_identity"].shape == out["label"].shape == (2, 1, 8, 8)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(out["pred"], net(out["image"], out["rotation"]))
        torch.testing.assert_close(out["pred_identity"], net(out["image"]))
    assert not torch.allclose(out["pred"], out["pred_identity"])
    assert fired == ["forward", "model"] * 2
    # no gradient is built during evaluation
    assert not out["pred"].requires_grad


def test_evaluator_requires_rotations():
    evaluator = GroupActionEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(_items(False), batch_size=2), network=_net()
    )
    with pytest.raises(ValueError, match="'rotation'"):
        evaluator.run()


def test_evaluator_latent_outputs_and_unknown_names():
    net = _net()
    evaluator = GroupActionEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(_items(), batch_size=4), network=net,
        outputs=("z", "z_target"),
    )
    evaluator.run()
    out = evaluator.state.output
    assert "pred" not in out and "pred_identity" not in out
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(out["z"], net.encode(out["image"]))
        torch.testing.assert_close(out["z_target"], net.encode(out["label"]))
    with pytest.raises(ValueError, match="outputs must be a subset"):
        GroupActionEvaluator(device=torch.device("cpu"), val_data_loader=[], network=net, outputs=("latent",))
