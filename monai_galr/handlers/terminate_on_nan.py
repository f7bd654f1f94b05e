"""Stop training at the first NaN/Inf loss, with a message that says where it happened."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["TerminateOnNan"]


class TerminateOnNan:
    """MONAI-style (``attach``-able) version of ignite's ``TerminateOnNan`` for a trainer's loss.

    After each iteration, reads ``output_transform(engine.state.output)`` (default: the ``"loss"`` entry); when any
    value is NaN or infinite it logs an error naming the epoch, the iteration and the value, and terminates the
    engine.  The weights in memory already took the non-finite step; checkpoints written earlier are untouched
    (savers run at ``EPOCH_COMPLETED``, which a terminated epoch does not reach).

    Args:
        output_transform: maps ``engine.state.output`` to a tensor or number (or a sequence of them).
        name: logger name.

    Example::

        >>> TerminateOnNan().attach(trainer)
    """

    def __init__(self, output_transform: Callable[[Any], Any] | None = None, name: str | None = None) -> None:
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"output_transform must be callable or None, got {type(output_transform).__name__}.")
        self.output_transform = output_transform or (lambda out: out["loss"])
        self.logger = logging.getLogger(name or __name__)
        self.terminated_at: tuple[int, int] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    @staticmethod
    def _finite(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return bool(torch.isfinite(value.detach()).all())
        if isinstance(value, (int, float)):
            return math.isfinite(value)
        if isinstance(value, (list, tuple)):
            return all(TerminateOnNan._finite(v) for v in value)
        if isinstance(value, dict):
            return all(TerminateOnNan._finite(v) for v in value.values())
        return True

    def __call__(self, engine: Engine) -> None:
        value = self.output_transform(engine.state.output)
        if self._finite(value):
            return
        shown = value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value
        self.terminated_at = (engine.state.epoch, engine.state.iteration)
        self.logger.error(
            f"TerminateOnNan: the loss is NaN or infinite ({shown}) at epoch {engine.state.epoch}, iteration "
            f"{engine.state.iteration}; training stopped. The weights in memory are no longer usable: resume from "
            "the last periodic checkpoint (resume_from) with a lower learning rate."
        )
        engine.terminate()
