"""Tests for data_prep/prepare_demo_brain.py (tiny output)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "data_prep" / "prepare_demo_brain.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_demo_brain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script()


def test_tiny_demo_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert prepare.main(["--out", str(out), "--n_subjects", "2", "--seed", "1", "--shape", "12", "14", "16"]) == 0
    assert "not OASIS data" in capsys.readouterr().out
    names = (out / "subjects.txt").read_text().split()
    assert names == ["OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"]
    img = nib.load(str(out / names[0] / "aligned_norm.nii.gz"))
    assert img.shape == (12, 14, 16)
    assert "MNI152" in (out / "README_DEMO.txt").read_text()


def test_bad_arguments(tmp_path, capsys):
    assert prepare.main(["--out", str(tmp_path), "--n_subjects", "0"]) == 2
    assert "n_subjects" in capsys.readouterr().err
