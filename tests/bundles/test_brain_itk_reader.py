"""brain_mri_so3 with the ITK reader (``--image_reader ITKReader``): the same volumes as with nibabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser
from monai.transforms import Compose

from monai_galr.data import make_demo_oasis

pytest.importorskip("itk", reason="itk is not installed (pip install itk-io)")

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "bundles" / "brain_mri_so3" / "configs" / "train.yaml")


def _load(reader: str, path: Path) -> np.ndarray:
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["image_reader"] = reader
    parser["spatial_size"] = [16, 16, 16]
    out = Compose(parser.get_parsed_content("load_transforms"))({"image": str(path)})
    return np.asarray(out["image"])


def test_itk_and_nibabel_readers_agree(tmp_path):
    root = tmp_path / "oasis"
    make_demo_oasis(str(root), n_subjects=1, seed=0, shape=(16, 20, 18))
    (path,) = sorted(root.glob("OASIS_OAS1_*_MR1/aligned_norm.nii.gz"))
    nib, itk = _load("NibabelReader", path), _load("ITKReader", path)
    assert nib.shape == itk.shape == (1, 16, 16, 16)
    assert float(nib.std()) > 0.05  # a real volume, not a blank (the comparison below is not vacuous)
    np.testing.assert_allclose(itk, nib, atol=1e-5)
