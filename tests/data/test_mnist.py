"""Tests for monai_galr.data.mnist: the embedded subset, npz / IDX folders and every bad-input path."""

from __future__ import annotations

import gzip
import logging
import struct

import numpy as np
import pytest

from monai_galr.data import load_mnist_arrays, mnist_splits, read_idx


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if arr.ndim == 3 else 2049)
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in arr.shape) + arr.tobytes()


def _write(path, data: bytes, gz: bool = False) -> None:
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def _write_idx(folder, n_train: int = 20, n_test: int = 8, gz: bool = False) -> dict:
    out = {}
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = _arrays(n, seed)
        _write(folder / f"{split}-images-idx3-ubyte", _idx_bytes(x), gz)
        _write(folder / f"{split}-labels-idx1-ubyte", _idx_bytes(y), gz)
        out["train" if split == "train" else "test"] = (x, y)
    return out


def _write_npz(folder, n_train: int = 20, n_test: int = 8, **override) -> dict:
    xtr, ytr = _arrays(n_train, 1)
    xte, yte = _arrays(n_test, 2)
    data = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, **override}
    np.savez(folder / "mnist.npz", **{k: v for k, v in data.items() if v is not None})
    return {"train": (xtr, ytr), "test": (xte, yte)}


# --- embedded subset -------------------------------------------------------------------------------------------


def test_embedded_arrays():
    arrays = load_mnist_arrays(None)
    assert set(arrays) == {"all"}
    x, y = arrays["all"]
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert y.shape == (5000,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))


def test_embedded_splits_sizes_range_determinism(caplog):
    with caplog.at_level(logging.INFO, logger="monai_galr.data"):
        a = mnist_splits(seed=3)
    assert {k: len(v) for k, v in a.items()} == {"train": 3500, "val": 500, "test": 1000}
    assert "embedded" in caplog.text and "3500" in caplog.text
    item = a["train"][0]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == np.float32
    assert isinstance(item["label"], int)
    assert min(i["image"].min() for i in a["test"]) >= 0.0 and max(i["image"].max() for i in a["test"]) == 1.0
    b = mnist_splits(seed=3)
    for split in a:
        assert [i["label"] for i in a[split]] == [i["label"] for i in b[split]]
        np.testing.assert_array_equal(a[split][7]["image"], b[split][7]["image"])
    c = mnist_splits(seed=4)
    assert [i["label"] for i in a["train"][:50]] != [i["label"] for i in c["train"][:50]]
    # shuffled, so the test split is not one class, and the splits do not overlap
    assert len({i["label"] for i in a["test"]}) == 10
    keys = {split: {i["image"].tobytes() for i in a[split]} for split in a}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"]


def test_embedded_fractions_and_caps():
    s = mnist_splits(val_fraction=0.0, test_fraction=0.5, max_train=10, max_test=3)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (10, 0, 3)


# --- folders ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, gz):
    ref = _write_idx(tmp_path, gz=gz)
    arrays = load_mnist_arrays(tmp_path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(arrays[split][0], ref[split][0])
        np.testing.assert_array_equal(arrays[split][1], ref[split][1])
        assert arrays[split][1].dtype == np.int64
    s = mnist_splits(str(tmp_path), val_fraction=0.25)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (15, 5, 8)
    assert [i["label"] for i in s["test"]] == ref["test"][1].tolist()
    np.testing.assert_allclose(s["test"][0]["image"][0], ref["test"][0][0] / 255.0, rtol=1e-6)


def test_npz_folder(tmp_path, caplog):
    ref = _write_npz(tmp_path, y_train=_arrays(20, 1)[1][:, None])  # (N, 1) labels are accepted
    with caplog.at_level(logging.INFO, logger="monai_galr.data"):
        s = mnist_splits(tmp_path, val_fraction=0.1, seed=0, max_test=5)
    assert "mnist.npz" in caplog.text
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (18, 2, 5)
    np.testing.assert_array_equal(load_mnist_arrays(tmp_path)["train"][0], ref["train"][0])


def test_npz_float_integral_images_accepted(tmp_path):
    ref = _write_npz(tmp_path, x_test=_arrays(8, 2)[0].astype(np.float64))
    np.testing.assert_array_equal(load_mnist_arrays(tmp_path)["test"][0], ref["test"][0])


# --- bad input -------------------------------------------------------------------------------------------------


def test_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="dataset_dir.*does not exist"):
        load_mnist_arrays(tmp_path / "nope")


def test_dir_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        load_mnist_arrays(tmp_path / "f")


