"""Random-number state as a checkpointable object, so that a resumed training run repeats the uninterrupted one."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable, Transform
from torch.utils.data import Dataset

__all__ = ["RandomStateCheckpoint"]


def _random_states(obj: Any, found: list[np.random.RandomState], seen: set[int]) -> None:
    """Collect, in a fixed order, every ``RandomState`` reachable from ``obj`` through transforms.

    Walks a dataset's ``transform`` and, recursively, every attribute that is a MONAI ``Transform`` /
    ``Randomizable`` (or a list of them), so that wrapped transforms (a dictionary transform delegating to an array
    transform with its own generator) are found too.
    """
    if obj is None or id(obj) in seen:
        return
    seen.add(id(obj))
    state = getattr(obj, "R", None)
    if isinstance(state, np.random.RandomState) and id(state) not in seen:
        seen.add(id(state))
        found.append(state)
    children = [getattr(obj, "transform", None)] if isinstance(obj, Dataset) else list(vars(obj).values())
    for child in children:
        for c in child if isinstance(child, (list, tuple)) else [child]:
            if isinstance(c, (Transform, Randomizable)):
                _random_states(c, found, seen)


def _np_to_tensor(state: tuple) -> dict[str, torch.Tensor]:
    name, keys, pos, has_gauss, cached = state
    if name != "MT19937":
        raise ValueError(f"only MT19937 numpy random states can be saved, got {name!r}.")
    return {
        "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
        "meta": torch.tensor([int(pos), int(has_gauss)], dtype=torch.int64),
        "cached_gaussian": torch.tensor(float(cached), dtype=torch.float64),
    }


def _tensor_to_np(state: dict[str, torch.Tensor]) -> tuple:
    pos, has_gauss = (int(v) for v in state["meta"].tolist())
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return "MT19937", keys, pos, has_gauss, float(state["cached_gaussian"].item())


class RandomStateCheckpoint:
    """Save and restore every random state a training epoch draws from, for exact resumption.

    An uninterrupted run continues epoch ``k + 1`` from the random state that epoch ``k`` left; a run resumed from
    the epoch-``k`` checkpoint would otherwise restart from ``set_determinism(seed)`` and shuffle, rotate and
    sample differently.  Put this object in a ``CheckpointSaver``'s ``save_dict`` (attached after the handlers
    that draw random numbers at ``EPOCH_COMPLETED``, e.g. validation) and in the resuming ``CheckpointLoader``'s
    ``load_dict``.  The state holds tensors and lists only, so it loads with ``torch.load(weights_only=True)``.

    Saved: torch's CPU generator (and every CUDA device's when CUDA is available), numpy's and Python's global
    generators, and the ``RandomState`` of each MONAI ``Randomizable`` transform of ``datasets`` (with
    ``num_workers=0`` the random transforms draw from their own generator in the main process; with worker
    processes their seeds derive from torch's generator when each epoch's iterator starts).

    Args:
        datasets: datasets (or transforms) whose random transforms are tracked, e.g. ``[@train#dataset]``.

    Raises:
        ValueError: ``load_state_dict`` receives a state with another number of transform states than
            ``datasets`` holds (the checkpoint comes from a different pipeline).

    Example::

        >>> rng = RandomStateCheckpoint([train_dataset])
        >>> CheckpointSaver(save_dir, save_dict={"model": net, "rng": rng}, save_interval=1).attach(trainer)
    """

    def __init__(self, datasets: Sequence[Any] | Any = ()) -> None:
        items: Iterable[Any] = datasets if isinstance(datasets, (list, tuple)) else [datasets]
        self.states: list[np.random.RandomState] = []
        seen: set[int] = set()
        for d in items:
            _random_states(d, self.states, seen)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _np_to_tensor(np.random.get_state()),
            "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
            "transforms": [_np_to_tensor(r.get_state()) for r in self.states],
        }
        if torch.cuda.is_available():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        transforms = state["transforms"]
        if len(transforms) != len(self.states):
            raise ValueError(
                f"the checkpoint holds {len(transforms)} random transform states, this pipeline has "
                f"{len(self.states)}; resume with the configuration that wrote the checkpoint."
            )
        torch.set_rng_state(state["torch"].cpu())
        np.random.set_state(_tensor_to_np(state["numpy"]))
        internal, version, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        for r, s in zip(self.states, transforms):
            r.set_state(_tensor_to_np(s))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
