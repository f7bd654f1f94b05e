"""Tests for monai_galr.data.adrenal (AdrenalMNIST3D npz loading) and monai_galr.data.adrenal_synthetic."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from monai_galr.data import (
    ADRENAL_KEYS,
    adrenal_file_name,
    adrenal_splits,
    ensure_synthetic_adrenal,
    load_adrenal_arrays,
    load_adrenal_npz,
    make_synthetic_adrenal,
    save_synthetic_adrenal_nifti,
    synthetic_adrenal_volume,
)


def _arrays(size=8, counts=(4, 2, 3), seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in zip(("train", "val", "test"), counts):
        out[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    return out


def _write(folder, name="adrenalmnist3d_64.npz", size=64, **overrides):
    arrays = _arrays(size=size)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = folder / name
    np.savez(path, **arrays)
    return path


# ---- loading ----------------------------------------------------------------------------------------------------
def test_load_valid_and_splits(tmp_path):
    _write(tmp_path, "adrenalmnist3d_8.npz", size=8)
    arrays = load_adrenal_arrays(tmp_path, size=8)
    assert set(arrays) == {"train", "val", "test"}
    x, y = arrays["train"]
    assert x.shape == (4, 8, 8, 8) and x.dtype == np.uint8 and y.shape == (4,) and y.dtype == np.int64
    splits = adrenal_splits(tmp_path, size=8, max_train=3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [3, 2, 3]
    item = splits["train"][1]
    assert item["image"].shape == (1, 8, 8, 8) and item["image"].dtype == np.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0 and item["label"] == 1
    np.testing.assert_allclose(item["image"][0], arrays["train"][0][1] / 255.0, atol=1e-6)


def test_prefers_64_file_and_size_parameter(tmp_path):
    _write(tmp_path, "adrenalmnist3d.npz", size=28)
    assert load_adrenal_arrays(tmp_path)["train"][0].shape[1:] == (28, 28, 28)
    _write(tmp_path, "adrenalmnist3d_64.npz", size=64)
    assert load_adrenal_arrays(tmp_path)["train"][0].shape[1:] == (64, 64, 64)
    assert load_adrenal_arrays(tmp_path, size=28)["val"][0].shape[1:] == (28, 28, 28)
    assert adrenal_file_name(64) == "adrenalmnist3d_64.npz" and adrenal_file_name(28) == "adrenalmnist3d.npz"
    assert adrenal_file_name(16) == "adrenalmnist3d_16.npz"


def test_other_integer_dtypes_accepted(tmp_path):
    p = _write(tmp_path, "a.npz", size=8, train_images=np.full((4, 8, 8, 8), 200, dtype=np.int64),
               train_labels=np.array([0, 1, 1, 0], dtype=np.int32))
    x, y = load_adrenal_npz(p)["train"]
    assert x.dtype == np.uint8 and int(x.max()) == 200 and y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"test_labels": None}, r"missing \['test_labels'\]"),
        ({"train_images": np.zeros((4, 8, 8), np.uint8)}, r"3D volumes .*3-d array .*2D MedMNIST"),
        ({"train_images": np.zeros((4, 8, 8, 8, 1), np.uint8)}, r"5-d array"),
        ({"train_images": np.zeros((4, 8, 8, 6), np.uint8)}, r"cubic"),
        ({"val_images": np.zeros((2, 6, 6, 6), np.uint8)}, r"6\^3|8\^3"),
        ({"train_images": np.zeros((4, 8, 8, 8), np.float32)}, r"uint8 .* got dtype float32"),
        ({"train_images": np.zeros((4, 8, 8, 8), bool)}, r"got dtype bool"),
        ({"train_images": np.full((4, 8, 8, 8), 300, np.int16)}, r"values 0\.\.255, got range \[300, 300\]"),
        ({"train_labels": np.zeros((3, 1), np.uint8)}, r"shape \(4, 1\), one per image, got \(3, 1\)"),
        ({"train_labels": np.zeros((4, 2), np.uint8)}, r"got \(4, 2\)"),
        ({"train_labels": np.array([0, 1, 2, 9], np.uint8)[:, None]}, r"\{0: normal, 1: mass\}, got values \[2, 9\]"),
        ({"train_labels": np.zeros((4, 1), np.float32)}, r"integer labels .* float32"),
    ],
)
def test_bad_npz(tmp_path, overrides, match):
    p = _write(tmp_path, "adrenalmnist3d_8.npz", size=8, **overrides)
    with pytest.raises(ValueError, match=match) as err:
        load_adrenal_arrays(tmp_path, size=8)
    assert "adrenalmnist3d_8.npz" in str(err.value)


def test_nominal_size_mismatch(tmp_path):
    _write(tmp_path, "adrenalmnist3d_64.npz", size=8)  # a 64 file holding 8^3 volumes
    with pytest.raises(ValueError, match=r"adrenalmnist3d_64\.npz.*expected volumes of 64\^3 voxels, got shape"):
        load_adrenal_arrays(tmp_path)


def test_not_an_npz(tmp_path):
    (tmp_path / "adrenalmnist3d_64.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match=r"cannot read .*adrenalmnist3d_64\.npz.* as an npz archive"):
        load_adrenal_arrays(tmp_path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(ValueError, match=r"single\.npz.*single ndarray, expected an npz archive"):
        load_adrenal_npz(tmp_path / "single.npz")


def test_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_adrenal_arrays(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        load_adrenal_arrays(tmp_path / "file.txt")
    with pytest.raises(FileNotFoundError, match=r"adrenalmnist3d_64\.npz.*adrenalmnist3d\.npz.*present: none"):
        load_adrenal_arrays(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"adrenalmnist3d_16\.npz"):
        load_adrenal_arrays(tmp_path, size=16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adrenal_npz(tmp_path / "x.npz")


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="dataset_dir must be a path"):
        load_adrenal_arrays(3)
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="size must be"):
            load_adrenal_arrays(tmp_path, size=size)
    _write(tmp_path, "adrenalmnist3d_8.npz", size=8)
    with pytest.raises(ValueError, match="max_train must be None or a non-negative int"):
        adrenal_splits(tmp_path, size=8, max_train=-1)


# ---- synthetic generator --------------------------------------------------------------------------------------
def test_make_synthetic_format_and_determinism(tmp_path):
    p = make_synthetic_adrenal(tmp_path / "a" / "adrenalmnist3d_16.npz", 3, 2, 2, size=16, seed=3)
    with np.load(p) as npz:
        assert sorted(npz.files) == sorted(ADRENAL_KEYS)
        first = {k: npz[k] for k in npz.files}
    assert first["train_images"].shape == (3, 16, 16, 16) and first["train_images"].dtype == np.uint8
    assert first["test_labels"].shape == (2, 1) and set(np.unique(first["train_labels"])) <= {0, 1}
    assert os.listdir(tmp_path / "a") == ["adrenalmnist3d_16.npz"]  # no temporary file left
    make_synthetic_adrenal(tmp_path / "b.npz", 3, 2, 2, size=16, seed=3)
    with np.load(tmp_path / "b.npz") as npz:
        for k in ADRENAL_KEYS:
            np.testing.assert_array_equal(npz[k], first[k])
    # the loader reads it as real data
    assert load_adrenal_arrays(tmp_path / "a", size=16)["val"][0].shape == (2, 16, 16, 16)


@pytest.mark.parametrize("mass", [False, True])
def test_synthetic_volume_inside_sphere(mass):
    size = 32
    vol = synthetic_adrenal_volume(np.random.default_rng(1), size, mass=mass)
    assert vol.dtype == np.uint8 and vol.shape == (size,) * 3 and vol.max() == 255
    assert 0.001 < (vol > 127).mean() < 0.15  # a thin shape, not a blob filling the cube
    idx = np.argwhere(vol > 0).astype(float)
    radius = np.sqrt(((idx - (size - 1) / 2) ** 2).sum(1)).max()
    assert radius <= size / 2  # inside the inscribed sphere: rotations about the centre never cut it


def test_synthetic_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_train must be an int >= 1, got -1"):
        make_synthetic_adrenal(tmp_path / "x.npz", -1, 1, 1)
    with pytest.raises(ValueError, match="n_val must be an int >= 1, got 0"):  # the loader rejects empty splits
        make_synthetic_adrenal(tmp_path / "x.npz", 1, 0, 1)
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        make_synthetic_adrenal(tmp_path / "x.npz", 1, 1, 1, size=4)
    with pytest.raises(ValueError, match="mass_fraction"):
        make_synthetic_adrenal(tmp_path / "x.npz", 1, 1, 1, size=8, mass_fraction=1.5)


def test_embedded_default_generated_once_and_loud(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="monai_galr.data"):
        splits = adrenal_splits(None, size=16, synthetic_dir=tmp_path, synthetic_sizes=(2, 1, 1), synthetic_seed=5)
    assert "SYNTHETIC DATA" in caplog.text
    assert splits["train"][0]["image"].shape == (1, 16, 16, 16)
    folder = ensure_synthetic_adrenal(tmp_path, 2, 1, 1, size=16, seed=5)
    path = os.path.join(folder, "adrenalmnist3d_16.npz")
    mtime = os.path.getmtime(path)
    assert ensure_synthetic_adrenal(tmp_path, 2, 1, 1, size=16, seed=5) == folder
    assert os.path.getmtime(path) == mtime  # not regenerated
    with pytest.raises(ValueError, match="synthetic_sizes"):
        adrenal_splits(None, synthetic_dir=tmp_path, synthetic_sizes=(1, 1))


def test_save_synthetic_nifti(tmp_path):
    import nibabel as nib

    p = save_synthetic_adrenal_nifti(tmp_path / "in" / "v.nii.gz", size=16, seed=2)
    img = nib.load(p)
    data = np.asarray(img.dataobj)
    assert data.shape == (16, 16, 16) and data.dtype == np.float32 and 0 <= data.min() and data.max() == 1.0
    np.testing.assert_allclose(np.diag(img.affine)[:3], [4.0, 4.0, 4.0])
