"""Bad npz files (a user's mnist.npz, an AdrenalMNIST3D archive) through the builders and the data_prep CLIs.

Every case must fail with a ``ValueError`` / ``FileNotFoundError`` whose message names the file and the key, what
was expected and what arrived; the CLIs print the same message and exit with code 2.  Cases already covered in
``tests/data/test_mnist.py`` / ``tests/data/test_adrenal.py`` (missing keys, a garbage file, 2D images, label
count and range, values out of range, a missing folder) are not repeated here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from monai_galr.data import adrenal_splits, mnist_splits

# ---- helpers --------------------------------------------------------------------------------------------------


def _mnist_arrays(n_train: int = 6, n_test: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }


def _adrenal_arrays(size: int = 8, counts=(3, 2, 2)) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in zip(("train", "val", "test"), counts):
        out[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    return out


def _corrupt_member(path, marker: bytes) -> None:
    """Flip one byte inside the (stored, uncompressed) data that starts with ``marker``: the CRC check fails."""
    raw = bytearray(path.read_bytes())
    at = raw.index(marker) + len(marker) // 2
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _inf_rows(n: int) -> np.ndarray:
    """``(n, 8, 8, 8)`` float64 volumes with one plane of +inf each (``n * 64`` non-finite voxels)."""
    x = np.zeros((n, 8, 8, 8))
    x[:, 0] = np.inf
    return x


# ---- MNIST: a user folder with mnist.npz -----------------------------------------------------------------------
# case id -> (arrays to override, or "npy" for a plain .npy file; a function damaging the written file; message regex)
MNIST_CASES = {
    "truncated_zip": ({}, _truncate, r"mnist\.npz'? as an npz archive with keys .*BadZipFile"),
    "corrupt_member_crc": (
        {"x_train": np.full((6, 28, 28), 77, np.uint8)},
        lambda p: _corrupt_member(p, bytes([77]) * 64),
        r"mnist\.npz'?: cannot read the array 'x_train': BadZipFile: Bad CRC-32",
    ),
    "npy_not_npz": ("npy", None, r"mnist\.npz'? is a single ndarray, expected an npz archive with keys"),
    "object_labels_need_pickle": (
        {"y_train": np.array([object()] * 6, dtype=object)},
        None,
        r"mnist\.npz'?: cannot read the array 'y_train': ValueError: Object arrays cannot be loaded",
    ),
    "images_4d_channel_last": (
        {"x_train": np.zeros((6, 28, 28, 1), np.uint8)},
        None,
        r"mnist\.npz'? key 'x_train': expected images of shape \(N, 28, 28\), got \(6, 28, 28, 1\)",
    ),
    "images_bool_dtype": (
        {"x_train": np.zeros((6, 28, 28), bool)},
        None,
        r"key 'x_train': expected uint8 images with values 0\.\.255, got dtype bool",
    ),
    "images_complex_dtype": (
        {"x_test": np.zeros((3, 28, 28), np.complex64)},
        None,
        r"key 'x_test': expected uint8 images with values 0\.\.255, got dtype complex64",
    ),
    "images_nan": (
        {"x_train": np.where(np.eye(28, dtype=bool)[None], np.nan, 1.0).repeat(6, 0)},
        None,
        r"key 'x_train': expected image values 0\.\.255, got 168 non-finite \(NaN/inf\) float64 value\(s\)",
    ),
    "images_inf": (
        {"x_test": np.full((3, 28, 28), np.inf, np.float32)},
        None,
        r"key 'x_test': expected image values 0\.\.255, got 2352 non-finite \(NaN/inf\) float32 value\(s\)",
    ),
    "labels_nan": (
        {"y_train": np.array([0, 1, np.nan, 3, 4, 5])},
        None,
        r"key 'y_train': expected integer labels 0\.\.9, got 1 non-finite \(NaN/inf\) float64 value\(s\)",
    ),
    "empty_train_split": (
        {"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)},
        None,
        r"key 'x_train': expected at least one image, got an empty split of shape \(0, 28, 28\)",
    ),
    "empty_test_split": (
        {"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)},
        None,
        r"key 'x_test': expected at least one image, got an empty split of shape \(0, 28, 28\)",
    ),
}


def _write_mnist(folder, overrides, damage) -> None:
    path = folder / "mnist.npz"
    if overrides == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((6, 28, 28), np.uint8))
        return
    arrays = {**_mnist_arrays(), **overrides}
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # stored (not compressed): damage lands in known bytes
    if damage is not None:
        damage(path)


@pytest.mark.parametrize("case", sorted(MNIST_CASES))
def test_mnist_npz_builder(tmp_path, case):
    overrides, damage, match = MNIST_CASES[case]
    _write_mnist(tmp_path, overrides, damage)
    with pytest.raises(ValueError, match=match) as err:
        mnist_splits(tmp_path)
    assert str(tmp_path / "mnist.npz") in str(err.value)


@pytest.mark.parametrize("case", sorted(MNIST_CASES))
def test_mnist_npz_cli(tmp_path, case, scripts, capsys):
    overrides, damage, match = MNIST_CASES[case]
    _write_mnist(tmp_path, overrides, damage)
    out = tmp_path / "out" / "mnist.npz"
    assert scripts.prepare_mnist.main(["--src", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "mnist.npz") in err
    assert re.search(match, err), err
    assert not out.exists() and not out.parent.exists()  # nothing written


def test_mnist_dataset_dir_is_the_npz_file(tmp_path):
    _write_mnist(tmp_path, {}, None)
    with pytest.raises(ValueError, match=r"mnist\.npz'? is not a folder .*expected the folder holding 'mnist\.npz'"):
        mnist_splits(tmp_path / "mnist.npz")


def test_mnist_builder_empty_train_split(tmp_path):
    _write_mnist(tmp_path, {}, None)
    capped = r"folder .*: the train split is empty \(5 image\(s\) left by val_fraction=0\.1, test_fraction=0\.2, "
    with pytest.raises(ValueError, match=capped + r"max_train=0\); expected at least one training image"):
        mnist_splits(tmp_path, max_train=0)
    with pytest.raises(ValueError, match=r"train split is empty \(0 image\(s\) left by val_fraction=0\.95, "):
        mnist_splits(tmp_path, val_fraction=0.95, test_fraction=0.0)  # 6 images: round(5.7) = 6 go to val


# ---- AdrenalMNIST3D npz ---------------------------------------------------------------------------------------
ADRENAL_CASES = {
    "truncated_zip": ({}, _truncate, r"adrenalmnist3d_8\.npz'? as an npz archive with keys .*BadZipFile"),
    "corrupt_member_crc": (
        {"val_images": np.full((2, 8, 8, 8), 77, np.uint8)},
        lambda p: _corrupt_member(p, bytes([77]) * 64),
        r"adrenalmnist3d_8\.npz'?: cannot read the arrays of split 'val': BadZipFile: Bad CRC-32",
    ),
    "object_labels_need_pickle": (
        {"test_labels": np.array([[object()], [object()]], dtype=object)},
        None,
        r"cannot read the arrays of split 'test': ValueError: Object arrays cannot be loaded",
    ),
    "images_nan_float": (
        {"train_images": np.full((3, 8, 8, 8), np.nan, np.float32)},
        None,
        r"key 'train_images': expected uint8 images \(values 0\.\.255\), got dtype float32 with 1536 NaN/inf",
    ),
    "images_inf_float": (
        {"test_images": _inf_rows(2)},
        None,
        r"key 'test_images': expected uint8 images \(values 0\.\.255\), got dtype float64 with 128 NaN/inf",
    ),
    "empty_train_split": (
        {"train_images": np.zeros((0, 8, 8, 8), np.uint8), "train_labels": np.zeros((0, 1), np.uint8)},
        None,
        r"key 'train_images': expected at least one volume, got an empty split of shape \(0, 8, 8, 8\)",
    ),
    "empty_val_split": (
        {"val_images": np.zeros((0, 8, 8, 8), np.uint8), "val_labels": np.zeros((0, 1), np.uint8)},
        None,
        r"key 'val_images': expected at least one volume, got an empty split of shape \(0, 8, 8, 8\)",
    ),
}


def _write_adrenal(folder, overrides, damage):
    arrays = {**_adrenal_arrays(), **overrides}
    path = folder / "adrenalmnist3d_8.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    if damage is not None:
        damage(path)
    return path


@pytest.mark.parametrize("case", sorted(ADRENAL_CASES))
def test_adrenal_npz_builder(tmp_path, case):
    overrides, damage, match = ADRENAL_CASES[case]
    path = _write_adrenal(tmp_path, overrides, damage)
    with pytest.raises(ValueError, match=match) as err:
        adrenal_splits(tmp_path, size=8)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("case", sorted(ADRENAL_CASES))
def test_adrenal_npz_cli(tmp_path, case, scripts, capsys):
    overrides, damage, match = ADRENAL_CASES[case]
    path = _write_adrenal(tmp_path, overrides, damage)
    out = tmp_path / "out"
    assert scripts.prepare_adrenal.main(["--src", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err
    assert re.search(match, err), err
    assert not out.exists()  # nothing written


def test_adrenal_dataset_dir_is_the_npz_file(tmp_path):
    path = _write_adrenal(tmp_path, {}, None)
    with pytest.raises(ValueError, match=r"is not a folder .*expected a folder holding 'adrenalmnist3d_64\.npz' or "
                                         r"'adrenalmnist3d\.npz' \(pass the folder that holds it\)"):
        adrenal_splits(path)


def test_adrenal_builder_max_train_zero(tmp_path):
    _write_adrenal(tmp_path, {}, None)
    with pytest.raises(ValueError, match=r"max_train=0 leaves no training volume; expected None or a positive int"):
        adrenal_splits(tmp_path, size=8, max_train=0)
