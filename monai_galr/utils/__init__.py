"""Small helpers shared by every layer of the package: unwrapping, atomic file output, argument checks, images.

Nothing here imports another ``monai_galr`` package, so ``groups``, ``data``, ``transforms``, ``engines``,
``handlers`` and ``analysis`` can all use it without breaking the import direction of the design.

- :mod:`~monai_galr.utils.modules`: :func:`unwrap` (the network inside ``DataParallel`` / DDP);
- :mod:`~monai_galr.utils.io`: :func:`atomic_output` and the atomic JSON / text / figure / ``torch.save`` writers;
- :mod:`~monai_galr.utils.checks`: the argument checks (``check_*``), with messages naming the parameter;
- :mod:`~monai_galr.utils.images`: :func:`composite` (foreground over a fixed background) and :func:`mid_slices`.
"""

from __future__ import annotations

from monai_galr.utils import checks, images, io, modules
from monai_galr.utils.checks import (
    check_bool, check_fraction, check_items, check_max, check_positive_int, check_seed, check_shape, check_spatial_dims,
)
from monai_galr.utils.images import composite, mid_slices
from monai_galr.utils.io import (
    atomic_output, json_safe, save_figure_atomic, save_torch_atomic, write_json_atomic, write_outputs_atomic,
    write_text_atomic,
)
from monai_galr.utils.modules import unwrap

__all__ = [*checks.__all__, *images.__all__, *io.__all__, *modules.__all__]
