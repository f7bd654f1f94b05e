"""monai-galr: learned group actions on automatically disentangled latent representations, for MONAI."""

from __future__ import annotations

__version__ = "0.1.0"

from monai_galr import data, engines, groups, handlers, losses, networks, transforms  # noqa: E402

__all__ = ["__version__", "data", "engines", "groups", "handlers", "losses", "networks", "transforms"]
