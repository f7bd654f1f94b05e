"""End-to-end test of bundles/brain_mri_so3 on a tiny generated OASIS-style folder (6 subjects, 16x16x16).

The end-to-end model (40 epochs on 4 subjects, seeded) must beat, on the evaluated items themselves (1 test volume x
2 fixed rotations), every prediction that needs no model (all zeros, 0.5, each target's mean, the unrotated input:
the ``baselines`` fixture of ``tests/bundles/conftest.py``), and the report must be the PSNR of those predictions.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run

from monai_galr.data import make_demo_oasis

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "brain_mri_so3" / "configs"
TRAIN = str(CONFIGS / "train.yaml")
EVALUATE = [TRAIN, str(CONFIGS / "evaluate.yaml")]
INFER = [TRAIN, str(CONFIGS / "inference.yaml")]  # inference.yaml is an overlay on train.yaml
META = str(CONFIGS / "metadata.json")
TINY = {"spatial_size": [16, 16, 16], "channels": [4, 8], "latent_channels": 4, "num_threads": 1}
SPLIT = {"val_fraction": 0.2, "test_fraction": 0.2, "eval_repeats": 2}
# 2 iterations x 40 epochs (~5 s more than one epoch): 23.7 dB, where the best trivial prediction (the unrotated
# input) scores 14.9 dB and one epoch 8.8 dB
E2E = {"max_epochs": 40, "val_interval": 40}
MARGIN_DB = 2.0
FLOOR_DB = 18.0


@pytest.fixture(scope="module")
def oasis_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("oasis")
    make_demo_oasis(root, n_subjects=6, seed=0, shape=(16, 16, 16))
    return root


def _run(run_id, config_file, **override):
    return run(run_id=run_id, config_file=config_file, meta_file=META, logging_file=str(CONFIGS / "logging.conf"),
               **override)


def test_train_evaluate_infer(oasis_dir, tmp_path, baselines, monkeypatch):
    import torch

    common = {**TINY, **SPLIT, "dataset_dir": str(oasis_dir), "bundle_root": str(tmp_path)}
    _run("training", TRAIN, batch_size=2, **E2E, **common)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "logs").iterdir())

    seen = baselines.record(monkeypatch)
    _run("evaluating", EVALUATE, **common)
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    metrics = report["metrics"]
    for key in ("test_psnr", "test_ssim", "test_rmse", "test_psnr_identity", "test_ssim_identity"):
        assert np.isfinite(metrics[key])
    monkeypatch.undo()  # the recorder is for the evaluation only (inferring decollates its output)
    image, label, pred, identity = (torch.cat(seen[k]) for k in ("image", "label", "pred", "pred_identity"))
    assert image.shape[0] == 2
    # the report measured the predictions the evaluator made, and they beat every prediction that needs no model
    assert float(baselines.psnr_per_image(pred, label).mean()) == pytest.approx(metrics["test_psnr"], abs=1e-3)
    assert float(baselines.psnr_per_image(identity, image).mean()) == pytest.approx(
        metrics["test_psnr_identity"], abs=1e-3)
    baselines.check_bounds(metrics["test_psnr"], image, label, MARGIN_DB, FLOOR_DB)
    baselines.check_bounds(metrics["test_psnr_identity"], image, image, MARGIN_DB, FLOOR_DB, skip=("input",))
    assert report["num_images"] == 2  # 1 test volume x 2 fixed rotations
    assert "Haar-uniform SO(3)" in report["protocol"] and report["partition"] == "learned"

    _run("inferring", INFER, euler_degrees=[90.0, 0.0, 0.0], **{k: v for k, v in common.items() if k != "eval_repeats"})
    out = tmp_path / "eval" / "inference"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    assert len(files) == 3 and all(f.startswith("OASIS_OAS1_") for f in files), files
    pred = next(p for p in out.rglob("*pred_rotZYX90_0_0.nii.gz"))
    target = next(p for p in out.rglob("*target_rotZYX90_0_0.nii.gz"))
    inp = next(p for p in out.rglob("*_input.nii.gz"))
    assert nib.load(str(pred)).shape == (16, 16, 16)
    np.testing.assert_allclose(nib.load(str(pred)).affine, nib.load(str(inp)).affine)
    # the target is the input rotated by 90 degrees about the third axis (a permutation of voxels, exactly)
    x, t = (np.asarray(nib.load(str(p)).get_fdata()) for p in (inp, target))
    assert any(np.allclose(np.rot90(x, k, axes=(0, 1)), t, atol=1e-5) for k in (1, -1))


def test_infer_on_a_file(oasis_dir, tmp_path):
    common = {**TINY, **SPLIT, "dataset_dir": str(oasis_dir), "bundle_root": str(tmp_path)}
    _run("training", TRAIN, max_epochs=1, val_interval=1, **common)
    src = oasis_dir / "OASIS_OAS1_0002_MR1" / "aligned_norm.nii.gz"
    _run("inferring", INFER, input_files=[str(src)], output_dir=str(tmp_path / "out"), **TINY,
         bundle_root=str(tmp_path))
    assert (tmp_path / "out" / "OASIS_OAS1_0002_MR1" / "aligned_norm_pred_rotZYX30_0_45.nii.gz").is_file()


def _root_cause(err: BaseException) -> BaseException:
    """MONAI's config parser wraps errors of "$" expressions in RuntimeError; the original is the cause."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def test_volume_too_small_for_strides(oasis_dir, tmp_path):
    with pytest.raises(Exception) as e:
        _run("training", TRAIN, **{**TINY, "spatial_size": [6, 6, 6], "strides": [2, 2]},
             dataset_dir=str(oasis_dir), bundle_root=str(tmp_path), max_epochs=1)
    cause = _root_cause(e.value)
    assert isinstance(cause, ValueError)
    assert "spatial_size spatial size (6, 6, 6) must be a positive multiple of the total stride 4" in str(cause)


def test_datalist_with_missing_files(oasis_dir, tmp_path):
    dl = {"training": [{"image": str(oasis_dir / "OASIS_OAS1_0001_MR1" / "aligned_norm.nii.gz")},
                       {"image": str(tmp_path / "gone" / "aligned_norm.nii.gz")}], "validation": [], "test": []}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(dl))
    with pytest.raises(Exception) as e:
        _run("training", TRAIN, **TINY, datalist=str(path), bundle_root=str(tmp_path), max_epochs=1)
    cause = _root_cause(e.value)
    assert isinstance(cause, FileNotFoundError)
    assert "points at 1 missing file" in str(cause) and str(tmp_path / "gone") in str(cause)


@pytest.mark.skipif(importlib.util.find_spec("itk") is not None, reason="itk is installed: the ITK reader itself is "
                    "tested by test_brain_itk_reader.py")
def test_itk_reader_without_itk_names_it(oasis_dir, tmp_path):
    """Without itk, ``--image_reader ITKReader`` fails naming itk (runs only where itk is absent)."""
    from monai.utils import OptionalImportError

    with pytest.raises(Exception) as e:
        _run("training", TRAIN, **TINY, **SPLIT, image_reader="ITKReader", dataset_dir=str(oasis_dir),
             bundle_root=str(tmp_path), max_epochs=1)
    cause = _root_cause(e.value)
    assert isinstance(cause, OptionalImportError) and "itk" in str(cause)


def test_metadata():
    meta = json.loads(Path(META).read_text())
    assert meta["schema"].endswith("meta_schema_20240725.json")
    assert meta["version"] in meta["changelog"]
    assert meta["encoder_data_format"]["outputs"]["latent"]["format"] == "latent"
    assert os.path.isfile(CONFIGS / "multi_gpu_train.yaml")
