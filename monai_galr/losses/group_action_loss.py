"""The training objective of the method: rotated reconstruction plus two stop-gradient latent terms."""

from __future__ import annotations

import numbers

import torch
from torch import nn

__all__ = ["GroupActionLoss"]


MAX_LAMBDA_S = 10.0
MASK_GRADIENTS = ("one_sided", "two_sided")


class GroupActionLoss(nn.Module):
    """``lambda_r * L_rec + lambda_i * L_inv + lambda_v * L_const + lambda_s * L_sparse``.

    The first three terms are mean squared errors:

    - ``L_rec = ||D(Phi_R(E(x))) - T_R(x)||^2``;
    - ``L_inv = ||(1 - M) * (E(x) - sg[E(T_R x)])||^2``: the invariant channels must not change under rotation;
    - ``L_const = ||M * (Phi_R(E(x)) - sg[E(T_R x)])||^2``: the latent action must match the encoder;
    - ``L_sparse = mean(M)``: a sparsity prior on the varying fraction (its value is the fraction of varying
      channels in this step; its gradient, through the straight-through mask, pulls every logit towards
      "invariant" by the same amount, so a channel stays varying only where the other terms keep asking for it).
      Nothing else in the loss rewards an invariant channel (all channels varying make ``L_inv`` zero).

    ``sg`` is the stop-gradient: the latent target is detached here whatever the caller passed; the mask ``M``
    keeps its (straight-through) gradient.

    ``mask_gradient`` chooses where the mask stands in the two latent terms; with the hard 0/1 mask both forms
    have the same value and send the same gradient to the encoder, only the logits' gradient differs:

    - ``"one_sided"`` (the paper's form): the mask inside the square, ``((1 - M) * d_inv)^2`` and
      ``(M * d_var)^2``.  The derivative of ``(1 - M)^2`` vanishes at ``M = 1`` and that of ``M^2`` at ``M = 0``,
      so ``L_inv`` reaches only the logits of invariant channels (pushing them to "varying") and ``L_const`` only
      those of varying channels (pushing them to "invariant"): each logit hears one side of its choice.
    - ``"two_sided"``: the mask weighs each channel's mean squared error, ``mean_c (1 - M_c) c_inv(c)`` and
      ``mean_c M_c c_var(c)`` with ``c_inv(c) = mean (E_c(x) - sg[E_c(T_R x)])^2`` (how much channel ``c`` changes
      under the rotation) and ``c_var(c) = mean (Phi^v_R(E(x))_c - sg[E_c(T_R x)])^2`` (how far the action is from
      the encoder on channel ``c``), both measured on every channel (``z_rotated``: the action applied to all
      channels, from the network's training pass).  Every logit then receives
      ``(lambda_v * c_var(c) - lambda_i * c_inv(c)) / L``: a channel is pushed to "varying" where rotating it
      explains the rotated encoding better than leaving it alone, and to "invariant" where it does not change
      under rotation but the action would move it — a consistent, data-driven signal for every channel.

    With ``pred_switch`` (the network's ``mask_switch_images``: the first ``N`` images decoded once per channel with
    that channel's state switched) the reconstruction reaches the logits through the switch instead of the
    straight-through linearisation: ``L_rec`` gains ``sum_c (M_c - sg[M_c]) * Delta_c``, exactly zero in value, with
    ``Delta_c = L_rec(M_c = 1) - L_rec(M_c = 0)`` estimated on those ``N`` images (each switch against
    ``pred_switch_base``, the same images decoded the same way with the current mask), so logit ``c`` receives
    ``Delta_c * dM_c/dalpha_c``: the reconstruction error's actual change between its two states.  Needs
    ``"two_sided"`` (the one-sided latent terms would reach the logits through the prediction's mask).

    Args:
        lambda_r / lambda_i / lambda_v: non-negative weights (0 disables a term, as in the paper's ablation).
        lambda_s: weight of the sparsity prior, in [0, 10] (0: the paper's loss).
        mask_gradient: ``"one_sided"`` (the paper) or ``"two_sided"`` (see above; needs ``z_rotated``).

    Returns (``forward``):
        dict with ``"loss"`` (the weighted total, a scalar tensor with gradient) and ``"loss_r"``, ``"loss_i"``,
        ``"loss_v"``, ``"loss_s"`` (each unweighted term, scalar tensors).

    Raises:
        ValueError: a negative or non-finite weight, ``lambda_s`` above 10, ``mask_gradient`` not one of
            ``MASK_GRADIENTS``; shapes of a prediction and its target differ; ``"two_sided"`` without
            ``z_rotated``.
    """

    def __init__(
        self,
        lambda_r: float = 1.0,
        lambda_i: float = 1.0,
        lambda_v: float = 1.0,
        lambda_s: float = 0.0,
        mask_gradient: str = "one_sided",
    ) -> None:
        super().__init__()
        if mask_gradient not in MASK_GRADIENTS:
            raise ValueError(f"mask_gradient must be one of {MASK_GRADIENTS}, got {mask_gradient!r}.")
        self.mask_gradient = mask_gradient
        for name, value in (("lambda_r", lambda_r), ("lambda_i", lambda_i), ("lambda_v", lambda_v),
                            ("lambda_s", lambda_s)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__}).")
            v = float(value)
            if not (v >= 0.0 and v < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        if float(lambda_s) > MAX_LAMBDA_S:
            raise ValueError(
                f"lambda_s (the sparsity prior's weight) must lie in [0, {MAX_LAMBDA_S:g}], got {lambda_s!r}: "
                "above that it outweighs the reconstruction and empties z_v."
            )
        self.lambda_r, self.lambda_i, self.lambda_v = float(lambda_r), float(lambda_i), float(lambda_v)
        self.lambda_s = float(lambda_s)

    def weights(self) -> dict[str, float]:
        """``{"loss_r": lambda_r, "loss_i": lambda_i, "loss_v": lambda_v, "loss_s": lambda_s}``."""
        return {"loss_r": self.lambda_r, "loss_i": self.lambda_i, "loss_v": self.lambda_v, "loss_s": self.lambda_s}

    def from_outputs(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss of the network's training pass: ``outputs`` is ``GroupActionAutoEncoder(x, R, target)``'s dict."""
        return self(outputs["pred"], target, outputs["z"], outputs["z_target"], outputs["z_acted"], outputs["mask"],
                    z_rotated=outputs.get("z_rotated"), pred_switch=outputs.get("pred_switch"),
                    pred_switch_base=outputs.get("pred_switch_base"))

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
        z_rotated: torch.Tensor | None = None,
        pred_switch: torch.Tensor | None = None,
        pred_switch_base: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute the loss.

        Args:
            pred: rotated prediction ``D(Phi_R(E(x)))``, ``(B, C, *spatial)``.
            target: ``T_R x``, same shape.
            z: ``E(x)``, ``(B, L, *latent_spatial)``.
            z_target: ``E(T_R x)``, same shape; detached here (the stop-gradient).
            z_acted: ``Phi_R(E(x))``, same shape.
            mask: ``(L,)`` ALD mask (1 = varying); may carry the straight-through gradient.
            z_rotated: ``Phi^v_R(E(x))`` on every channel (same shape as ``z``); needed by ``"two_sided"``,
                ignored by ``"one_sided"``.
            pred_switch: ``(N, L, C, *spatial)``, the first ``N`` images of the batch decoded with channel ``c``'s
                state switched (see above), or ``None`` (the straight-through estimator).
            pred_switch_base: ``(N, C, *spatial)``, the same images decoded as ``pred_switch`` was but with the
                current mask: the reference each switch is compared with (``None``: ``pred[:N]``).
        """
        self._check(pred, target, "reconstruction")
        self._check(z, z_target, "latent")
        self._check(z_acted, z_target, "acted latent")
        if mask.ndim != 1 or mask.shape[0] != z.shape[1]:
            raise ValueError(f"mask must have shape ({z.shape[1]},) to match the latent, got {tuple(mask.shape)}.")
        m = mask.to(torch.float32).view(1, -1, *([1] * (z.ndim - 2)))
        z_t = z_target.detach().float()
        loss_r = torch.mean((pred.float() - target.float()) ** 2)
        if self.mask_gradient == "two_sided":
            if z_rotated is None:
                raise ValueError(
                    "mask_gradient='two_sided' needs z_rotated (the action on every channel), which the network "
                    "returns only for a channel-wise action (grid, harmonic); use mask_gradient: one_sided with "
                    "action: learned."
                )
            self._check(z_rotated, z_target, "rotated latent")
            dims = [0] + list(range(2, z.ndim))
            c_inv = torch.mean((z.float() - z_t) ** 2, dim=dims)
            c_var = torch.mean((z_rotated.float() - z_t) ** 2, dim=dims)
            m1 = mask.to(torch.float32)
            loss_i = torch.mean((1 - m1) * c_inv)
            loss_v = torch.mean(m1 * c_var)
        else:
            loss_i = torch.mean(((1 - m) * (z.float() - z_t)) ** 2)
            loss_v = torch.mean((m * (z_acted.float() - z_t)) ** 2)
        if pred_switch is not None:
            loss_r = loss_r + self._switch_term(pred, target, mask, pred_switch, pred_switch_base)
        loss_s = mask.to(torch.float32).mean()
        total = self.lambda_r * loss_r + self.lambda_i * loss_i + self.lambda_v * loss_v
        if self.lambda_s > 0:
            total = total + self.lambda_s * loss_s
        return {"loss": total, "loss_r": loss_r, "loss_i": loss_i, "loss_v": loss_v, "loss_s": loss_s}

    def _switch_term(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        pred_switch: torch.Tensor,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``sum_c (M_c - sg[M_c]) * Delta_c``: zero in value, the switch's change of ``L_rec`` as the logits' gradient."""
        if self.mask_gradient != "two_sided":
            raise ValueError(
                "pred_switch (mask_switch_images > 0) needs mask_gradient='two_sided': the one-sided latent terms "
                "reach the logits through the prediction's mask, which the switched pass renders without gradient."
            )
        n, num = pred_switch.shape[0], mask.shape[0]
        if pred_switch.ndim != pred.ndim + 1 or pred_switch.shape[1] != num or pred_switch.shape[2:] != pred.shape[1:] \
                or not 1 <= n <= pred.shape[0]:
            raise ValueError(
                f"pred_switch must be (N, {num}, *{tuple(pred.shape[1:])}) with 1 <= N <= {pred.shape[0]}, got "
                f"{tuple(pred_switch.shape)}."
            )
        base = pred[:n] if base is None else base
        if base.shape != (n, *pred.shape[1:]):
            raise ValueError(f"pred_switch_base must be {(n, *pred.shape[1:])} to match pred_switch, got "
                             f"{tuple(base.shape)}.")
        dims = list(range(1, pred.ndim))
        tgt = target[:n].float()
        err_now = torch.mean((base.detach().float() - tgt) ** 2, dim=dims)  # (N,)
        err_switch = torch.mean((pred_switch.float() - tgt[:, None]) ** 2, dim=[d + 1 for d in dims])  # (N, L)
        hard = mask.detach().float()
        # L(M_c = 1) - L(M_c = 0): switching a varying channel goes 1 -> 0, an invariant one 0 -> 1
        delta = ((err_now[:, None] - err_switch).mean(0)) * (2 * hard - 1)
        m = mask.to(torch.float32)
        return torch.sum((m - m.detach()) * delta.detach())
