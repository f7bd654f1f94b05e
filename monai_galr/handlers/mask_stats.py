"""Log the statistics of the ALD partition mask (which latent channels are transformation-varying) every epoch."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
    from torch.utils.tensorboard import SummaryWriter
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )
    SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = ["MaskStatsHandler", "find_ald"]

FRACTION_KEY = "mask_fraction"
COUNT_KEY = "mask_varying_channels"


def find_ald(network: Any) -> Any:
    """Return the ALD partition block of ``network``, unwrapping ``DataParallel`` / DDP (``.module``) first.

    Raises:
        TypeError: neither ``network`` nor ``network.module`` has an ``ald`` attribute.
    """
    net = network
    while not hasattr(net, "ald") and hasattr(net, "module"):
        net = net.module
    if not hasattr(net, "ald"):
        raise TypeError(
            "network must expose the ALD partition block as `network.ald` (a GroupActionAutoEncoder, possibly "
            f"wrapped in DataParallel/DistributedDataParallel), got {type(network).__name__} without `ald`."
        )
    return net.ald


class MaskStatsHandler:
    """Record how many latent channels the ALD mask marks as transformation-varying.

    At every epoch end (or iteration end with ``epoch_level=False``) it reads ``network.ald`` and

    - stores ``engine.state.metrics["mask_fraction"]`` (``ald.varying_fraction()``, a float in [0, 1]) and
      ``engine.state.metrics["mask_varying_channels"]`` (the number of ones in ``ald.hard_mask()``), so
      ``StatsHandler``/``TensorBoardStatsHandler`` attached *after* this handler report them too;
    - logs one line with the python logger;
    - writes TensorBoard scalars ``{tag_prefix}/fraction`` and ``{tag_prefix}/varying_channels`` and a histogram
      ``{tag_prefix}/probabilities`` of ``ald.probabilities()`` (``sigmoid(alpha)`` for a learned partition).

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
        self.network = network
        self._writer = summary_writer
        self.internal_writer = summary_writer is None
        self.log_dir = log_dir
        self.tag_prefix = tag_prefix
        self.epoch_level = bool(epoch_level)
        self._name = name
        self.logger = logging.getLogger(name)

    @property
    def writer(self) -> SummaryWriter:
        """The summary writer, created in ``log_dir`` on first use when none was given."""
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (a trainer)."""
        if self._name is None:
            self.logger = engine.logger
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        if not engine.has_event_handler(self, event):
            engine.add_event_handler(event, self)

    def stats(self) -> dict[str, Any]:
        """The current mask statistics: fraction, count, number of channels, probabilities (CPU tensor), partition."""
        ald = find_ald(self.network)
        with torch.no_grad():
            hard = torch.as_tensor(ald.hard_mask()).detach().float().cpu().reshape(-1)
            probs = torch.as_tensor(ald.probabilities()).detach().float().cpu().reshape(-1)
            fraction = float(ald.varying_fraction())
        return {
            FRACTION_KEY: fraction,
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
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        probs = s["probabilities"]
        p_txt = f"{probs.min():.3f}/{probs.mean():.3f}/{probs.max():.3f}" if probs.numel() else "n/a"
        self.logger.info(
            f"{'Epoch' if self.epoch_level else 'Iteration'}[{step}] mask ({s['partition']}): "
            f"{s[COUNT_KEY]}/{s['channels']} varying channels, fraction {s[FRACTION_KEY]:.4f}, "
            f"probabilities min/mean/max {p_txt}"
        )
        writer = self.writer
        writer.add_scalar(f"{self.tag_prefix}/fraction", s[FRACTION_KEY], step)
        writer.add_scalar(f"{self.tag_prefix}/varying_channels", s[COUNT_KEY], step)
        if probs.numel():
            writer.add_histogram(f"{self.tag_prefix}/probabilities", probs.numpy(), step)
        writer.flush()

    def close(self) -> None:
        """Close the summary writer if this handler created it."""
        if self.internal_writer and self._writer is not None:
            self._writer.close()
            self._writer = None
