"""MaskStatsHandler driven by a tiny ignite Engine and a fake network exposing the ALD block API."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine, Events
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from monai_galr.handlers import MaskStatsHandler, find_ald


class FakeALD(torch.nn.Module):
    """The partition block API of the spec: hard_mask, probabilities, varying_fraction, partition."""

    def __init__(self, alpha: list[float], tau: float = 0.5, partition: str = "learned") -> None:
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(alpha))
        self.tau = tau
        self.partition = partition

    def probabilities(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha)

    def hard_mask(self) -> torch.Tensor:
        return (self.probabilities() > self.tau).float()

    def varying_fraction(self) -> float:
        return float(self.hard_mask().mean())


class FakeNet(torch.nn.Module):
    def __init__(self, alpha: list[float]) -> None:
        super().__init__()
        self.ald = FakeALD(alpha)


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


def _trainer(net: FakeNet, alphas: list[list[float]] | None = None) -> Engine:
    """An engine whose process function returns a trainer-like dict; ``alphas[e]`` is set during epoch ``e``."""

    def step(engine, batch):
        if alphas is not None:
            with torch.no_grad():
                net.ald.alpha.copy_(torch.tensor(alphas[engine.state.epoch - 1]))
        return {"loss": torch.tensor(0.5), "mask_fraction": net.ald.varying_fraction()}

    return Engine(step)


def test_stores_metrics_logs_and_writes_tensorboard(tmp_path, caplog):
    net = FakeNet([3.0, -3.0, 1.0, -1.0])  # 2 of 4 varying
    # epoch 1: 2 of 4 varying; epoch 2: 3 of 4
    engine = _trainer(net, alphas=[[3.0, -3.0, 1.0, -1.0], [3.0, 2.0, 1.0, -1.0]])
    handler = MaskStatsHandler(network=net, log_dir=str(tmp_path / "runs"), name="galr.test")
    handler.attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(dict(e.state.metrics)))
    with caplog.at_level(logging.INFO, logger="galr.test"):
        engine.run(range(3), max_epochs=2)
    handler.close()

    assert seen[0]["mask_fraction"] == pytest.approx(0.5)
    assert seen[0]["mask_varying_channels"] == 2
    assert seen[1]["mask_fraction"] == pytest.approx(0.75)
    assert seen[1]["mask_varying_channels"] == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "galr.test"]
    assert len(lines) == 2
    assert "Epoch[1]" in lines[0] and "2/4 varying channels" in lines[0] and "fraction 0.5000" in lines[0]
    assert "learned" in lines[0]

    acc = _events(tmp_path / "runs")
    tags = acc.Tags()
    assert {"mask/fraction", "mask/varying_channels"} <= set(tags["scalars"])
    assert "mask/probabilities" in tags["histograms"]
    fraction = acc.Scalars("mask/fraction")
    assert [e.step for e in fraction] == [1, 2]
    assert [e.value for e in fraction] == pytest.approx([0.5, 0.75])
    assert [e.value for e in acc.Scalars("mask/varying_channels")] == pytest.approx([2, 3])
    hist = acc.Histograms("mask/probabilities")
    assert len(hist) == 2 and hist[0].histogram_value.num == 4
    assert hist[1].histogram_value.max == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))), rel=1e-5)


def test_writer_is_created_lazily_and_a_given_writer_is_used(tmp_path):
    net = FakeNet([1.0, -1.0])
    lazy_dir = tmp_path / "lazy"
    handler = MaskStatsHandler(network=net, log_dir=str(lazy_dir))
    engine = _trainer(net)
    handler.attach(engine)
    assert not lazy_dir.exists()
    engine.run(range(1), max_epochs=1)
    assert any(lazy_dir.glob("events.out.tfevents.*"))
    handler.close()

    given_dir = tmp_path / "given"
    writer = SummaryWriter(log_dir=str(given_dir))
    handler = MaskStatsHandler(network=net, summary_writer=writer, tag_prefix="ald")
    engine = _trainer(net)
    handler.attach(engine)
    engine.run(range(1), max_epochs=1)
    handler.close()  # must not close a writer it does not own
    writer.add_scalar("still/open", 1.0, 0)
    writer.close()
    tags = _events(given_dir).Tags()
    assert {"ald/fraction", "ald/varying_channels", "still/open"} <= set(tags["scalars"])


def test_iteration_level(tmp_path):
    net = FakeNet([1.0, -1.0, 2.0])
    engine = _trainer(net)
    handler = MaskStatsHandler(network=net, log_dir=str(tmp_path), epoch_level=False)
    handler.attach(engine)
    handler.attach(engine)  # attaching twice registers once
    engine.run(range(3), max_epochs=2)
    handler.close()
    steps = [e.step for e in _events(tmp_path).Scalars("mask/fraction")]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert engine.state.metrics["mask_fraction"] == pytest.approx(2 / 3)


def test_unwraps_data_parallel_and_module_wrappers(tmp_path):
    net = FakeNet([2.0, 2.0, -2.0, -2.0, -2.0])
    wrapped = torch.nn.DataParallel(net)  # on CPU it only wraps: `.module` like DDP
    assert find_ald(wrapped) is net.ald

    class Wrapper:
        def __init__(self, module):
            self.module = module

    assert find_ald(Wrapper(Wrapper(net))) is net.ald
    engine = _trainer(net)
    handler = MaskStatsHandler(network=wrapped, log_dir=str(tmp_path))
    handler.attach(engine)
    engine.run(range(1), max_epochs=1)
    handler.close()
    assert engine.state.metrics["mask_varying_channels"] == 2
    assert engine.state.metrics["mask_fraction"] == pytest.approx(0.4)


@pytest.mark.parametrize("partition, probs", [("manual", [1.0, 1.0, 0.0, 0.0]), ("all", [1.0, 1.0, 1.0, 1.0])])
def test_fixed_partitions(tmp_path, partition, probs):
    net = FakeNet([0.0] * 4)
    net.ald.partition = partition
    net.ald.probabilities = lambda: torch.tensor(probs)
    stats = MaskStatsHandler(network=net, log_dir=str(tmp_path)).stats()
    assert stats["partition"] == partition
    assert stats["mask_varying_channels"] == int(sum(probs))
    assert stats["mask_fraction"] == pytest.approx(sum(probs) / 4)
    assert stats["channels"] == 4


def test_engine_logger_is_used_without_a_name(tmp_path, caplog):
    net = FakeNet([1.0])
    engine = _trainer(net)
    handler = MaskStatsHandler(network=net, log_dir=str(tmp_path))
    handler.attach(engine)
    assert handler.logger is engine.logger
    with caplog.at_level(logging.INFO):
        engine.run(range(1), max_epochs=1)
    handler.close()
    assert any("1/1 varying channels" in r.getMessage() for r in caplog.records)


def test_network_without_ald():
    with pytest.raises(TypeError, match="network must expose the ALD partition block as `network.ald`.*Linear"):
        MaskStatsHandler(network=torch.nn.Linear(2, 2))


def test_bad_tag_prefix():
    with pytest.raises(TypeError, match="tag_prefix must be a str, got int"):
        MaskStatsHandler(network=FakeNet([1.0]), tag_prefix=3)


def test_alpha_grad_statistics_flip_rate_and_coherence(tmp_path, caplog):
    net = FakeNet([3.0, -3.0])
    # channel 0 always pushed the same way, channel 1 alternates: 4 measurements (every other iteration)
    grads = {1: [1.0, 1.0], 3: [2.0, -1.0], 5: [1.0, 1.0], 7: [2.0, -1.0]}

    def step(engine, batch):
        it = engine.state.iteration
        if it in grads:
            engine.state.alpha_grad = {"iteration": it, "loss_r": torch.tensor(grads[it]),
                                       "total": torch.tensor(grads[it])}
        return {}

    engine = Engine(step)
    engine.state.alpha_grad = None
    handler = MaskStatsHandler(net, log_dir=str(tmp_path), name="mask_grad_test")
    handler.attach(engine)
    with caplog.at_level(logging.INFO, logger="mask_grad_test"):
        engine.run(range(8), max_epochs=1)
    m = engine.state.metrics
    # sign flips: channel 0 never, channel 1 at each of the 3 consecutive pairs -> 3 / 6
    assert m["alpha_grad_loss_r_flip_rate"] == pytest.approx(0.5)
    # coherence: channel 0 |6| / 6 = 1, channel 1 |0| / 4 = 0
    assert m["alpha_grad_loss_r_coherence"] == pytest.approx(0.5)
    assert m["alpha_grad_loss_r_mean_abs"] == pytest.approx((6.0 + 4.0) / 2 / 4)
    assert m["mask_decided"] == 1.0
    assert "dalpha loss_r" in caplog.text and "flips 0.50" in caplog.text
    acc = _events(tmp_path)
    assert "mask/alpha_grad/total/flip_rate" in acc.Tags()["scalars"]
    assert "mask/decided" in acc.Tags()["scalars"]
