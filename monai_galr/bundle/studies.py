"""The analysis runners of every bundle's ``evaluate.yaml``: one object holding what the four studies share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Studies"]


class Studies:
    """The four ``monai_galr.analysis`` studies of one bundle, with their shared arguments bound once.

    ``evaluate.yaml`` builds one and exposes each method as a runner id (``probe``, ``error_maps``,
    ``latent_swap``, ``latent_magnitudes``); each method passes its own keyword arguments on to the matching
    ``run_*`` function and returns its result.

    Args:
        network: the bundle's network (the weights are loaded from ``ckpt_path`` by each study).
        test_items: the evaluation items (each with its fixed ``rotation``).
        output_dir: where the studies write their JSON / Markdown / PNG files.
        transform: the evaluation preprocessing (``validate#preprocessing``).
        ckpt_path: the weights to study.
        device: where the network runs.
        protocol: the protocol sentence written under every result.
    """

    def __init__(self, network, test_items: Sequence[Mapping], output_dir: str, transform: Any = None,
                 ckpt_path: str | None = None, device: Any = None, protocol: str = "") -> None:
        self.common = {"network": network, "test_items": test_items, "output_dir": output_dir,
                       "transform": transform, "ckpt_path": ckpt_path, "device": device, "protocol": protocol}

    def probe(self, train_items: Sequence[Mapping], **kwargs: Any) -> dict:
        """``run_probes``: linear probes on z / z_v / z_i (``train_items``: the probes' training split)."""
        from monai_galr.analysis import run_probes

        return run_probes(train_items=train_items, **self.common, **kwargs)

    def error_maps(self, **kwargs: Any) -> dict:
        """``run_error_maps``: error-map figures of the rotated prediction."""
        from monai_galr.analysis import run_error_maps

        return run_error_maps(**self.common, **kwargs)

    def latent_swap(self, **kwargs: Any) -> dict:
        """``run_latent_swap``: decode the z_v of one image with the z_i of another."""
        from monai_galr.analysis import run_latent_swap

        return run_latent_swap(**self.common, **kwargs)

    def latent_magnitudes(self, **kwargs: Any) -> dict:
        """``run_latent_magnitudes``: |z_v| and |z_i| maps over rotations."""
        from monai_galr.analysis import run_latent_magnitudes

        return run_latent_magnitudes(**self.common, **kwargs)
