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
    (savers run at ``EPOCH_COMPLETED``, which a terminated epoch does not reach).  The message says whether the
    iteration's input batch was itself non-finite (a data problem, naming the samples) or finite (a diverged
    optimisation), and is kept in ``engine.state.stop_reason`` for
    :func:`monai_galr.bundle_checks.check_run_completed`, which makes the run exit non-zero.  Under
    ``torch.distributed`` the check is shared (one ``all_reduce`` per iteration): every rank stops at the same
    iteration, with the message of the rank that saw the NaN.

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

    @staticmethod
    def _input_problem(engine: Engine) -> str | None:
        """A sentence on the non-finite values of the iteration's input batch, or None when it is finite."""
        out = engine.state.output if isinstance(engine.state.output, dict) else {}
        batch = engine.state.batch if isinstance(engine.state.batch, dict) else {}
        image = out.get("image", batch.get("image"))
        if not isinstance(image, torch.Tensor):
            return None
        bad = ~torch.isfinite(image.detach())
        if not bool(bad.any()):
            return None
        per_sample = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten().tolist() if bad.ndim > 1 else []
        names: list[str] = []
        meta = getattr(batch.get("image"), "meta", None) or {}
        for key in ("subject", "filename_or_obj", "id", "index"):
            values = batch.get(key, meta.get(key) if isinstance(meta, dict) else None)
            if isinstance(values, (list, tuple)) or (isinstance(values, torch.Tensor) and values.ndim == 1):
                names = [str(values[i].item() if isinstance(values, torch.Tensor) else values[i]) for i in per_sample]
                names = [f"{key} {n}" for n in names]
                break
        if len(per_sample) > 8:
            names, per_sample = names[:8] + ["..."] if names else names, per_sample[:8] + ["..."]
        which = ", ".join(names) if names else f"batch sample(s) {per_sample}"
        return (
            f"The input batch itself holds {int(bad.sum())} non-finite (NaN/inf) value(s) ({which}): a data problem, "
            "not the learning rate. Check the input files (unreadable, truncated or NaN voxels), exclude them (brain: "
            "check_values True), and rerun."
        )

    def __call__(self, engine: Engine) -> None:
        from monai_galr.handlers.run_guard import any_rank, distributed, gather_messages

        value = self.output_transform(engine.state.output)
        mine = not self._finite(value)
        if not any_rank(mine):  # under torch.distributed every rank stops at the same iteration
            return
        where = f"at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
        message = None
        if mine:
            shown = value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value
            data = self._input_problem(engine)
            message = f"TerminateOnNan: the loss is NaN or infinite ({shown}) {where}; training stopped. " + (
                data or "The input batch is finite, so the optimisation diverged: the weights in memory are no longer "
                "usable; resume from the last periodic checkpoint (resume_from) with a lower learning_rate."
            )
            self.logger.error(message)
        messages = gather_messages(message)
        if distributed():
            rank, text = messages[0] if messages else (-1, "a NaN/Inf loss")
            message = message or f"stopped because of rank {rank}: {text}"
        self.terminated_at = (engine.state.epoch, engine.state.iteration)
        engine.state.stop_reason = message
        engine.terminate()
