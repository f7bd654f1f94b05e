"""TerminateOnNan: stops an engine at the first non-finite loss and says where."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine

from monai_galr.handlers.terminate_on_nan import TerminateOnNan


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("-inf"))])
def test_stops_at_first_non_finite_loss(bad, caplog):
    losses = [torch.tensor(1.0), 0.5, bad, torch.tensor(0.1)]
    engine = Engine(lambda e, i: {"loss": losses[e.state.iteration - 1]})
    handler = TerminateOnNan()
    handler.attach(engine)
    with caplog.at_level(logging.ERROR):
        engine.run(range(4), max_epochs=3)
    assert engine.state.iteration == 3 and handler.terminated_at == (1, 3)
    assert "NaN or infinite" in caplog.text and "epoch 1, iteration 3" in caplog.text


def test_finite_losses_run_to_the_end():
    engine = Engine(lambda e, i: {"loss": torch.tensor([0.5, 1.0])})
    TerminateOnNan().attach(engine)
    engine.run(range(2), max_epochs=2)
    assert engine.state.iteration == 4


def test_output_transform_must_be_callable():
    with pytest.raises(TypeError, match="output_transform must be callable"):
        TerminateOnNan(output_transform="loss")
