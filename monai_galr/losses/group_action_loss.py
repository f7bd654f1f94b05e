"""The training objective of the method: rotated reconstruction plus two stop-gradient latent terms."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GroupActionLoss"]


class GroupActionLoss(nn.Module):
    """``lambda_r * L_rec + lambda_i * L_inv + lambda_v * L_const``, each a mean squared error.

    - ``L_rec = ||D(Phi_R(E(x))) - T_R(x)||^2``;
    - ``L_inv = ||(1 - M) * (E(x) - sg[E(T_R x)])||^2``: the invariant channels must not change under rotation;
    - ``L_const = ||M * (Phi_R(E(x)) - sg[E(T_R x)])||^2``: the latent action must match the encoder.

    ``sg`` is the stop-gradient: the latent target is detached here whatever the caller passed; the mask ``M``
    keeps its (straight-through) gradient, so a channel's logit is pushed by the error it would cause on either
    side of the split.

    Args:
        lambda_r / lambda_i / lambda_v: non-negative weights (0 disables a term, as in the paper's ablation).

    Returns (``forward``):
        dict with ``"loss"`` (the weighted total, a scalar tensor with gradient) and ``"loss_r"``, ``"loss_i"``,
        ``"loss_v"`` (each unweighted term, scalar tensors).

    Raises:
        ValueError: a negative or non-finite weight; shapes of a prediction and its target differ.
    """

    def __init__(self, lambda_r: float = 1.0, lambda_i: float = 1.0, lambda_v: float = 1.0) -> None:
        super().__init__()
        for name, value in (("lambda_r", lambda_r), ("lambda_i", lambda_i), ("lambda_v", lambda_v)):
            v = float(value)
            if not (v >= 0.0 and v < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        self.lambda_r, self.lambda_i, self.lambda_v = float(lambda_r), float(lambda_i), float(lambda_v)

    @staticmethod
    def _check(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ.")

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        z: torch.Tensor,
        z_target: torch.Tensor,
        z_acted: torch.Tensor,
        mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            pred: rotated prediction ``D(Phi_R(E(x)))``, ``(B, C, *spatial)``.
            target: ``T_R x``, same shape.
            z: ``E(x)``, ``(B, L, *latent_spatial)``.
            z_target: ``E(T_R x)``, same shape; detached here (the stop-gradient).
            z_acted: ``Phi_R(E(x))``, same shape.
            mask: ``(L,)`` ALD mask (1 = varying); may carry the straight-through gradient.
        """
        self._check(pred, target, "reconstruction")
        self._check(z, z_target, "latent")
        self._check(z_acted, z_target, "acted latent")
        if mask.ndim != 1 or mask.shape[0] != z.shape[1]:
            raise ValueError(f"mask must have shape ({z.shape[1]},) to match the latent, got {tuple(mask.shape)}.")
        m = mask.to(torch.float32).view(1, -1, *([1] * (z.ndim - 2)))
        z_t = z_target.detach().float()
        loss_r = torch.mean((pred.float() - target.float()) ** 2)
        loss_i = torch.mean(((1 - m) * (z.float() - z_t)) ** 2)
        loss_v = torch.mean((m * (z_acted.float() - z_t)) ** 2)
        total = self.lambda_r * loss_r + self.lambda_i * loss_i + self.lambda_v * loss_v
        return {"loss": total, "loss_r": loss_r, "loss_i": loss_i, "loss_v": loss_v}