def test_dataset_dir_type():
    with pytest.raises(TypeError, match="dataset_dir"):
        load_mnist_arrays(3)


def test_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist.npz.*train-images-idx3-ubyte"):
        load_mnist_arrays(tmp_path)


def test_partial_idx(tmp_path):
    _write_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['t10k-labels-idx1-ubyte'\]"):
        load_mnist_arrays(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic(tmp_path, gz):
    _write_idx(tmp_path, gz=gz)
    x, _ = _arrays(20, 1)
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(x, magic=2049), gz)  # labels magic on images
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic number 2049.*expected 2051"):
        load_mnist_arrays(tmp_path)


@pytest.mark.parametrize("cut", [2, 10, 100])
def test_truncated_idx(tmp_path, cut):
    _write_idx(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:cut])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        load_mnist_arrays(tmp_path)


def test_truncated_gzip(tmp_path):
    _write_idx(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-12])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_mnist_arrays(tmp_path)


def test_trailing_bytes(tmp_path):
    _write_idx(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes() + b"\x00\x00")
    with pytest.raises(ValueError, match="trailing bytes"):
        load_mnist_arrays(tmp_path)


def test_idx_count_mismatch(tmp_path):
    _write_idx(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*expected 20 labels.*got 19"):
        load_mnist_arrays(tmp_path)


def test_idx_wrong_image_shape(tmp_path):
    _write_idx(tmp_path)
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(np.zeros((20, 32, 32), np.uint8)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*\(N, 28, 28\).*\(20, 32, 32\)"):
        load_mnist_arrays(tmp_path)


def test_idx_labels_out_of_range(tmp_path):
    _write_idx(tmp_path)
    _write(tmp_path / "t10k-labels-idx1-ubyte", _idx_bytes(np.full(8, 11, np.uint8)))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*0..9.*11"):
        load_mnist_arrays(tmp_path)


def test_read_idx_any_magic(tmp_path):
    p = tmp_path / "f"
    _write(p, _idx_bytes(np.arange(5, dtype=np.uint8)))
    np.testing.assert_array_equal(read_idx(p), np.arange(5))
    _write(p, b"\x00\x00\x08\x02" + b"\x00" * 20)
    with pytest.raises(ValueError, match="magic number 2050"):
        read_idx(p)


def test_npz_missing_keys(tmp_path):
    _write_npz(tmp_path, y_test=None)
    with pytest.raises(ValueError, match=r"mnist.npz.*missing \['y_test'\]"):
        load_mnist_arrays(tmp_path)


def test_npz_wrong_image_shape(tmp_path):
    _write_npz(tmp_path, x_train=np.zeros((20, 784), np.uint8))
    with pytest.raises(ValueError, match=r"x_train.*\(N, 28, 28\).*\(20, 784\) \(flattened 784-pixel rows\? reshape"):
        load_mnist_arrays(tmp_path)


def test_npz_wrong_label_shape(tmp_path):
    _write_npz(tmp_path, y_train=np.zeros((20, 2), np.uint8))
    with pytest.raises(ValueError, match=r"y_train.*\(N,\).*\(20, 2\)"):
        load_mnist_arrays(tmp_path)


def test_npz_count_mismatch(tmp_path):
    _write_npz(tmp_path, y_test=np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match="y_test.*expected 8 labels.*got 7"):
        load_mnist_arrays(tmp_path)


def test_npz_labels_out_of_range(tmp_path):
    _write_npz(tmp_path, y_train=np.full(20, -1, np.int64))
    with pytest.raises(ValueError, match="y_train.*0..9"):
        load_mnist_arrays(tmp_path)


def test_npz_unit_range_float_images(tmp_path):
    _write_npz(tmp_path, x_train=np.full((20, 28, 28), 0.5))
    with pytest.raises(ValueError, match="x_train.*integral.*255"):
        load_mnist_arrays(tmp_path)


def test_npz_values_out_of_range(tmp_path):
    _write_npz(tmp_path, x_train=np.full((20, 28, 28), 300, np.int32))
    with pytest.raises(ValueError, match=r"x_train.*0..255.*300"):
        load_mnist_arrays(tmp_path)


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="mnist.npz"):
        load_mnist_arrays(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_train": -1}, "max_train"),
        ({"max_val": 2.0}, "max_val"),
        ({"max_test": True}, "max_test"),
    ],
)
def test_bad_split_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnist_splits(**kwargs)


def test_fraction_type():
    with pytest.raises(TypeError, match="val_fraction"):
        mnist_splits(val_fraction="0.1")
