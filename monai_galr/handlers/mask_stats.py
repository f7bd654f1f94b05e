"""Log the statistics of the ALD partition mask (which latent channels are transformation-varying) every epoch."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from ignite.engine import Engine, Events

from monai_galr.handlers.tensorboard import LazyTensorBoardHandler

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["MaskStatsHandler", "find_ald"]

FRACTION_KEY = "mask_fraction"
COUNT_KEY = "mask_varying_channels"
DECIDED_KEY = "mask_decided"
DECIDED_MARGIN = 0.3  # a logit is decided when |sigmoid(alpha / T) - 0.5| >= 0.3


def find_ald(network: Any) -> Any:
    """Return the ALD partition block of ``network``, unwrapping ``DataParallel`` / DDP (``.module``) first.

    Raises:
        TypeError: neither ``network`` nor ``network.module`` has an ``ald`` attribute.
    """
    net = network
    while not hasattr(net, "ald") and hasattr(net, "module"):  # any wrapper with .module, not only nn.Modules
        net = net.module
    if not hasattr(net, "ald"):
        raise TypeError(
            "network must expose the ALD partition block as `network.ald` (a GroupActionAutoEncoder, possibly "
            f"wrapped in DataParallel/DistributedDataParallel), got {type(network).__name__} without `ald`."
        )
    return net.ald


class MaskStatsHandler(LazyTensorBoardHandler):
    """Record how many latent channels the ALD mask marks as transformation-varying.

    At every epoch end (or iteration end with ``epoch_level=False``) it reads ``network.ald`` and

    - stores ``engine.state.metrics["mask_fraction"]`` (``ald.varying_fraction()``, a float in [0, 1]) and
      ``engine.state.metrics["mask_varying_channels"]`` (the number of ones in ``ald.hard_mask()``), so
      ``StatsHandler``/``TensorBoardStatsHandler`` attached *after* this handler report them too;
    - logs one line with the python logger;
    - writes TensorBoard scalars ``{tag_prefix}/fraction``, ``{tag_prefix}/varying_channels`` and
      ``{tag_prefix}/decided`` (the share of channels with ``|p - 0.5| >= 0.3``, also in
      ``engine.state.metrics["mask_decided"]``) and a histogram ``{tag_prefix}/probabilities`` of
      ``ald.probabilities()`` (``sigmoid(alpha / T)`` for a learned partition);
    - when the trainer measures the per-term gradients on the logits (``GroupActionTrainer(alpha_grad_interval=N)``,
      ``engine.state.alpha_grad``), it collects them at every iteration where a new one was measured and reports,
      per term (``loss_r``, ``loss_i``, ``loss_v``, ``loss_s``, ``total``) over the period: ``mean_abs`` (mean
      ``|dL/dalpha|``), ``coherence`` (per channel ``|sum g| / sum |g|``, averaged: 1 when the gradient always
      pushes the same way, ~``1/sqrt(n)`` for a random sign) and ``flip_rate`` (the share of consecutive
      measurements whose sign differs), as TensorBoard scalars ``{tag_prefix}/alpha_grad/<term>/<stat>``, in
      ``engine.state.metrics["alpha_grad_<term>_<stat>"]`` and in the log line.

    Args:
        network: the model (``GroupActionAutoEncoder``), optionally wrapped in ``DataParallel``/DDP.
        summary_writer: a TensorBoard ``SummaryWriter``; by default one is created (lazily, at the first write)
            in ``log_dir``.
        log_dir: directory of the default writer.
        tag_prefix: prefix of the TensorBoard tags.
        epoch_level: write at ``EPOCH_COMPLETED`` (step = epoch) if True, else at ``ITERATION_COMPLETED``
            (step = iteration).
        name: logger name; None uses ``engine.logger``.

    Raises:
        TypeError: ``network`` has no ``ald`` block, or ``tag_prefix`` is not a string.

    Example::

        handler = MaskStatsHandler(network=net, log_dir="./runs")
        handler.attach(trainer)
    """

    def __init__(
        self,
        network: Any,
        summary_writer: SummaryWriter | None = None,
        log_dir: str = "./runs",
        tag_prefix: str = "mask",
        epoch_level: bool = True,
        name: str | None = None,
    ) -> None:
        find_ald(network)  # fail early with a clear message
        if not isinstance(tag_prefix, str):
            raise TypeError(f"tag_prefix must be a str, got {type(tag_prefix).__name__}.")
        super().__init__(summary_writer, log_dir)
        self.network = network
        self.tag_prefix = tag_prefix
        self.epoch_level = bool(epoch_level)
        self._name = name
        self.logger = logging.getLogger(name)
        self._grad_acc: dict[str, dict[str, Any]] = {}
        self._last_grad_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (a trainer)."""
        if self._name is None:
            self.logger = engine.logger
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        if not engine.has_event_handler(self.collect_grads, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect_grads)
        if not engine.has_event_handler(self, event):
            engine.add_event_handler(event, self)

    def collect_grads(self, engine: Engine) -> None:
        """Accumulate ``engine.state.alpha_grad`` (when a new measurement is there) for the next report."""
        ag = getattr(engine.state, "alpha_grad", None)
        if not ag or ag.get("iteration") == self._last_grad_iteration:
            return
        self._last_grad_iteration = ag.get("iteration")
        for term, g in ag.items():
            if term == "iteration":
                continue
            g = torch.as_tensor(g).detach().float().cpu().reshape(-1)
            acc = self._grad_acc.setdefault(
                term, {"sum": torch.zeros_like(g), "abs": torch.zeros_like(g), "n": 0, "flips": 0, "pairs": 0,
                       "prev": None}
            )
            acc["sum"] += g
            acc["abs"] += g.abs()
            acc["n"] += 1
            sign = torch.sign(g)
            if acc["prev"] is not None:
                valid = (sign != 0) & (acc["prev"] != 0)
                acc["flips"] += int((valid & (sign != acc["prev"])).sum())
                acc["pairs"] += int(valid.sum())
            acc["prev"] = sign

    def grad_stats(self, reset: bool = True) -> dict[str, dict[str, float]]:
        """Per term: ``mean_abs``, ``coherence``, ``flip_rate`` and ``measurements`` since the last report.

        ``reset`` clears the sums (the previous sign is kept, so flips across the boundary count).
        """
        out = {}
        for term, acc in self._grad_acc.items():
            if acc["n"] == 0:
                continue
            nz = acc["abs"] > 0
            coherence = float((acc["sum"][nz].abs() / acc["abs"][nz]).mean()) if nz.any() else float("nan")
            out[term] = {
                "mean_abs": float(acc["abs"].mean() / acc["n"]),
                "coherence": coherence,
                "flip_rate": acc["flips"] / acc["pairs"] if acc["pairs"] else float("nan"),
                "measurements": acc["n"],
            }
            if reset:
                acc["sum"].zero_()
                acc["abs"].zero_()
                acc["n"] = acc["flips"] = acc["pairs"] = 0
        return out

    def stats(self) -> dict[str, Any]:
        """The current mask statistics: fraction, count, number of channels, probabilities (CPU tensor), partition."""
        ald = find_ald(self.network)
        with torch.no_grad():
            hard = torch.as_tensor(ald.hard_mask()).detach().float().cpu().reshape(-1)
            probs = torch.as_tensor(ald.probabilities()).detach().float().cpu().reshape(-1)
            fraction = float(ald.varying_fraction())
            decided = float(((probs - 0.5).abs() >= DECIDED_MARGIN).float().mean()) if probs.numel() else 1.0
        return {
            FRACTION_KEY: fraction,
            DECIDED_KEY: decided,
            COUNT_KEY: int(hard.sum().round().item()),
            "channels": int(hard.numel()),
            "probabilities": probs,
            "partition": str(getattr(ald, "partition", "unknown")),
        }

    def __call__(self, engine: Engine) -> None:
        """Read the mask, store it in ``engine.state.metrics``, log it and write it to TensorBoard."""
        s = self.stats()
        engine.state.metrics[FRACTION_KEY] = s[FRACTION_KEY]
        engine.state.metrics[COUNT_KEY] = s[COUNT_KEY]
        engine.state.metrics[DECIDED_KEY] = s[DECIDED_KEY]
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        probs = s["probabilities"]
        p_txt = f"{probs.min():.3f}/{probs.mean():.3f}/{probs.max():.3f}" if probs.numel() else "n/a"
        grads = self.grad_stats(reset=True)
        g_txt = "".join(
            f"; dalpha {t}: |g| {v['mean_abs']:.2e} coherence {v['coherence']:.2f} flips {v['flip_rate']:.2f}"
            for t, v in grads.items()
        )
        self.logger.info(
            f"{'Epoch' if self.epoch_level else 'Iteration'}[{step}] mask ({s['partition']}): "
            f"{s[COUNT_KEY]}/{s['channels']} varying channels, fraction {s[FRACTION_KEY]:.4f}, "
            f"decided {s[DECIDED_KEY]:.2f}, probabilities min/mean/max {p_txt}{g_txt}"
        )
        writer = self.writer
        writer.add_scalar(f"{self.tag_prefix}/fraction", s[FRACTION_KEY], step)
        writer.add_scalar(f"{self.tag_prefix}/varying_channels", s[COUNT_KEY], step)
        writer.add_scalar(f"{self.tag_prefix}/decided", s[DECIDED_KEY], step)
        for term, stats in grads.items():
            for stat in ("mean_abs", "coherence", "flip_rate"):
                engine.state.metrics[f"alpha_grad_{term}_{stat}"] = stats[stat]
                writer.add_scalar(f"{self.tag_prefix}/alpha_grad/{term}/{stat}", stats[stat], step)
        if probs.numel():
            writer.add_histogram(f"{self.tag_prefix}/probabilities", probs.numpy(), step)
        writer.flush()
