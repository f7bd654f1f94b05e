"""Tests for data_prep/prepare_oasis.py (through main() and as a script)."""

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
SCRIPT = ROOT / "data_prep" / "prepare_oasis.py"
SHAPE = ["8", "9", "10"]


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_oasis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script()


def _root(tmp_path: Path, n: int = 6) -> Path:
    root = tmp_path / "oasis"
    for i in range(1, n + 1):
        d = root / f"OASIS_OAS1_{i:04d}_MR1"
        d.mkdir(parents=True)
        data = np.random.default_rng(i).random((8, 9, 10)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(d / "aligned_norm.nii.gz"))
    return root


def test_writes_datalist_and_report(tmp_path, capsys):
    root = _root(tmp_path)
    (root / "OASIS_OAS1_0003_MR1" / "aligned_norm.nii.gz").write_bytes(b"corrupt")
    out = tmp_path / "out" / "datalist.json"
    args = ["--root", str(root), "--out", str(out), "--expected_shape", *SHAPE, "--val_fraction", "0.2"]
    assert prepare.main(args + ["--test_fraction", "0.2"]) == 0
    text = capsys.readouterr().out
    assert "EXCLUDED OASIS_OAS1_0003_MR1" in text and "cannot be read" in text
    dl = json.loads(out.read_text())
    assert sum(len(dl[k]) for k in ("training", "validation", "test")) == 5
    report = json.loads((tmp_path / "out" / "datalist_report.json").read_text())
    assert [e["subject"] for e in report["excluded"]] == ["OASIS_OAS1_0003_MR1"]
    assert sorted(os.listdir(out.parent)) == ["datalist.json", "datalist_report.json"]
    # same seed -> same datalist; --strict flags the exclusion
    out2 = tmp_path / "out2.json"
    assert prepare.main(args + ["--test_fraction", "0.2", "--strict"]) == 3
    assert prepare.main(["--root", str(root), "--out", str(out2), "--expected_shape", *SHAPE,
                         "--val_fraction", "0.2", "--test_fraction", "0.2"]) == 0
    assert json.loads(out2.read_text())["test"] == dl["test"]


def test_wrong_shape_and_any_shape(tmp_path, capsys):
    root = _root(tmp_path, 3)
    out = tmp_path / "dl.json"
    # the default OASIS shape: every subject excluded -> an error, and no empty datalist written
    assert prepare.main(["--root", str(root), "--out", str(out), "--val_fraction", "0", "--test_fraction", "0"]) == 2
    captured = capsys.readouterr()
    assert "expected (160, 192, 224)" in captured.out
    assert "no usable training subject" in captured.err and "3 found, 3 excluded" in captured.err
    assert not out.exists()
    assert prepare.main(["--root", str(root), "--out", str(out), "--any_shape", "--test_fraction", "0"]) == 0
    assert len(json.loads(out.read_text())["training"]) == 3


def test_no_subjects_exit_2(tmp_path, capsys):
    assert prepare.main(["--root", str(tmp_path), "--out", str(tmp_path / "dl.json")]) == 2
    assert "no OASIS subject" in capsys.readouterr().err and not (tmp_path / "dl.json").exists()
    assert prepare.main(["--root", str(tmp_path / "nope"), "--out", str(tmp_path / "dl.json")]) == 2


def test_subprocess(tmp_path):
    root = _root(tmp_path, 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), "--out", str(tmp_path / "dl.json"), "--any_shape",
         "--header_only"],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "3 subject(s) found" in r.stdout
