"""``GroupActionTrainer``: MONAI's ``SupervisedTrainer`` with the group-action training step."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from monai_galr.engines.batch import PrepareGroupActionBatch

__all__ = ["GroupActionTrainer", "unwrap_network"]

LOSS_TERMS = ("loss_r", "loss_i", "loss_v")


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` wrappers."""
    while hasattr(network, "module") and isinstance(network.module, torch.nn.Module):
        network = network.module
    return network


class GroupActionTrainer(SupervisedTrainer):
    """Trains a ``GroupActionAutoEncoder`` with a ``GroupActionLoss``.

    Each iteration: ``prepare_batch`` builds ``x`` and ``T_R x`` on the device (batched), the network's
    ``forward(x, R, T_R x)`` runs the encoder twice (the second pass without gradients), the ALD split, the
    latent action and the decoder; the loss returns its total and terms.  MONAI's iteration events
    (``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``) fire as in
    ``SupervisedTrainer``, so stats, post-processing and metric handlers work unchanged.

    ``engine.state.output`` holds ``"image"`` (``x``), ``"label"`` (``T_R x``), ``"pred"``, ``"rotation"``,
    ``"loss"`` (tensor) and ``"loss_r"``, ``"loss_i"``, ``"loss_v"``, ``"mask_fraction"`` (floats).

    All arguments are those of ``SupervisedTrainer``; ``prepare_batch`` defaults to a
    ``PrepareGroupActionBatch`` that samples rotations on the device when the batch carries none, and
    ``decollate`` defaults to False (handlers read batched tensors).
    """

    def __init__(self, *args: Any, prepare_batch=None, decollate: bool = False, **kwargs: Any) -> None:
        if prepare_batch is None:
            prepare_batch = PrepareGroupActionBatch(random_if_missing=True)
        super().__init__(*args, prepare_batch=prepare_batch, decollate=decollate, **kwargs)

    def _iteration(self, engine: GroupActionTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, targets, args, kwargs = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        (rotation,) = args
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets, "rotation": rotation}

        def _compute_pred_loss() -> None:
            outs = engine.inferer(inputs, engine.network, rotation, targets)
            engine.state.output[Keys.PRED] = outs["pred"]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            losses = engine.loss_function(
                outs["pred"], targets, outs["z"], outs["z_target"], outs["z_acted"], outs["mask"]
            )
            engine.state.output[Keys.LOSS] = losses["loss"]
            for key in LOSS_TERMS:
                engine.state.output[key] = float(losses[key].detach().item())
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.amp and engine.scaler is not None:
            with torch.autocast(inputs.device.type, **engine.amp_kwargs):
                _compute_pred_loss()
            engine.scaler.scale(engine.state.output[Keys.LOSS]).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            _compute_pred_loss()
            engine.state.output[Keys.LOSS].backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output["mask_fraction"] = unwrap_network(engine.network).ald.varying_fraction()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
