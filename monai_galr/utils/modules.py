"""The network inside ``DataParallel`` / ``DistributedDataParallel`` wrappers."""

from __future__ import annotations

import torch

__all__ = ["unwrap"]


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside any number of ``DataParallel`` / ``DistributedDataParallel`` wrappers (``.module``).

    Example::

        >>> net = torch.nn.Linear(2, 2)
        >>> unwrap(torch.nn.DataParallel(net)) is net
        True
    """
    while hasattr(network, "module") and isinstance(network.module, torch.nn.Module):
        network = network.module
    return network
