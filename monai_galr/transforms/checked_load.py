"""Image loading that names the file when it fails: unreadable or truncated files, wrong dimensionality, NaN voxels.

MONAI's ``LoadImage`` raises the reader's own error (``EOFError: Compressed file ended before ...``) and its
``Compose`` wraps it in ``RuntimeError("applying transform ...")``: the file is named nowhere.  A volume with a few
NaN voxels loads fine, and ``ScaleIntensity`` then turns all of it into NaN.  :class:`LoadCheckedImage` /
:class:`LoadCheckedImaged` load like MONAI's and check what they read, at the moment it is read (no extra pass over
the file): the error names the file, what was expected and what arrived.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import LoadImage, LoadImaged

__all__ = ["LoadCheckedImage", "LoadCheckedImaged", "check_image_array"]


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def check_image_array(image: Any, path: str, spatial_dims: int | None = 3, channel_first: bool = False) -> None:
    """Raise ``ValueError`` naming ``path`` when ``image`` has another number of spatial dimensions or non-finite values.

    Args:
        image: the loaded array (``(*spatial)`` as ``LoadImage`` returns a one-channel image, or ``(C, *spatial)``
            with ``channel_first``); a multi-channel file is refused (the networks take one channel).
        path: the file it came from (for the message).
        spatial_dims: the expected number of spatial dimensions (trailing size-1 axes and one channel axis are
            allowed); None skips the check.
        channel_first: whether the first axis is the channel axis.

    Raises:
        ValueError: wrong dimensionality, an empty array, or NaN / inf values (their count is given).
    """
    shape = tuple(int(s) for s in image.shape)
    if spatial_dims is not None:
        spatial = shape[1:] if channel_first else shape
        core = spatial[:spatial_dims] + tuple(s for s in spatial[spatial_dims:] if s != 1)
        what = "a 3D volume" if spatial_dims == 3 else f"a {spatial_dims}D image"
        if len(core) != spatial_dims:
            raise ValueError(f"image file {path!r}: expected {what}, got an array of shape {shape}.")
    if int(np.prod(shape)) == 0:
        raise ValueError(f"image file {path!r}: empty array of shape {shape}.")
    data = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if data.is_floating_point() or data.is_complex():
        bad = int((~torch.isfinite(data)).sum())
        if bad:
            raise ValueError(
                f"image file {path!r}: {bad} non-finite (NaN/inf) voxel(s) of {data.numel()}; expected finite "
                "values (intensity scaling would turn the whole image into NaN). Fix or exclude the file."
            )


def _name(value: Any) -> str:
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else repr(value)


class LoadCheckedImage(LoadImage):
    """MONAI's ``LoadImage`` plus :func:`check_image_array`; a reader error is re-raised naming the file.

    Args:
        spatial_dims: the expected number of spatial dimensions (2 or 3; None: any).
        args, kwargs: passed to ``monai.transforms.LoadImage``.

    Raises:
        ValueError: the file cannot be read (truncated, not an image, ...), or see :func:`check_image_array`.
        FileNotFoundError: the file does not exist.
    """

    def __init__(self, *args: Any, spatial_dims: int | None = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spatial_dims = spatial_dims

    def __call__(self, filename, reader=None):  # type: ignore[override]
        path = _name(filename)
        if isinstance(filename, (str, os.PathLike)) and not os.path.isfile(filename):
            raise FileNotFoundError(f"image file {path!r} does not exist.")
        try:
            out = super().__call__(filename, reader)
        except Exception as e:  # noqa: BLE001 - any reader error: name the file
            raise ValueError(f"image file {path!r} cannot be read: {_one_line(e)}") from e
        image = out[0] if isinstance(out, (tuple, list)) else out
        check_image_array(image, path, self.spatial_dims, channel_first=self.ensure_channel_first)
        return out


class LoadCheckedImaged(LoadImaged):
    """MONAI's ``LoadImaged`` plus the checks of :class:`LoadCheckedImage`, on every key.

    Args:
        keys: keys of the file paths.
        spatial_dims: the expected number of spatial dimensions (2 or 3; None: any).
        args, kwargs: passed to ``monai.transforms.LoadImaged``.

    Example (a bundle's preprocessing)::

        - _target_: monai_galr.transforms.LoadCheckedImaged
          keys: image
          image_only: true
          spatial_dims: 3
    """

    def __init__(self, keys, *args: Any, spatial_dims: int | None = 3, **kwargs: Any) -> None:
        super().__init__(keys, *args, **kwargs)
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping[Hashable, Any], reader=None) -> dict[Hashable, Any]:  # type: ignore[override]
        paths = {key: _name(data[key]) for key in self.key_iterator(dict(data))}
        for key, path in paths.items():
            if isinstance(data[key], (str, os.PathLike)) and not os.path.isfile(data[key]):
                raise FileNotFoundError(f"image file {path!r} (key {key!r}) does not exist.")
        try:
            d = super().__call__(data, reader)
        except Exception as e:  # noqa: BLE001 - any reader error: name the file(s)
            raise ValueError(f"image file {' / '.join(map(repr, paths.values()))} cannot be read: {_one_line(e)}") from e
        channel_first = bool(getattr(self._loader, "ensure_channel_first", False))
        for key, path in paths.items():
            check_image_array(d[key], path, self.spatial_dims, channel_first=channel_first)
        return d
