"""Tests for data_prep/prepare_mnist.py (run as a script and through main())."""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "data_prep" / "prepare_mnist.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script()


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in arr.shape) + arr.astype(np.uint8).tobytes()


def _write_idx(folder: Path, gz: bool) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 12), ("t10k", 5)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        for name, arr in ((f"{split}-images-idx3-ubyte", x), (f"{split}-labels-idx1-ubyte", y)):
            if gz:
                with gzip.open(folder / (name + ".gz"), "wb") as f:
                    f.write(_idx_bytes(arr))
            else:
                (folder / name).write_bytes(_idx_bytes(arr))
        out["train" if split == "train" else "test"] = (x, y)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_idx_to_npz(tmp_path, gz, capsys):
    src = tmp_path / "raw"
    src.mkdir()
    ref = _write_idx(src, gz)
    out = tmp_path / "data" / "mnist.npz"
    assert prepare.main(["--src", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train: 12 images" in text and "test: 5 images" in text and "uint8" in text and "[0, 255]" in text
    with np.load(out) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]
        np.testing.assert_array_equal(npz["x_train"], ref["train"][0])
        np.testing.assert_array_equal(npz["y_test"], ref["test"][1])
        assert npz["x_train"].dtype == np.uint8 and npz["y_train"].dtype == np.int64
    assert os.listdir(out.parent) == ["mnist.npz"]  # no temporary file left behind
    # the written file is itself valid input (an mnist.npz folder)
    assert prepare.main(["--src", str(out.parent), "--check"]) == 0


def test_subprocess_check_and_overwrite(tmp_path):
    _write_idx(tmp_path, gz=False)
    out = tmp_path / "mnist.npz"
    out.write_bytes(b"old")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--src", str(tmp_path), "--check"], capture_output=True, text=True, env=env
    )
    # mnist.npz is preferred over IDX files: the broken "old" file is reported with exit code 2
    assert r.returncode == 2 and "mnist.npz" in r.stderr
    out.unlink()
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--src", str(tmp_path), "--check"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert "check passed" in r.stdout and not out.exists()


def test_missing_src(tmp_path, capsys):
    assert prepare.main(["--src", str(tmp_path / "nope"), "--check"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_src(tmp_path, capsys):
    assert prepare.main(["--src", str(tmp_path), "--out", str(tmp_path / "o.npz")]) == 2
    assert "looked for" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_bad_file_no_output(tmp_path, capsys):
    _write_idx(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:50])
    out = tmp_path / "out" / "mnist.npz"
    assert prepare.main(["--src", str(tmp_path), "--out", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err and not out.exists()


def test_out_required_without_check(tmp_path):
    with pytest.raises(SystemExit) as e:
        prepare.main(["--src", str(tmp_path)])
    assert e.value.code == 2


def test_atomic_write_cleans_up_on_failure(tmp_path, monkeypatch):
    arrays = {"train": (np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64))}  # no "test": write fails
    with pytest.raises(KeyError):
        prepare.write_npz(arrays, str(tmp_path / "mnist.npz"))
    assert os.listdir(tmp_path) == []
