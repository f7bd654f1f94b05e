"""File-level checks shared by the data builders, the data_prep scripts and the bundles.

- :func:`atomic_output` (from :mod:`monai_galr.utils`, re-exported) yields a temporary path beside the target and
  moves it into place only when the block succeeds, so a failed or interrupted write never replaces an existing
  file with partial data;
- :func:`ensure_writable_dir` creates a folder and proves it can be written (a probe file), so a bundle or a
  script fails in milliseconds, naming the parameter, instead of after hours of work;
- :func:`check_image_file` says what is wrong with one image file (missing, empty, unreadable, wrong number of
  dimensions or shape, non-finite or all-zero voxels) without raising, and :func:`check_image_files` checks the
  files a user hands to an inference config and raises one error listing every bad file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from monai_galr.utils import atomic_output, check_shape, check_spatial_dims

__all__ = [
    "NIBABEL_SUFFIXES",
    "atomic_output",
    "check_image_file",
    "check_image_files",
    "ensure_writable_dir",
    "open_npz",
]

#: files opened with nibabel and checked in full (NIfTI, MGH, Analyze); other formats are checked to exist only
NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh", ".hdr", ".img")


def _blocking_file(folder: str) -> str | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder, if any."""
    path = folder
    while True:
        if os.path.lexists(path):
            return None if os.path.isdir(path) else path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def ensure_writable_dir(path: str | os.PathLike, name: str = "output_dir") -> str:
    """Create ``path`` (with its parents) if needed and check that a file can be written in it.

    The check writes and deletes a probe file rather than trusting ``os.access``, which says "writable" to root
    on a read-only mount and cannot see every ACL.

    Args:
        path: the folder.
        name: the parameter or config entry that holds ``path`` (used in the message).

    Returns:
        the absolute path of the folder.

    Raises:
        TypeError: ``path`` is not a path.
        ValueError: the folder cannot be created or written (a file is in the way, no permission, read-only
            file system ...); the message names ``name``, the path and the reason.

    Example::

        >>> ensure_writable_dir("/tmp/run/models", name="ckpt_dir")    # doctest: +SKIP
        '/tmp/run/models'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path (str), got {type(path).__name__}.")
    folder = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        blocker = _blocking_file(folder)
        why = f"{blocker!r} is a file, not a folder" if blocker else f"{type(e).__name__}: {e.strerror or e}"
        raise ValueError(
            f"{name} {os.fspath(path)!r} is not a writable folder ({why}); expected a writable folder (one that can "
            "be created and written to): choose another path or fix its permissions."
        ) from e
    return folder


def open_npz(path: str, keys: Sequence[str], what: str = "") -> np.lib.npyio.NpzFile:
    """Open ``path`` as an npz archive holding ``keys`` (pickle refused); use it as a context manager.

    Args:
        path: the npz file.
        keys: the arrays the archive must hold.
        what: a name for the key set in the message, e.g. ``"the AdrenalMNIST3D "``.

    Raises:
        ValueError: not a readable npz archive (damaged zip, a plain ``.npy`` under an npz name, ...) or keys
            missing; the message names the file, the expected keys and what the archive holds.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile / pickle / OS errors all mean "not a usable npz"
        raise ValueError(
            f"cannot read {path!r} as an npz archive with keys {list(keys)}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a plain .npy saved under an .npz name
        raise ValueError(f"{path!r} is a single {type(npz).__name__}, expected an npz archive with keys {list(keys)}.")
    missing = [k for k in keys if k not in npz.files]
    if missing:
        npz.close()
        raise ValueError(
            f"{path!r}: expected {what}keys {list(keys)}, missing {missing}; the archive holds {sorted(npz.files)}."
        )
    return npz


def _one_line(e: BaseException) -> str:
    """``"Type: message"`` on one line (reader messages can hold newlines; reports list one file a line)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def check_image_file(
    path: str | os.PathLike,
    spatial_dims: int = 3,
    expected_shape: Sequence[int] | None = None,
    check_values: bool = True,
) -> str | None:
    """What is wrong with one image file, or None when it is usable.

    Never raises for a bad file: the problem is returned as a sentence, so one bad subject never stops a run.
    NIfTI (``.nii`` / ``.nii.gz``) and the other formats of :data:`NIBABEL_SUFFIXES` are opened with nibabel and
    checked in full; other formats (PNG, ...) are only checked to exist and be non-empty.

    Args:
        path: the file.
        spatial_dims: 3 for volumes, 2 for images; trailing axes of size 1 are ignored.
        expected_shape: the required spatial shape (``spatial_dims`` ints); None accepts any.
        check_values: also read the voxels and require finite values that are not all zero (slower: the whole
            file is decompressed); False checks the header only.

    Returns:
        None, or a description such as ``"4D image of shape (160, 192, 224, 2), expected a 3D volume"``.

    Raises:
        ValueError: a bad ``spatial_dims`` or ``expected_shape`` (the arguments, not the file).
    """
    d = check_spatial_dims(spatial_dims)
    shape = check_shape(expected_shape, d, "expected_shape")
    path = os.fspath(path)
    if not os.path.exists(path):
        return "file does not exist"
    if not os.path.isfile(path):
        return "is not a file"
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    if not path.lower().endswith(NIBABEL_SUFFIXES):
        return None
    import nibabel as nib

    try:
        img = nib.load(path)
        got = tuple(int(s) for s in img.shape)
    except Exception as e:  # noqa: BLE001 - any reader error means "unusable"; the reason is reported
        return f"cannot be read by nibabel: {_one_line(e)}"
    squeezed = got[:d] + tuple(s for s in got[d:] if s != 1)
    what = "a 3D volume" if d == 3 else "a 2D image"
    if len(squeezed) != d:
        return f"{len(squeezed)}D image of shape {got}, expected {what}"
    if any(s == 0 for s in squeezed):
        return f"empty image of shape {got}"
    if shape is not None and squeezed != shape:
        return f"shape {squeezed}, expected {shape}"
    if check_values:
        try:
            data = np.asanyarray(img.dataobj)
            finite = np.isfinite(data)
            if not finite.any():
                return "no finite value (all NaN/inf)"
            if not finite.all():
                return f"{int((~finite).sum())} non-finite (NaN/inf) voxel(s) of {data.size}"
            if not np.any(data):
                return "all voxels are zero"
        except Exception as e:  # noqa: BLE001 - truncated or corrupt payload, or a dtype without numbers
            return f"cannot be read by nibabel: {_one_line(e)}"
    return None


def check_image_files(
    files: Sequence[str | os.PathLike],
    spatial_dims: int = 3,
    check_values: bool = True,
    name: str = "input_files",
) -> list[dict]:
    """Check the image files given to an inference config; return them as data dicts.

    Args:
        files: a list of paths (NIfTI checked in full, other formats for existence only, see
            :func:`check_image_file`).
        spatial_dims: 3 for volumes, 2 for images.
        check_values: read the voxels (finite, not all zero).
        name: the config entry holding ``files`` (used in the messages).

    Returns:
        ``[{"image": absolute path}, ...]`` in the order given.

    Raises:
        TypeError: ``files`` is a single path (a string) or not a list of paths.
        ValueError: ``files`` is empty, or a file is unusable (every bad file is listed with its reason).
        FileNotFoundError: a file does not exist (every missing file is listed, with the other problems).

    Example::

        >>> check_image_files(["OASIS_OAS1_0001_MR1/aligned_norm.nii.gz"])   # doctest: +SKIP
        [{'image': '/data/OASIS_OAS1_0001_MR1/aligned_norm.nii.gz'}]
    """
    if isinstance(files, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} must be a list of file paths, got a single {type(files).__name__} {files!r}; "
            f"write it as a list: [{os.fspath(files)!r}]."
        )
    if not isinstance(files, Sequence):
        raise TypeError(f"{name} must be a list of file paths, got {type(files).__name__}.")
    if len(files) == 0:
        raise ValueError(f"{name} is empty; expected at least one image file.")
    items, problems, missing = [], [], 0
    for i, f in enumerate(files):
        if not isinstance(f, (str, os.PathLike)):
            raise TypeError(f"{name}[{i}] must be a file path (str), got {type(f).__name__} {f!r}.")
        path = os.path.abspath(os.fspath(f))
        reason = check_image_file(path, spatial_dims, check_values=check_values)
        if reason is not None:
            missing += reason == "file does not exist"
            problems.append(f"{name}[{i}] {path}: {reason}")
        items.append({"image": path})
    if problems:
        what = "a 3D volume" if spatial_dims == 3 else "a 2D image"
        shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
        msg = f"{name}: {len(problems)} of {len(files)} file(s) unusable (expected {what} each):\n  {shown}"
        raise (FileNotFoundError if missing else ValueError)(msg)
    return items
