"""``GroupActionTrainer``: MONAI's ``SupervisedTrainer`` with the group-action training step."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from monai_galr.engines.batch import PrepareGroupActionBatch, start_iteration
from monai_galr.utils import unwrap

__all__ = ["GroupActionTrainer", "unwrap_network"]

LOSS_TERMS = ("loss_r", "loss_i", "loss_v")
ALPHA_GRAD_TERMS = ("loss_r", "loss_i", "loss_v", "loss_s")


#: the former name of :func:`monai_galr.utils.unwrap` (kept for configs and callers that import it from here)
unwrap_network = unwrap


class GroupActionTrainer(SupervisedTrainer):
    """Trains a ``GroupActionAutoEncoder`` with a ``GroupActionLoss``.

    Each iteration: ``prepare_batch`` builds ``x`` and ``T_R x`` on the device (batched), the network's
    ``forward(x, R, T_R x)`` runs the encoder twice (the second pass without gradients), the ALD split, the
    latent action and the decoder; the loss returns its total and terms.  MONAI's iteration events
    (``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``) fire as in
    ``SupervisedTrainer``, so stats, post-processing and metric handlers work unchanged.

    ``engine.state.output`` holds ``"image"`` (``x``), ``"label"`` (``T_R x``), ``"pred"``, ``"rotation"``,
    ``"loss"`` (tensor) and ``"loss_r"``, ``"loss_i"``, ``"loss_v"``, ``"mask_fraction"`` (floats).

    All arguments but one are those of ``SupervisedTrainer``; ``prepare_batch`` defaults to a
    ``PrepareGroupActionBatch`` that samples rotations on the device when the batch carries none, and
    ``decollate`` defaults to False (handlers read batched tensors).

    Args:
        alpha_grad_interval: every this many iterations (0: never) the gradient that each weighted loss term
            (``lambda_r * L_rec``, ``lambda_i * L_inv``, ``lambda_v * L_const`` and, when the loss has one,
            ``lambda_s * L_sparse``) sends to the ALD logits ``alpha`` is computed separately
            (``torch.autograd.grad``, the graph kept for the real backward pass; it reaches back through the
            decoder only, not the encoder) and stored in ``engine.state.alpha_grad``: ``{"iteration": int,
            "<term>": (L,) CPU tensor, "total": (L,)}`` (``total``: the sum over the ``mask_loss_terms``).
            ``MaskStatsHandler`` turns it into magnitudes, sign-flip rates and coherence per term.  Skipped
            (``None``) for a fixed partition.
        mask_loss_terms: the loss terms whose gradient reaches the ALD logits (``None``, or the strings ``"all"`` /
            ``"null"`` as a command line passes them: all of them, the paper);
            e.g. ``["loss_i", "loss_v"]`` lets the two latent terms alone decide the split while the
            reconstruction still trains everything else.  The logits' gradient is then
            ``autograd.grad(sum of the chosen weighted terms, alpha)`` (averaged over the processes under DDP,
            scaled like the loss under AMP) in place of the full backward pass's.
        mask_warmup_epochs: the logits stay where they started for this many epochs (their gradient is dropped,
            so Adam leaves them alone), while the encoder and decoder learn with the initial split; 0: off.  With
            ``alpha_init > 0`` every channel starts varying, so the encoder first learns what the action can
            represent and each channel chooses afterwards.
        mask_warmup_iterations: the same hold counted in iterations (``engine.state.iteration``, over all epochs):
            the logits are held while either warm-up lasts; a fraction of an epoch where one whole epoch of the
            initial split costs too much (e.g. a fixed background that the all-varying start cannot hold); 0: off.

    Raises:
        ValueError: ``alpha_grad_interval``, ``mask_warmup_epochs`` or ``mask_warmup_iterations`` is not an int >= 0;
            ``mask_loss_terms`` names a term that is not one of ``ALPHA_GRAD_TERMS`` or is empty.
    """

    def __init__(
        self,
        *args: Any,
        prepare_batch=None,
        decollate: bool = False,
        alpha_grad_interval: int = 0,
        mask_loss_terms: list[str] | tuple[str, ...] | None = None,
        mask_warmup_epochs: int = 0,
        mask_warmup_iterations: int = 0,
        **kwargs: Any,
    ) -> None:
        for name, value in (
            ("alpha_grad_interval", alpha_grad_interval),
            ("mask_warmup_epochs", mask_warmup_epochs),
            ("mask_warmup_iterations", mask_warmup_iterations),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0: off), got {value!r}.")
        if isinstance(mask_loss_terms, str) and mask_loss_terms.lower() in ("all", "null", "none"):
            mask_loss_terms = None  # the command line's spellings of "every term"
        if mask_loss_terms is not None:
            terms = [mask_loss_terms] if isinstance(mask_loss_terms, str) else list(mask_loss_terms)
            unknown = [t for t in terms if t not in ALPHA_GRAD_TERMS]
            if not terms or unknown:
                raise ValueError(
                    "mask_loss_terms must be null / 'all' (all terms) or a non-empty list of "
                    f"{list(ALPHA_GRAD_TERMS)}, got {mask_loss_terms!r}."
                )
            mask_loss_terms = tuple(terms)
        if prepare_batch is None:
            prepare_batch = PrepareGroupActionBatch(random_if_missing=True)
        super().__init__(*args, prepare_batch=prepare_batch, decollate=decollate, **kwargs)
        self.alpha_grad_interval = alpha_grad_interval
        self.mask_loss_terms = mask_loss_terms
        self.mask_warmup_epochs = mask_warmup_epochs
        self.mask_warmup_iterations = mask_warmup_iterations
        self.state.alpha_grad = None
        core = unwrap(self.network)
        if getattr(self.loss_function, "mask_gradient", None) == "two_sided" and not getattr(
            core, "action_is_channelwise", True
        ):  # checked here, before the first batch is loaded (the loss would raise at the first step)
            raise ValueError(
                "mask_gradient 'two_sided' needs a channel-wise latent action (action: grid or harmonic), got action "
                f"{getattr(core, 'action_name', '?')!r}; set mask_gradient: one_sided (--mask_gradient one_sided)."
            )
        switch = int(getattr(core, "mask_switch_images", 0) or 0)
        if switch and mask_loss_terms is not None and "loss_r" not in mask_loss_terms:
            raise ValueError(
                f"mask_switch_images {switch} reaches the logits through loss_r, which mask_loss_terms "
                f"{list(mask_loss_terms)} keeps from them (the switched decodes would cost time and change nothing); "
                "set mask_loss_terms: all (or include loss_r), or mask_switch_images: 0."
            )

    def _mask_grad(self, engine: GroupActionTrainer, losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The logits' gradient from the ``mask_loss_terms`` only (``None``: no learned logits)."""
        alpha = getattr(getattr(unwrap(engine.network), "ald", None), "alpha", None)
        if alpha is None or not alpha.requires_grad:
            return None
        weights = engine.loss_function.weights() if hasattr(engine.loss_function, "weights") else {}
        total = None
        for key in self.mask_loss_terms:
            term = losses.get(key)
            w = float(weights.get(key, 1.0))
            if term is None or w == 0.0 or not term.requires_grad:
                continue
            total = w * term if total is None else total + w * term
        g = None
        if total is not None:
            (g,) = torch.autograd.grad(total, alpha, retain_graph=True, allow_unused=True)
        g = torch.zeros_like(alpha) if g is None else g.detach()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(g)
            g = g / torch.distributed.get_world_size()
        return g

    def _alpha_grads(self, engine: GroupActionTrainer, losses: dict[str, torch.Tensor]) -> dict | None:
        """Per-term gradients of the weighted loss terms w.r.t. the ALD logits (see ``alpha_grad_interval``)."""
        alpha = getattr(getattr(unwrap(engine.network), "ald", None), "alpha", None)
        if alpha is None or not alpha.requires_grad:
            return None
        weights = engine.loss_function.weights() if hasattr(engine.loss_function, "weights") else {}
        out: dict[str, Any] = {"iteration": int(engine.state.iteration)}
        total = torch.zeros_like(alpha, dtype=torch.float32)
        for key in ALPHA_GRAD_TERMS:
            if key not in losses:
                continue
            w = float(weights.get(key, 1.0))
            term = losses[key]
            if w == 0.0 or not term.requires_grad:
                g = torch.zeros_like(alpha, dtype=torch.float32)
            else:
                (g,) = torch.autograd.grad(w * term, alpha, retain_graph=True, allow_unused=True)
                g = torch.zeros_like(alpha, dtype=torch.float32) if g is None else g.detach().float()
            out[key] = g.cpu()
            if self.mask_loss_terms is None or key in self.mask_loss_terms:
                total = total + g  # "total": what reaches the logits
        out["total"] = total.cpu()
        return out

    def _iteration(self, engine: GroupActionTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        inputs, targets, rotation = start_iteration(engine, batchdata)

        def _compute_pred_loss() -> None:
            outs = engine.inferer(inputs, engine.network, rotation, targets)
            engine.state.output[Keys.PRED] = outs["pred"]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            losses = engine.loss_function.from_outputs(outs, targets)
            engine.state.output[Keys.LOSS] = losses["loss"]
            for key in LOSS_TERMS + (("loss_s",) if "loss_s" in losses else ()):
                engine.state.output[key] = float(losses[key].detach().item())
            interval = engine.alpha_grad_interval
            if interval and (engine.state.iteration - 1) % interval == 0:
                engine.state.alpha_grad = self._alpha_grads(engine, losses)
            if engine.mask_loss_terms is not None:
                mask_grad[0] = self._mask_grad(engine, losses)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        def _set_mask_grad(scale: float = 1.0) -> None:
            alpha = getattr(getattr(unwrap(engine.network), "ald", None), "alpha", None)
            if alpha is None:
                return
            warm = engine.state.epoch <= engine.mask_warmup_epochs
            if warm or engine.state.iteration <= engine.mask_warmup_iterations:
                alpha.grad = None  # warm-up: the optimizer skips the logits
            elif mask_grad[0] is not None:
                alpha.grad = mask_grad[0] * scale

        mask_grad: list[torch.Tensor | None] = [None]
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.amp and engine.scaler is not None:
            with torch.autocast(inputs.device.type, **engine.amp_kwargs):
                _compute_pred_loss()
            engine.scaler.scale(engine.state.output[Keys.LOSS]).backward()
            _set_mask_grad(float(engine.scaler.get_scale()))
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            _compute_pred_loss()
            engine.state.output[Keys.LOSS].backward()
            _set_mask_grad()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output["mask_fraction"] = unwrap(engine.network).ald.varying_fraction()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
