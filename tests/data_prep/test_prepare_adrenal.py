"""Tests for data_prep/prepare_adrenal.py and data_prep/make_synthetic_adrenal.py (main() and as scripts)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PREPARE = ROOT / "data_prep" / "prepare_adrenal.py"
MAKE = ROOT / "data_prep" / "make_synthetic_adrenal.py"


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script(PREPARE, "prepare_adrenal")
make = _load_script(MAKE, "make_synthetic_adrenal")


def _npz(path: Path, size: int = 8, counts=(3, 2, 2), **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_check_file_reports_and_warns_on_split_sizes(tmp_path, capsys):
    src = _npz(tmp_path / "adrenalmnist3d_64.npz", size=8)
    assert prepare.main(["--src", str(src), "--check"]) == 0
    out, err = capsys.readouterr()
    assert "train: 3 volumes, shape (3, 8, 8, 8), dtype uint8" in out and "normal 2, mass 1" in out
    assert "check passed" in out
    # 3/2/2 volumes instead of the official 1188/98/298: a warning per split, not a failure
    assert err.count("warning: split") == 3 and "1188" in err


def test_folder_and_size(tmp_path, capsys):
    _npz(tmp_path / "adrenalmnist3d.npz", size=28, counts=(1, 1, 1))
    assert prepare.main(["--src", str(tmp_path), "--check"]) == 0
    assert "(1, 28, 28, 28)" in capsys.readouterr().out
    assert prepare.main(["--src", str(tmp_path), "--size", "64", "--check"]) == 2
    assert "adrenalmnist3d_64.npz" in capsys.readouterr().err


def test_write_nifti_and_datalist(tmp_path, capsys):
    src = _npz(tmp_path / "in.npz", size=8)
    out = tmp_path / "out"
    assert prepare.main(["--src", str(src), "--out", str(out)]) == 0
    datalist = json.loads((out / "datalist.json").read_text())
    assert sorted(datalist) == ["test", "training", "validation"]
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [3, 2, 2]
    item = datalist["training"][1]
    assert item == {"image": "train/adrenal_train_0001.nii.gz", "label": 1}
    img = nib.load(out / item["image"])
    with np.load(src) as npz:
        np.testing.assert_array_equal(np.asarray(img.dataobj), npz["train_images"][1])
    np.testing.assert_allclose(np.diag(img.affine)[:3], [8.0, 8.0, 8.0])  # 64 mm / 8 voxels
    assert sorted(os.listdir(out)) == ["datalist.json", "test", "train", "val"]  # no temporary folder left
    # rerunning replaces the folders
    assert prepare.main(["--src", str(src), "--out", str(out)]) == 0
    assert len(os.listdir(out / "train")) == 3


def test_bad_inputs_exit_2(tmp_path, capsys):
    bad = {
        "missing.npz": None,
        "notzip.npz": b"not an npz",
        "keys.npz": {"test_labels": None},
        "flat.npz": {"train_images": np.zeros((3, 8, 8), np.uint8)},
        "float.npz": {"val_images": np.zeros((2, 8, 8, 8), np.float64)},
        "labels.npz": {"test_labels": np.array([[0], [3]], np.uint8)},
        "count.npz": {"train_labels": np.zeros((5, 1), np.uint8)},
    }
    for name, content in bad.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, dict):
            _npz(path, **content)
        assert prepare.main(["--src", str(path), "--check"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and name in err, (name, err)


def test_scripts_as_subprocess(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(MAKE), "--out", str(tmp_path), "--size", "12", "--n_train", "2", "--n_val", "1",
         "--n_test", "1"],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout and (tmp_path / "adrenalmnist3d_12.npz").is_file()
    r = subprocess.run(
        [sys.executable, str(PREPARE), "--src", str(tmp_path), "--size", "12", "--check"],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0 and "check passed" in r.stdout


def test_make_synthetic_bad_size(tmp_path, capsys):
    assert make.main(["--out", str(tmp_path), "--size", "4"]) == 2
    assert "size must be an int >= 8" in capsys.readouterr().err
