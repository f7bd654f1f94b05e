"""``GroupActionEvaluator``: the evaluation step with a fixed rotation per test image."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from monai_galr.engines.batch import PrepareGroupActionBatch

__all__ = ["GroupActionEvaluator"]


class GroupActionEvaluator(SupervisedEvaluator):
    """Evaluates the rotated prediction and, beside it, the identity reconstruction of the same model.

    Every batch must carry its rotations (the fixed, seeded protocol of
    ``monai_galr.data.attach_fixed_rotations``), so every run and every variant sees the same rotations.
    ``engine.state.output`` holds ``"image"`` (``x``), ``"label"`` (``T_R x``), ``"pred"``
    (``D(Phi_R(E(x)))``), ``"pred_identity"`` (``D(E(x))``) and ``"rotation"``.

    All arguments are those of ``SupervisedEvaluator``; ``prepare_batch`` defaults to a
    ``PrepareGroupActionBatch`` that requires ``rotation`` in the batch; ``decollate`` defaults to False.
    """

    def __init__(self, *args: Any, prepare_batch=None, decollate: bool = False, **kwargs: Any) -> None:
        if prepare_batch is None:
            prepare_batch = PrepareGroupActionBatch(random_if_missing=False)
        super().__init__(*args, prepare_batch=prepare_batch, decollate=decollate, **kwargs)

    def _iteration(self, engine: GroupActionEvaluator, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, targets, args, kwargs = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        (rotation,) = args
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets, "rotation": rotation}
        with engine.mode(engine.network):
            with torch.autocast(inputs.device.type, enabled=bool(engine.amp), **engine.amp_kwargs):
                engine.state.output[Keys.PRED] = engine.inferer(inputs, engine.network, rotation)
                engine.state.output["pred_identity"] = engine.inferer(inputs, engine.network)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
