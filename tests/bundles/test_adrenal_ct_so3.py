"""End-to-end tests of bundles/adrenal_ct_so3 on tiny generated data (16^3 volumes): train, evaluate, infer.

The bundle runs in-process through ``monai.bundle.run`` with command-line style overrides on 8 training volumes: the
end-to-end model (``trained``, 30 epochs, seeded) must beat, on the 4 evaluated test volumes themselves, every
prediction that needs no model (all zeros, 0.5, each target's mean, the unrotated input: the ``baselines`` fixture
of ``tests/bundles/conftest.py``), and the report must be the PSNR of the predictions the evaluator made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run as bundle_run

from monai_galr.data import make_synthetic_adrenal
from monai_galr.groups import euler_to_matrix, rotate_image

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "adrenal_ct_so3"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.yaml")
EVALUATE = [TRAIN, str(CONFIGS / "evaluate.yaml")]
INFER = [TRAIN, str(CONFIGS / "inference.yaml")]  # inference.yaml is an overlay on train.yaml
TINY = {"spatial_size": [16, 16, 16], "max_epochs": 1, "val_interval": 1, "num_threads": 1, "batch_size": 4}
# the end-to-end model: 2 iterations x 30 epochs (~18 s more than one epoch), 29.0 dB on the 4 test volumes, where
# the best trivial prediction (the unrotated input) scores 26.6 dB (mostly empty volumes) and one epoch 11.6 dB
E2E = {"max_epochs": 30, "val_interval": 30}
MARGIN_DB = 1.0
FLOOR_DB = 27.0


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _run(run_id: str, config_file, bundle_root: Path, **overrides) -> None:
    bundle_run(
        run_id,
        config_file=config_file,
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("adrenal_data")
    make_synthetic_adrenal(folder / "adrenalmnist3d_16.npz", 8, 4, 4, size=16, seed=1)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data) -> Path:
    root = tmp_path_factory.mktemp("adrenal_bundle")
    _run("training", TRAIN, root, dataset_dir=str(tiny_data), data_size=16, **{**TINY, **E2E})
    return root


def test_config_files_present():
    for name in ("train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "logging.conf"):
        assert (CONFIGS / name).is_file(), name
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["schema"].endswith("meta_schema_20240725.json") and meta["version"] in meta["changelog"]
    assert meta["encoder_data_format"]["outputs"]["z"]["format"] == "latent"
    for name in ("docs/README.md", "docs/data_license.txt", "LICENSE"):
        assert (BUNDLE / name).is_file(), name


def test_train_then_test_metrics(trained):
    assert (trained / "models" / "model.pt").is_file()
    res = json.loads((trained / "eval" / "metrics_uniform.json").read_text())
    for key in ("test_psnr", "test_ssim", "test_rmse", "test_psnr_identity", "test_ssim_identity"):
        assert np.isfinite(res["metrics"][key]), key
    assert res["num_images"] == 4 and res["partition"] == "learned" and "Haar-uniform SO(3)" in res["protocol"]
    assert any(p.name.startswith("events.out.tfevents") for p in (trained / "logs").iterdir())


def test_evaluate_prints_metrics(trained, tiny_data, capsys, baselines, monkeypatch):
    os.remove(trained / "eval" / "metrics_uniform.json")
    seen = baselines.record(monkeypatch)
    _run("evaluating", EVALUATE, trained, dataset_dir=str(tiny_data), data_size=16, **TINY)
    out = capsys.readouterr().out
    assert "final test metrics" in out and '"test_psnr"' in out
    m = json.loads((trained / "eval" / "metrics_uniform.json").read_text())["metrics"]
    image, label, pred, identity = (torch.cat(seen[k]) for k in ("image", "label", "pred", "pred_identity"))
    assert image.shape[0] == 4
    # the report measured the predictions the evaluator made, and they beat every prediction that needs no model
    assert float(baselines.psnr_per_image(pred, label).mean()) == pytest.approx(m["test_psnr"], abs=1e-3)
    assert float(baselines.psnr_per_image(identity, image).mean()) == pytest.approx(m["test_psnr_identity"], abs=1e-3)
    baselines.check_bounds(m["test_psnr"], image, label, MARGIN_DB, FLOOR_DB)
    baselines.check_bounds(m["test_psnr_identity"], image, image, MARGIN_DB, FLOOR_DB - 1.0, skip=("input",))


def test_inference_default_synthetic_input(trained):
    out_dir = trained / "eval" / "inference"
    _run("inferring", INFER, trained, spatial_size=[16, 16, 16], num_threads=1, euler_degrees=[90, 0, 0])
    names = sorted(os.listdir(out_dir))
    assert "synthetic_input.nii.gz" in names
    pred = [n for n in names if n.endswith("_pred_rot90_0_0.nii.gz")]
    target = [n for n in names if n.endswith("_target_rot90_0_0.nii.gz")]
    inp = [n for n in names if n.endswith("_input_input.nii.gz")]
    assert len(pred) == len(target) == len(inp) == 1, names
    x = np.asarray(nib.load(out_dir / inp[0]).dataobj)
    t = np.asarray(nib.load(out_dir / target[0]).dataobj)
    p = np.asarray(nib.load(out_dir / pred[0]).dataobj)
    assert x.shape == t.shape == p.shape == (16, 16, 16)
    # the saved target is the input turned by the configured Euler angles (the image-space action)
    r = euler_to_matrix(torch.tensor([[90.0, 0.0, 0.0]], dtype=torch.float64) * np.pi / 180).float()
    expected = rotate_image(torch.as_tensor(x)[None, None], r)[0, 0].numpy()
    np.testing.assert_allclose(t, expected, atol=1e-4)
    assert 0.0 <= p.min() and p.max() <= 1.0


def test_inference_input_file(trained, tmp_path):
    vol = np.zeros((16, 16, 16), np.float32)
    vol[5:11, 7:9, 4:12] = 1.0
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "case.nii.gz")
    out_dir = tmp_path / "out"
    _run("inferring", INFER, trained, spatial_size=[16, 16, 16], num_threads=1, output_dir=str(out_dir),
         input_files=[str(tmp_path / "case.nii.gz")])
    assert any(n.startswith("case") and "_pred_rot30_45_60" in n for n in os.listdir(out_dir))


def test_embedded_synthetic_default(tmp_path):
    # no dataset_dir: the synthetic set is generated once into synthetic_dir and used (with a loud warning)
    _run("training", TRAIN, tmp_path, data_size=16, synthetic_sizes=[4, 2, 2], **TINY)
    files = list((tmp_path / "data" / "synthetic").rglob("adrenalmnist3d_16.npz"))
    assert len(files) == 1
    assert json.loads((tmp_path / "eval" / "metrics_uniform.json").read_text())["protocol"].endswith("synthetic")


def test_missing_npz(tmp_path):
    with pytest.raises(Exception) as err:
        _run("training", TRAIN, tmp_path, dataset_dir=str(tmp_path), **TINY)
    cause = _root_cause(err.value)
    assert isinstance(cause, FileNotFoundError) and "adrenalmnist3d_64.npz" in str(cause)


def test_wrong_keys(tmp_path):
    np.savez(tmp_path / "adrenalmnist3d_64.npz", x_train=np.zeros((2, 64, 64, 64), np.uint8))
    with pytest.raises(Exception) as err:
        _run("training", TRAIN, tmp_path, dataset_dir=str(tmp_path), **TINY)
    cause = _root_cause(err.value)
    assert isinstance(cause, ValueError) and "missing" in str(cause) and "train_images" in str(cause)


def test_volume_too_small_for_strides(tmp_path, tiny_data):
    with pytest.raises(Exception) as err:
        _run("training", TRAIN, tmp_path, dataset_dir=str(tiny_data), data_size=16,
             **{**TINY, "spatial_size": [7, 7, 7]})
    cause = _root_cause(err.value)
    assert isinstance(cause, ValueError) and "multiple of the total stride 4" in str(cause)  # strides (2, 2, 1)

