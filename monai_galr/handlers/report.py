"""Write an evaluation's metrics, with the protocol and the mask statistics, as JSON and a Markdown table."""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine, Events

from monai_galr.utils import unwrap, write_json_atomic

# write_json_atomic lives in monai_galr.utils; still importable from here (data_prep scripts, tests)
__all__ = ["MetricsReport", "write_json_atomic"]


class MetricsReport:
    """At the end of an evaluation, report ``engine.state.metrics`` beside the identity reconstruction.

    Writes ``output_dir/filename`` (JSON: every metric, ``psnr_ratio`` = rotated / identity PSNR, the mask
    fraction, the number of images and the protocol) and logs a Markdown table.

    Args:
        output_dir: folder of the JSON file (created).
        network: the evaluated network (for the mask statistics), or None.
        prefix: metric name prefix used in the config (``test`` for ``test_psnr`` ...).
        protocol: a sentence describing the evaluation protocol, stored with the numbers.
        filename: JSON file name.
        name: logger name.
    """

    def __init__(
        self,
        output_dir: str,
        network=None,
        prefix: str = "test",
        protocol: str = "",
        filename: str = "metrics.json",
        name: str | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.network = network
        self.prefix = prefix
        self.protocol = protocol
        self.filename = filename
        self.logger = logging.getLogger(name or __name__)
        self.result: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float))}
        p = self.prefix
        result: dict = {"metrics": metrics, "protocol": self.protocol}
        rot, ident = metrics.get(f"{p}_psnr"), metrics.get(f"{p}_psnr_identity")
        if rot is not None and ident:
            result["psnr_ratio"] = rot / ident
        if self.network is not None:
            ald = getattr(unwrap(self.network), "ald", None)
            if ald is not None:
                result["partition"] = ald.partition
                result["tau"] = float(ald.tau)
                result["mask_fraction"] = ald.varying_fraction()
                result["mask_varying_channels"] = int(ald.hard_mask().sum().item())
                result["latent_channels"] = int(ald.num_channels)
        loader = getattr(engine.state, "dataloader", None)
        if loader is not None and hasattr(loader, "dataset"):
            result["num_images"] = len(loader.dataset)
        write_json_atomic(result, os.path.join(self.output_dir, self.filename))
        self.result = result
        rows = [("rotated", f"{p}_psnr", f"{p}_ssim", f"{p}_rmse"), ("identity", f"{p}_psnr_identity",
                f"{p}_ssim_identity", f"{p}_rmse_identity")]
        lines = ["| prediction | PSNR | SSIM | RMSE |", "|---|---|---|---|"]
        for label, *keys in rows:
            vals = [f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys]
            lines.append(f"| {label} | " + " | ".join(vals) + " |")
        extra = f"PSNR ratio {result['psnr_ratio']:.3f}; " if "psnr_ratio" in result else ""
        if "mask_fraction" in result:
            extra += f"mask fraction {result['mask_fraction']:.3f} ({result['partition']}); "
        self.logger.info("\n" + "\n".join(lines) + f"\n{extra}{self.protocol}")
