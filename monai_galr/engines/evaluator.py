"""``GroupActionEvaluator``: the evaluation step with a fixed rotation per test image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from monai_galr.engines.batch import PrepareGroupActionBatch, start_iteration
from monai_galr.utils import unwrap

__all__ = ["EVALUATOR_OUTPUTS", "GroupActionEvaluator"]

#: what the evaluation step can compute, each under its own key of ``engine.state.output``
EVALUATOR_OUTPUTS = ("pred", "pred_identity", "z", "z_target")


class GroupActionEvaluator(SupervisedEvaluator):
    """Evaluates the rotated prediction and, beside it, the identity reconstruction of the same model.

    Every batch must carry its rotations (the fixed, seeded protocol of
    ``monai_galr.data.attach_fixed_rotations``), so every run and every variant sees the same rotations.
    ``engine.state.output`` holds ``"image"`` (``x``), ``"label"`` (``T_R x``), ``"rotation"`` and, as chosen by
    ``outputs``, ``"pred"`` (``D(Phi_R(E(x)))``), ``"pred_identity"`` (``D(E(x))``), ``"z"`` (``E(x)``) and
    ``"z_target"`` (``E(T_R x)``); the studies of :mod:`monai_galr.analysis` read the latents from there.

    All arguments are those of ``SupervisedEvaluator``; ``prepare_batch`` defaults to a
    ``PrepareGroupActionBatch`` that requires ``rotation`` in the batch; ``decollate`` defaults to False.

    Args:
        outputs: which of :data:`EVALUATOR_OUTPUTS` the step computes (default: the two predictions).

    Raises:
        ValueError: an unknown entry in ``outputs``.
    """

    def __init__(
        self,
        *args: Any,
        prepare_batch=None,
        decollate: bool = False,
        outputs: Sequence[str] = ("pred", "pred_identity"),
        **kwargs: Any,
    ) -> None:
        outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        unknown = [o for o in outputs if o not in EVALUATOR_OUTPUTS]
        if unknown:
            raise ValueError(f"outputs must be a subset of {EVALUATOR_OUTPUTS}, got {list(outputs)}.")
        if prepare_batch is None:
            prepare_batch = PrepareGroupActionBatch(random_if_missing=False)
        super().__init__(*args, prepare_batch=prepare_batch, decollate=decollate, **kwargs)
        self.outputs = outputs

    def _iteration(self, engine: GroupActionEvaluator, batchdata: dict[str, torch.Tensor]) -> dict:
        inputs, targets, rotation = start_iteration(engine, batchdata)
        out = engine.state.output
        with engine.mode(engine.network):
            with torch.autocast(inputs.device.type, enabled=bool(engine.amp), **engine.amp_kwargs):
                if "pred" in engine.outputs:
                    out[Keys.PRED] = engine.inferer(inputs, engine.network, rotation)
                if "pred_identity" in engine.outputs:
                    out["pred_identity"] = engine.inferer(inputs, engine.network)
                if "z" in engine.outputs:
                    out["z"] = unwrap(engine.network).encode(inputs)
                if "z_target" in engine.outputs:
                    out["z_target"] = unwrap(engine.network).encode(targets)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
