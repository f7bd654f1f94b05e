"""AdrenalMNIST3D (MedMNIST v2 / MedMNIST+) from a local npz, with numpy alone; or the synthetic embedded default.

The MedMNIST archives (``adrenalmnist3d_64.npz``: 64^3 voxels, ``adrenalmnist3d.npz``: 28^3) hold the keys
``train_images, train_labels, val_images, val_labels, test_images, test_labels``; images ``uint8 (N, S, S, S)``
0..255, labels ``(N, 1)`` in {0: normal, 1: mass}; the official splits hold 1188 / 98 / 298 volumes.  The data is
licensed CC BY 4.0 (cite MedMNIST v2, Yang et al., Scientific Data 2023).

:func:`load_adrenal_npz` checks one archive, :func:`load_adrenal_arrays` finds it in a folder and
:func:`adrenal_splits` returns MONAI-style data dicts (``{"image": float32 (1, S, S, S) in [0, 1], "label":
int}``).  With ``dataset_dir=None``, :func:`adrenal_splits` uses (generating it once, atomically, in a cache
folder) a synthetic set of adrenal-like shapes in the same format (see
:mod:`monai_galr.data.adrenal_synthetic`) and says so with a warning.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from monai_galr.data.adrenal_synthetic import make_synthetic_adrenal
from monai_galr.data.io import open_npz
from monai_galr.utils import check_max

__all__ = [
    "ADRENAL_FILES",
    "ADRENAL_KEYS",
    "ADRENAL_SPLIT_SIZES",
    "adrenal_file_name",
    "adrenal_splits",
    "default_synthetic_dir",
    "ensure_synthetic_adrenal",
    "ensure_synthetic_backgrounds",
    "load_adrenal_arrays",
    "load_backgrounds",
    "load_adrenal_npz",
]

logger = logging.getLogger("monai_galr.data")

#: cube edge -> MedMNIST file name (the 28^3 file has no suffix)
ADRENAL_FILES = {64: "adrenalmnist3d_64.npz", 28: "adrenalmnist3d.npz"}
ADRENAL_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
#: the official split sizes of AdrenalMNIST3D
ADRENAL_SPLIT_SIZES = {"train": 1188, "val": 98, "test": 298}
_SPLITS = ("train", "val", "test")
_SYNTHETIC_VERSION = 1  # bump when the generator changes, so cached sets are regenerated


def _check_size(size: int | None, name: str = "size") -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name} must be None or a positive int (28 or 64 for the MedMNIST files), got {size!r}.")
    return int(size)


def adrenal_file_name(size: int) -> str:
    """The npz file name for cube edge ``size``: MedMNIST's names for 64 and 28, ``adrenalmnist3d_{size}.npz`` else.

    Example::

        >>> adrenal_file_name(64), adrenal_file_name(28), adrenal_file_name(16)
        ('adrenalmnist3d_64.npz', 'adrenalmnist3d.npz', 'adrenalmnist3d_16.npz')
    """
    size = _check_size(size)
    if size is None:
        raise ValueError("size must be a positive int, got None.")
    return ADRENAL_FILES.get(size, f"adrenalmnist3d_{size}.npz")


def _check_images(x: np.ndarray, source: str, size: int | None) -> np.ndarray:
    """``(N, S, S, S)`` integer intensities 0..255 -> ``uint8``."""
    if x.ndim != 4:
        hint = " (a 2D MedMNIST file?)" if x.ndim == 3 else ""
        raise ValueError(f"{source}: expected 3D volumes of shape (N, S, S, S), got {x.ndim}-d array {x.shape}{hint}.")
    if not x.shape[1] == x.shape[2] == x.shape[3]:
        raise ValueError(f"{source}: expected cubic volumes (N, S, S, S), got shape {x.shape}.")
    if size is not None and x.shape[1] != size:
        raise ValueError(f"{source}: expected volumes of {size}^3 voxels, got shape {x.shape}.")
    if len(x) == 0:
        raise ValueError(f"{source}: expected at least one volume, got an empty split of shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        extra = ""
        if np.issubdtype(x.dtype, np.floating) and x.size and not np.all(np.isfinite(x)):
            extra = f" with {int((~np.isfinite(x)).sum())} NaN/inf value(s)"
        raise ValueError(f"{source}: expected uint8 images (values 0..255), got dtype {x.dtype}{extra}.")
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{source}: expected image values 0..255, got range [{lo}, {hi}] ({x.dtype}).")
    return x.astype(np.uint8)


def _check_labels(y: np.ndarray, n_images: int, source: str) -> np.ndarray:
    """``(N, 1)`` (or ``(N,)``) labels in {0, 1}, one per image -> ``int64 (N,)``."""
    shape = y.shape
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n_images:
        raise ValueError(f"{source}: expected labels of shape ({n_images}, 1), one per image, got {shape}.")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{source}: expected integer labels in {{0, 1}}, got dtype {y.dtype}.")
    if y.size:
        bad = np.setdiff1d(np.unique(y), [0, 1])
        if bad.size:
            raise ValueError(
                f"{source}: expected labels in {{0: normal, 1: mass}}, got values {bad[:5].tolist()} "
                f"(range [{int(y.min())}, {int(y.max())}])."
            )
    return y.astype(np.int64)


def load_adrenal_npz(path: str | os.PathLike, size: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check one AdrenalMNIST3D-format npz.

    Args:
        path: the ``.npz`` file.
        size: the expected cube edge, or None to accept any (the same in every split).

    Returns:
        ``{"train": (images, labels), "val": ..., "test": ...}``; images ``uint8 (N, S, S, S)``, labels
        ``int64 (N,)`` in {0, 1}.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not an npz archive, missing keys, arrays that are not ``(N, S, S, S)`` volumes (2D arrays,
            non-cubic, another size than ``size`` or than the other splits), a non-integer dtype, values outside
            0..255 (images) or {0, 1} (labels), a labels count that differs from the images count, or an empty
            split.
    """
    path = os.fspath(path)
    size = _check_size(size)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"AdrenalMNIST3D file {path!r} does not exist.")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with open_npz(path, ADRENAL_KEYS, "the AdrenalMNIST3D ") as npz:
        for split in _SPLITS:
            try:
                x, y = np.asarray(npz[f"{split}_images"]), np.asarray(npz[f"{split}_labels"])
            except Exception as e:  # object arrays need pickle, which is refused
                raise ValueError(f"{path!r}: cannot read the arrays of split {split!r}: {type(e).__name__}: {e}") from e
            x = _check_images(x, f"{path!r} key '{split}_images'", size)
            size = size if size is not None else x.shape[1]
            out[split] = (x, _check_labels(y, len(x), f"{path!r} key '{split}_labels'"))
    return out


