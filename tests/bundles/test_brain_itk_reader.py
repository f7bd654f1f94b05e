"""brain_mri_so3 with the ITK reader (``--image_reader ITKReader``): the same volumes as with nibabel, and a run.

Runs wherever itk is installed (``itk-io`` is in the ``test`` extra); ``test_brain_mri_so3.py`` checks the message
of the reader when itk is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser, run
from monai.transforms import Compose

from monai_galr.data import make_demo_oasis

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "brain_mri_so3" / "configs"
TRAIN = str(CONFIGS / "train.yaml")

# skip only where itk is absent (find_spec, not an import at collection: importing itk takes seconds)
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("itk") is None, reason="itk is not installed (pip install itk-io)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _load(reader: str, path: Path) -> np.ndarray:
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["image_reader"] = reader
    parser["spatial_size"] = [16, 16, 16]
    out = Compose(parser.get_parsed_content("load_transforms"))({"image": str(path)})
    return np.asarray(out["image"])


def test_itk_is_importable():
    """The skip condition above can only skip when itk is really missing: here it must import."""
    import itk

    assert hasattr(itk, "imread")


def test_itk_and_nibabel_readers_agree(tmp_path):
    root = tmp_path / "oasis"
    make_demo_oasis(str(root), n_subjects=1, seed=0, shape=(16, 20, 18))
    (path,) = sorted(root.glob("OASIS_OAS1_*_MR1/aligned_norm.nii.gz"))
    nib, itk = _load("NibabelReader", path), _load("ITKReader", path)
    assert nib.shape == itk.shape == (1, 16, 16, 16)
    assert float(nib.std()) > 0.05  # a real volume, not a blank (the comparison below is not vacuous)
    np.testing.assert_allclose(itk, nib, atol=1e-5)


def test_bundle_trains_with_itk_reader(tmp_path, monkeypatch):
    """``--image_reader ITKReader`` selects the reader for the whole bundle: one tiny epoch reads every volume by ITK."""
    from monai.data import ITKReader

    reads: list = []
    original = ITKReader.read

    def spy(self, data, **kwargs):
        reads.append(data)
        return original(self, data, **kwargs)

    monkeypatch.setattr(ITKReader, "read", spy)
    data = tmp_path / "oasis"
    make_demo_oasis(str(data), n_subjects=6, seed=0, shape=(16, 16, 16))
    run(run_id="training", config_file=TRAIN, meta_file=str(CONFIGS / "metadata.json"), logging_file=False,
        bundle_root=str(tmp_path / "bundle"), dataset_dir=str(data), image_reader="ITKReader",
        spatial_size=[16, 16, 16], channels=[4, 8], latent_channels=4, num_threads=1, val_fraction=0.2,
        test_fraction=0.2, eval_repeats=2, batch_size=2, max_epochs=1, val_interval=1)
    assert (tmp_path / "bundle" / "models" / "model.pt").is_file()
    assert len(reads) >= 5, f"ITKReader read {len(reads)} volumes; the bundle did not use the selected reader"
