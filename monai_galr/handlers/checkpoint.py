"""Checkpoint loading with clear errors: weights only, and a mismatch names the file and the tensors."""

from __future__ import annotations

import os
import pickle

import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader

from monai_galr.utils import unwrap

__all__ = ["GroupActionCheckpointLoader", "load_network_weights"]


def _explain(path: str, err: Exception) -> ValueError:
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in str(err) or "Unsupported global" in str(err):
        return ValueError(
            f"checkpoint {path!r} was refused: it is not a weights-only checkpoint (loading it would run code). "
            f"Only tensors and plain containers are accepted. Details: {err}"
        )
    return ValueError(
        f"checkpoint {path!r} does not match the network built from this configuration (another partition, "
        f"channels, strides or latent size?). Details: {err}"
    )


def load_network_weights(network: torch.nn.Module, path: str, map_location=None, key: str = "model") -> None:
    """Load ``path`` (a ``{key: state_dict}`` checkpoint or a bare state dict) into ``network``, strictly.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a weights-only checkpoint, or its tensors do not match ``network`` (the
            message names the file and the mismatched tensors).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist.")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise _explain(path, e) from e
    state = obj[key] if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict) else obj
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds a {type(state).__name__}, expected a state dict.")
    try:
        unwrap(network).load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise _explain(path, e) from e


class GroupActionCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` (``weights_only=True``) whose errors name the checkpoint file.

    Same arguments as ``monai.handlers.CheckpointLoader``.

    Raises (when the engine starts):
        FileNotFoundError: ``load_path`` does not exist.
        ValueError: a non weights-only file, or tensors that do not match the configured network.
    """

    def __call__(self, engine: Engine) -> None:
        if not os.path.isfile(self.load_path):
            raise FileNotFoundError(f"checkpoint file {self.load_path!r} does not exist (set ckpt_path / load_path).")
        try:
            super().__call__(engine)
        except (RuntimeError, pickle.UnpicklingError) as e:
            raise _explain(self.load_path, e) from e