def load_adrenal_arrays(
    dataset_dir: str | os.PathLike, size: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Find and read the AdrenalMNIST3D npz of a folder.

    Args:
        dataset_dir: a folder holding ``adrenalmnist3d_64.npz`` and/or ``adrenalmnist3d.npz`` (any other cube
            edge ``S`` as ``adrenalmnist3d_S.npz``).
        size: the cube edge to read (64, 28 or another); None prefers the 64^3 file, then the 28^3 file.

    Returns:
        see :func:`load_adrenal_npz`; the volumes have ``size``^3 voxels.

    Raises:
        TypeError: ``dataset_dir`` is not a path.
        ValueError: ``dataset_dir`` is not an existing folder, a bad ``size``, or a malformed file (see
            :func:`load_adrenal_npz`).
        FileNotFoundError: the folder lacks the requested file.

    Example::

        >>> arrays = load_adrenal_arrays("data/medmnist")            # doctest: +SKIP
        >>> arrays["train"][0].shape
        (1188, 64, 64, 64)
    """
    if not isinstance(dataset_dir, (str, os.PathLike)):
        raise TypeError(f"dataset_dir must be a path (str), got {type(dataset_dir).__name__}.")
    size = _check_size(size)
    folder = os.path.abspath(os.fspath(dataset_dir))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        hint = " (pass the folder that holds it)" if folder.endswith(".npz") and os.path.isfile(folder) else ""
        raise ValueError(
            f"dataset_dir {os.fspath(dataset_dir)!r} {what} (resolved path: {folder!r}); expected a folder holding "
            f"{ADRENAL_FILES[64]!r} or {ADRENAL_FILES[28]!r}{hint}."
        )
    candidates = [adrenal_file_name(size)] if size is not None else [ADRENAL_FILES[64], ADRENAL_FILES[28]]
    for name in candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            nominal = size if size is not None else (64 if name == ADRENAL_FILES[64] else 28)
            logger.info("AdrenalMNIST3D source: %s", path)
            return load_adrenal_npz(path, size=nominal)
    present = sorted(n for n in os.listdir(folder) if n.endswith(".npz"))
    raise FileNotFoundError(
        f"dataset_dir {folder!r} holds no AdrenalMNIST3D file: looked for {candidates}; npz files present: "
        f"{present or 'none'}. Download it from MedMNIST (https://medmnist.com, CC BY 4.0) or write a synthetic "
        "set with data_prep/make_synthetic_adrenal.py."
    )


def default_synthetic_dir() -> str:
    """The cache folder of the synthetic set: ``$MONAI_GALR_CACHE/adrenal_synthetic`` or ``~/.cache/monai_galr/...``."""
    root = os.environ.get("MONAI_GALR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "monai_galr")
    return os.path.join(root, "adrenal_synthetic")


def ensure_synthetic_adrenal(
    cache_dir: str | os.PathLike | None = None, n_train: int = 1188, n_val: int = 98, n_test: int = 298,
    size: int = 64, seed: int = 0,
) -> str:
    """Return a folder holding the synthetic set for these arguments, generating it once (atomically).

    The set lives in ``cache_dir/v{version}_n{train}-{val}-{test}_seed{seed}/adrenalmnist3d_{size}.npz`` (the
    MedMNIST file name for 64 / 28), so different arguments never share a file.

    Args:
        cache_dir: the cache root (None: :func:`default_synthetic_dir`).
        n_train / n_val / n_test / size / seed: see :func:`~monai_galr.data.make_synthetic_adrenal`.

    Returns:
        the folder, ready for :func:`load_adrenal_arrays` with ``size``.
    """
    root = default_synthetic_dir() if cache_dir is None else os.fspath(cache_dir)
    folder = os.path.join(root, f"v{_SYNTHETIC_VERSION}_n{n_train}-{n_val}-{n_test}_seed{seed}")
    path = os.path.join(folder, adrenal_file_name(size))
    if not os.path.isfile(path):
        logger.warning("generating the synthetic adrenal set (once) in %s ...", path)
        make_synthetic_adrenal(path, n_train=n_train, n_val=n_val, n_test=n_test, size=size, seed=seed)
    return folder


def adrenal_splits(
    dataset_dir: str | os.PathLike | None = None,
    size: int | None = None,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    synthetic_dir: str | os.PathLike | None = None,
    synthetic_sizes: tuple[int, int, int] = (1188, 98, 298),
    synthetic_seed: int = 0,
) -> dict[str, list[dict]]:
    """AdrenalMNIST3D as train / val / test lists of data dicts (the official splits, in file order).

    Args:
        dataset_dir: a folder with the MedMNIST npz (see :func:`load_adrenal_arrays`), or None for the
            synthetic set (generated once into ``synthetic_dir``; a warning says the data is synthetic).
        size: the cube edge to read; None prefers 64 (real data), and means 64 for the synthetic set.
        max_train / max_val / max_test: keep the first items of a split (None: all).
        synthetic_dir: cache root of the synthetic set (None: :func:`default_synthetic_dir`).
        synthetic_sizes: ``(n_train, n_val, n_test)`` of the synthetic set (default: the official sizes).
        synthetic_seed: seed of the synthetic set.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each item ``{"image": float32 (1, S, S, S) in [0, 1],
        "label": int}`` (0 normal, 1 mass).

    Raises:
        ValueError / FileNotFoundError / TypeError: see :func:`load_adrenal_arrays`; a negative cap, or ``max_train=0``.
    """
    caps = {s: check_max(v, f"max_{s}") for s, v in zip(_SPLITS, (max_train, max_val, max_test))}
    size = _check_size(size)
    if dataset_dir is None:
        if len(synthetic_sizes) != 3:
            raise ValueError(f"synthetic_sizes must be (n_train, n_val, n_test), got {synthetic_sizes!r}.")
        size = 64 if size is None else size
        folder = ensure_synthetic_adrenal(synthetic_dir, *synthetic_sizes, size=size, seed=synthetic_seed)
        logger.warning(
            "!!! SYNTHETIC DATA: no dataset_dir given, training/evaluating on synthetic adrenal-like shapes "
            "(%s), NOT on AdrenalMNIST3D. Pass --dataset_dir with adrenalmnist3d_64.npz for the real data. !!!",
            folder,
        )
        arrays = load_adrenal_arrays(folder, size=size)
    else:
        arrays = load_adrenal_arrays(dataset_dir, size=size)
    out = {}
    for split in _SPLITS:
        x, y = arrays[split]
        n = len(y) if caps[split] is None else min(len(y), caps[split])
        images = x[:n].astype(np.float32)[:, None] / np.float32(255.0)
        out[split] = [{"image": img, "label": int(lbl)} for img, lbl in zip(images, y[:n])]
    if not out["train"]:
        raise ValueError(f"max_train={max_train} leaves no training volume; expected None or a positive int.")
    logger.info(
        "AdrenalMNIST3D splits (%d^3): train %d, val %d, test %d.",
        arrays["train"][0].shape[1],
        len(out["train"]),
        len(out["val"]),
        len(out["test"]),
    )
    return out


def ensure_synthetic_backgrounds(
    cache_dir: str | os.PathLike | None = None, num_backgrounds: int = 4, size: int = 64, seed: int = 0
) -> str:
    """Path of an npz of synthetic anatomy backgrounds for these arguments, generated once (atomically).

    The file is ``cache_dir/backgrounds_v1_k{K}_seed{seed}_{size}.npz`` (keys ``backgrounds``, ``background_masks``,
    see :func:`~monai_galr.data.make_synthetic_backgrounds`).
    """
    from monai_galr.data.adrenal_synthetic import make_synthetic_backgrounds

    root = default_synthetic_dir() if cache_dir is None else os.fspath(cache_dir)
    path = os.path.join(root, f"backgrounds_v1_k{int(num_backgrounds)}_seed{int(seed)}_{int(size)}.npz")
    if not os.path.isfile(path):
        logger.warning("generating %d synthetic anatomy backgrounds (once) in %s ...", num_backgrounds, path)
        make_synthetic_backgrounds(path, num_backgrounds=num_backgrounds, size=size, seed=seed)
    return path


def load_backgrounds(path: str | os.PathLike, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(backgrounds, masks)`` from a backgrounds npz: float32 ``(K, 1, S, S, S)`` in [0, 1].

    Raises:
        ValueError: the file lacks ``backgrounds`` / ``background_masks``, they are not ``uint8 (K, S, S, S)`` of one
            shape, or their cube edge is not ``size`` (the volume's: a background must match the volume).
    """
    with open_npz(os.fspath(path), ("backgrounds", "background_masks"), what="the backgrounds ") as npz:
        layers, masks = np.asarray(npz["backgrounds"]), np.asarray(npz["background_masks"])
    for name, a in (("backgrounds", layers), ("background_masks", masks)):
        if a.dtype != np.uint8 or a.ndim != 4 or len(set(a.shape[1:])) != 1 or a.shape[0] < 1:
            raise ValueError(f"{os.fspath(path)!r} key {name!r}: expected uint8 (K, S, S, S), got {a.dtype} {a.shape}.")
    if layers.shape != masks.shape:
        raise ValueError(f"{os.fspath(path)!r}: backgrounds {layers.shape} and background_masks {masks.shape} differ.")
    if size is not None and layers.shape[1] != int(size):
        raise ValueError(
            f"{os.fspath(path)!r}: the backgrounds are {layers.shape[1]}^3 but the volumes are {int(size)}^3: a "
            "background must match the volume (spatial_size)."
        )
    scale = np.float32(255.0)
    return layers.astype(np.float32)[:, None] / scale, masks.astype(np.float32)[:, None] / scale
