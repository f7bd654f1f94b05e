"""Adaptive Latent Disentanglement (ALD): a learnable binary split of the latent channels."""

from __future__ import annotations

import contextlib
import math
import numbers

import torch
from monai.utils import look_up_option
from torch import nn

__all__ = ["ALD", "AdaptiveLatentDisentanglement", "GATES", "PARTITIONS"]

PARTITIONS = ("learned", "manual", "all")
GATES = ("ste", "gumbel")
MAX_TEMPERATURE = 100.0


class ALD(nn.Module):
    """Splits a latent ``z`` of ``num_channels`` channels into varying and invariant parts.

    ``partition="learned"``: logits ``alpha`` (one per channel) and a threshold ``tau``; the hard mask is
    ``M = 1[sigmoid(alpha) > tau]``, evaluated as the equivalent ``alpha > logit(tau)``: one exact float comparison,
    so every backend (PyTorch CPU/GPU, onnxruntime, an exporter's constant folding) gives the same mask even for a
    logit at the threshold up to rounding, where two sigmoid implementations can disagree.  The straight-through
    estimator uses ``M`` in the forward pass and the gradient of ``sigmoid(alpha)`` in the backward pass.

    ``temperature`` ``T`` scales the logits: the probabilities are ``p = sigmoid(alpha / T)`` and the hard mask
    ``1[p > tau]`` (``alpha > T * logit(tau)``).  ``gate`` chooses the *training* forward pass of a learned
    partition:

    - ``"ste"`` (the paper): the deterministic hard mask ``1[p > tau]`` with the straight-through gradient of ``p``;
    - ``"gumbel"`` (a binary Gumbel / hard-concrete gate): in training mode each step draws
      ``M ~ Bernoulli(p)`` as ``1[alpha / T + l > 0]`` with logistic noise ``l`` (torch's global generator: seed it),
      and passes the gradient of ``sigmoid(alpha / T + l)`` back.  A channel whose ``p`` is undecided is then seen
      by the loss on both sides of the split, so its logit is pushed by the difference, and it must decide
      (``p`` near 0 or 1) to be used reliably.  ``tau`` does not enter training with this gate: it only reads the
      hard mask off the learned probabilities.

    In eval mode (``module.eval()``: validation, inference, export) every gate uses the exact deterministic hard
    mask, with no noise.  ``partition="manual"``: a fixed mask whose first
    ``round(varying_fraction * num_channels)`` channels vary (GALR-style).  ``partition="all"``: every channel
    varies (EquivNR-style).

    Args:
        num_channels: number of latent channels ``L``.
        partition: ``"learned"``, ``"manual"`` or ``"all"``.
        tau: threshold in (0, 1) of the learned mask.
        varying_fraction: fraction in [0, 1] of varying channels for ``partition="manual"``.
        alpha_init: initial value of the logits (learned partition): an offset from the threshold
            ``T * logit(tau)`` when ``alpha_init_at="threshold"``, the value itself when ``"zero"``.
        alpha_init_std: standard deviation of Gaussian noise added to ``alpha_init`` (drawn from torch's global
            generator: seed it for reproducible runs).
        alpha_init_at: ``"threshold"`` (default: every logit starts at the threshold, so training starts from the
            same undecided state whatever ``tau``: with ``tau = 0.7`` and logits at 0 every channel would start
            0.85 logit units on the invariant side) or ``"zero"`` (logits start at ``alpha_init`` itself; the same
            for ``tau = 0.5``).
        gate: ``"ste"`` or ``"gumbel"`` (see above; learned partition only).
        temperature: logit temperature ``T`` in (0, 100]: ``p = sigmoid(alpha / T)``.

    Raises:
        ValueError: unknown ``partition`` / ``gate``, ``tau`` outside (0, 1), ``varying_fraction`` outside [0, 1],
            ``temperature`` outside (0, 100] or ``num_channels < 1``.

    Example::

        >>> ald = ALD(8, partition="manual", varying_fraction=0.25)
        >>> z_v, z_i = ald.split(torch.rand(2, 8, 4, 4))
        >>> ald.hard_mask()
        tensor([1., 1., 0., 0., 0., 0., 0., 0.])
    """

    def __init__(
        self,
        num_channels: int,
        partition: str = "learned",
        tau: float = 0.5,
        varying_fraction: float = 0.5,
        alpha_init: float = 0.0,
        alpha_init_std: float = 0.0,
        gate: str = "ste",
        temperature: float = 1.0,
        alpha_init_at: str = "threshold",
    ) -> None:
        super().__init__()
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be a positive int, got {num_channels!r}.")
        self.partition = look_up_option(partition, PARTITIONS)
        tau = float(tau)
        if not 0.0 < tau < 1.0:
            raise ValueError(f"tau must lie in the open interval (0, 1), got {tau}.")
        varying_fraction = float(varying_fraction)
        if not 0.0 <= varying_fraction <= 1.0:
            raise ValueError(f"varying_fraction must lie in [0, 1], got {varying_fraction}.")
        if alpha_init_std < 0:
            raise ValueError(f"alpha_init_std must be >= 0, got {alpha_init_std}.")
        if gate not in GATES:
            raise ValueError(f"gate (mask_gate) must be one of {GATES}, got {gate!r}.")
        self.gate = gate
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise ValueError(f"temperature (mask_temperature) must be a number in (0, {MAX_TEMPERATURE:g}], got "
                             f"{temperature!r} ({type(temperature).__name__}).")
        temperature = float(temperature)
        if not 0.0 < temperature <= MAX_TEMPERATURE:
            raise ValueError(
                f"temperature (mask_temperature) must lie in (0, {MAX_TEMPERATURE:g}], got {temperature}."
            )
        if alpha_init_at not in ("threshold", "zero"):
            raise ValueError(f"alpha_init_at must be 'threshold' or 'zero', got {alpha_init_at!r}.")
        self.num_channels = num_channels
        self._forced: torch.Tensor | None = None  # see use_mask
        self.tau = tau
        self.temperature = temperature
        if self.partition == "learned":
            offset = self.threshold if alpha_init_at == "threshold" else 0.0
            alpha = torch.full((num_channels,), float(alpha_init) + offset)
            if alpha_init_std > 0:
                alpha = alpha + alpha_init_std * torch.randn(num_channels)
            self.alpha = nn.Parameter(alpha)
            self.register_buffer("fixed_mask", torch.zeros(0), persistent=False)
        else:
            n_var = num_channels if self.partition == "all" else int(round(varying_fraction * num_channels))
            mask = torch.zeros(num_channels)
            mask[:n_var] = 1.0
            self.register_parameter("alpha", None)
            self.register_buffer("fixed_mask", mask)

    @property
    def threshold(self) -> float:
        """``T * logit(tau)``: the hard mask is ``1[alpha > threshold]``, i.e. ``1[sigmoid(alpha / T) > tau]``."""
        return self.temperature * math.log(self.tau / (1.0 - self.tau))

    def probabilities(self) -> torch.Tensor:
        """``(L,)``: ``sigmoid(alpha / T)`` for the learned partition, the fixed 0/1 mask otherwise."""
        if self.alpha is None:
            return self.fixed_mask
        return torch.sigmoid(self.alpha / self.temperature)

    def decided_fraction(self, margin: float = 0.3) -> float:
        """Fraction of channels whose probability is decided: ``|p - 0.5| >= margin`` (1.0 for a fixed mask)."""
        if not 0.0 <= margin <= 0.5:
            raise ValueError(f"margin must lie in [0, 0.5], got {margin!r}.")
        with torch.no_grad():
            return float(((self.probabilities() - 0.5).abs() >= margin).float().mean().item())

    def hard_mask(self) -> torch.Tensor:
        """``(L,)`` float tensor of 0/1: 1 marks a varying channel.  No gradient."""
        if self.alpha is None:
            return self.fixed_mask
        return (self.alpha.detach() > self.threshold).to(self.alpha.dtype)

    def mask(self) -> torch.Tensor:
        """``(L,)`` mask used in the forward pass, exactly 0/1, with the straight-through gradient.

        Eval mode (and ``gate="ste"``): the deterministic hard mask, gradient of ``sigmoid(alpha / T)``.
        Training mode with ``gate="gumbel"``: a sample ``1[alpha / T + l > 0]`` (logistic ``l``), gradient of
        ``sigmoid(alpha / T + l)``.
        """
        if self._forced is not None:
            return self._forced
        if self.alpha is None:
            return self.fixed_mask
        if self.training and self.gate == "gumbel":
            u = torch.rand_like(self.alpha).clamp_(1e-6, 1.0 - 1e-6)
            y = self.alpha / self.temperature + (torch.log(u) - torch.log1p(-u))
            soft = torch.sigmoid(y)
            return (y.detach() > 0).to(soft.dtype) + (soft - soft.detach())
        soft = self.probabilities()
        # exactly 0/1 in the forward pass (the bracket is exactly zero); gradient of sigmoid(alpha / T) backward
        return (self.alpha.detach() > self.threshold).to(soft.dtype) + (soft - soft.detach())

    @contextlib.contextmanager
    def use_mask(self, mask: torch.Tensor):
        """Within the block, ``mask()`` returns ``mask`` (an ``(L,)`` 0/1 tensor, no gradient) instead of its own.

        For passes that must see another split than the current one (every reader of the mask, the action and the
        hybrid decoder's views alike): the switched-channel decodes of ``GroupActionAutoEncoder(mask_switch_images=N)``.
        """
        if not isinstance(mask, torch.Tensor) or mask.shape != (self.num_channels,):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"use_mask needs an ({self.num_channels},) mask, got {shape}.")
        previous, self._forced = self._forced, mask.detach()
        try:
            yield
        finally:
            self._forced = previous

    @torch.no_grad()
    def settle_logits(self, margin: float = 1e-4) -> int:
        """Move logits lying within ``margin`` of the threshold ``logit(tau)`` to ``logit(tau) +/- margin``.

        The side is the channel's current hard mask, so the forward pass (which sees only the hard mask) is
        unchanged bit for bit.  The mask itself is an exact comparison, but code that recomputes it as
        ``sigmoid(alpha) > tau`` (the paper's form: older versions of this class, other tools reading the weights)
        can flip a logit that sits at the threshold up to rounding; settled logits give the same mask under both
        forms.  The shipped weights are settled.

        Args:
            margin: the distance from the threshold, in logit units (> 0; 1e-4 keeps ``sigmoid`` well clear of
                ``tau`` in float32).

        Returns:
            how many logits were moved (0 for a fixed partition).

        Raises:
            ValueError: ``margin`` is not positive.
            RuntimeError: the hard mask would change (it cannot for margins this small; a guard, not an expectation).
        """
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin!r}.")
        if self.alpha is None:
            return 0
        before = self.hard_mask()
        threshold = self.threshold
        near = (self.alpha - threshold).abs() < margin
        target = torch.where(before > 0, threshold + margin, threshold - margin).to(self.alpha.dtype)
        self.alpha.copy_(torch.where(near, target, self.alpha))
        if not torch.equal(self.hard_mask(), before):
            raise RuntimeError(f"settle_logits(margin={margin}) would change the hard mask; use a larger margin.")
        return int(near.sum())

    def varying_fraction(self) -> float:
        """Fraction of channels currently marked as varying."""
        return float(self.hard_mask().mean().item())

    def broadcast(self, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reshape an ``(L,)`` mask to ``(1, L, 1, ...)`` to multiply ``z`` of shape ``(B, L, *spatial)``."""
        if z.ndim < 2 or z.shape[1] != self.num_channels:
            raise ValueError(f"expected a latent (B, {self.num_channels}, ...), got {tuple(z.shape)}.")
        return mask.to(z.dtype).view(1, -1, *([1] * (z.ndim - 2)))

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_v, z_i) = (M * z, (1 - M) * z)``, each ``(B, L, *spatial)``."""
        m = self.broadcast(self.mask(), z)
        return m * z, (1 - m) * z

    def extra_repr(self) -> str:
        extra = f", gate={self.gate!r}, temperature={self.temperature}" if self.alpha is not None else ""
        return f"num_channels={self.num_channels}, partition={self.partition!r}, tau={self.tau}{extra}"


AdaptiveLatentDisentanglement = ALD
