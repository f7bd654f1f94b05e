"""The rotated_mnist_so2 bundle end to end, in-process, with tiny settings; bad inputs; metadata and net checks.

Every run writes under ``tmp_path`` (``bundle_root`` holds models/, logs/ and eval/); configs are read from the
repository's ``bundles/`` folder.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import run, verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "rotated_mnist_so2" / "configs"
TRAIN, EVALUATE, INFERENCE, BLOCKED = (str(CONFIGS / f) for f in ("train.yaml", "evaluate.yaml", "inference.yaml",
                                                                     "blocked.yaml"))
META = str(CONFIGS / "metadata.json")
SCHEMA = Path(__file__).resolve().parents[1] / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "e66d79e8da7e7a5a2f1ffbc3acd7ca10"  # MONAI-extra-test-data 0.8.1 meta_schema_20240725.json
TINY = {"max_train": 32, "max_val": 16, "max_test": 16, "num_threads": 1, "batch_size": 16}

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _run(run_id: str, config_file, bundle_root: Path, **override) -> None:
    run(run_id=run_id, config_file=config_file, meta_file=META, logging_file=False,
        bundle_root=str(bundle_root), **{**TINY, **override})


def _train(bundle_root: Path, config_file=TRAIN, **override) -> None:
    _run("training", config_file, bundle_root, max_epochs=1, val_interval=1, **override)


def _chain(err: BaseException) -> str:
    """The messages of an exception and of everything that caused it (MONAI wraps config errors)."""
    parts = []
    while err is not None:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


def _failure(run_id: str, config_file, bundle_root: Path, **override) -> str:
    # MONAI wraps a ValueError (the chain is checked); the up-front checks raise BundleError, a SystemExit
    with pytest.raises(BaseException) as info:  # noqa: PT011
        _run(run_id, config_file, bundle_root, **override)
    return _chain(info.value)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    _train(root)
    return root


def _tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags = set()
    for f in folder.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(f)).Load():
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_training_writes_model_and_tensorboard_events(trained):
    assert (trained / "models" / "model.pt").is_file()
    tags = _tags(trained / "logs")
    assert {"loss", "loss_r", "loss_i", "loss_v", "mask_fraction", "val_psnr", "val_psnr_identity"} <= tags


def _check_metrics(path: Path, angles: str) -> dict:
    data = json.loads(path.read_text())
    m = data["metrics"]
    for key in ("psnr", "ssim", "rmse"):
        for suffix in ("", "_identity"):
            assert math.isfinite(m[f"test_{key}{suffix}"]), key
    assert 0 < m["test_psnr"] < 100 and 0 < m["test_psnr_identity"] < 100
    assert -1 <= m["test_ssim"] <= 1 and 0 <= m["test_rmse"] <= 1
    assert math.isfinite(data["psnr_ratio"]) and data["psnr_ratio"] > 0
    assert 0 <= data["mask_fraction"] <= 1 and data["partition"] == "learned"
    assert data["num_images"] == TINY["max_test"]
    assert f"angles {angles}" in data["protocol"]
    return data


def test_evaluating_writes_metrics(trained):
    _run("evaluating", [TRAIN, EVALUATE], trained)
    _check_metrics(trained / "eval" / "metrics_uniform.json", "uniform")


def test_evaluating_c4_angles(trained):
    _run("evaluating", [TRAIN, EVALUATE], trained, eval_angles="c4")
    c4 = _check_metrics(trained / "eval" / "metrics_c4.json", "c4")
    assert c4["metrics"]["test_psnr_identity"] > 0


def test_inferring_writes_pngs(trained):
    _run("inferring", INFERENCE, trained, num_images=2)
    from PIL import Image

    folder = trained / "eval" / "inference"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["0_input.png", "0_pred_rot45.png", "0_target_rot45.png",
                     "1_input.png", "1_pred_rot45.png", "1_target_rot45.png"]
    img = np.asarray(Image.open(folder / "0_target_rot45.png"))
    assert img.shape == (32, 32) and img.max() > 0


def test_blocked_overlay_trains(tmp_path):
    _train(tmp_path, [TRAIN, BLOCKED])
    assert (tmp_path / "models" / "blocked" / "model.pt").is_file()
    assert any((tmp_path / "logs" / "blocked").glob("events.out.tfevents.*"))
    assert not (tmp_path / "models" / "model.pt").exists()


def test_missing_dataset_dir_names_it(tmp_path):
    missing = tmp_path / "no_such_mnist"
    text = _failure("training", TRAIN, tmp_path, max_epochs=1, dataset_dir=str(missing))
    assert "ValueError" in text and str(missing) in text


def test_bogus_partition_fails(tmp_path):
    text = _failure("training", TRAIN, tmp_path, max_epochs=1, partition="bogus")
    assert "bogus" in text and "learned" in text


def test_tau_out_of_range_fails(tmp_path):
    text = _failure("training", TRAIN, tmp_path, max_epochs=1, tau=1.5)
    # checked with every hyperparameter before anything is built (monai_galr.bundle_checks), then by ALD itself
    assert "config entry 'tau' (--tau): expected a number in (0, 1), got 1.5" in text


def test_evaluating_another_configuration_names_checkpoint(tmp_path):
    _train(tmp_path, latent_channels=8)
    ckpt = tmp_path / "models" / "model.pt"
    text = _failure("evaluating", [TRAIN, EVALUATE], tmp_path, latent_channels=16)
    assert str(ckpt) in text and "ald.alpha" in text and "does not match" in text
    assert not (tmp_path / "eval" / "metrics_uniform.json").exists()


def test_evaluating_without_checkpoint_names_it(tmp_path):
    text = _failure("evaluating", [TRAIN, EVALUATE], tmp_path)
    assert "FileNotFoundError" in text and str(tmp_path / "models" / "model.pt") in text


def test_command_line_reports_bad_dataset_dir(tmp_path):
    missing = tmp_path / "absent"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN, "--bundle_root",
           str(tmp_path), "--dataset_dir", str(missing), "--max_epochs", "1", "--num_threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "dataset_dir" in proc.stderr


def test_metadata_is_valid_offline():
    assert SCHEMA.is_file()  # present: verify_metadata only downloads a missing schema
    verify_metadata(meta_file=META, filepath=str(SCHEMA), create_dir=False, hash_val=SCHEMA_MD5)


def test_metadata_check_can_fail(tmp_path):
    meta = json.loads(Path(META).read_text())
    del meta["version"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA), create_dir=False, hash_val=SCHEMA_MD5)


def test_network_matches_metadata_shapes():
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=TRAIN, device="cpu")
    # verify_net_in_out compares only the channel count: check the whole (C, H, W) metadata names
    import torch
    from monai.bundle import ConfigParser

    fmt = json.loads(Path(META).read_text())["network_data_format"]
    parser = ConfigParser()
    parser.read_config(TRAIN)
    with torch.no_grad():
        y = parser.get_parsed_content("network_def").eval()(torch.rand(2, 1, *fmt["inputs"]["image"]["spatial_shape"]))
    assert tuple(y.shape) == (2, fmt["outputs"]["pred"]["num_channels"], *fmt["outputs"]["pred"]["spatial_shape"])


@pytest.mark.parametrize(
    "files, overrides, weights",
    [
        ([TRAIN], {}, "model.pt"),  # 0.3.0: the harmonic network
        ([TRAIN], {"action": "grid", "latent_channels": 32}, "grid/model.pt"),  # 0.2.0 grid weights, as the docs say
        ([TRAIN, BLOCKED], {}, "blocked/model.pt"),  # blocked.yaml pins the grid network and its weights
        ([INFERENCE], {}, "model.pt"),  # inference.yaml declares the same network as train.yaml
    ],
    ids=["default", "grid", "blocked", "inference"],
)
def test_shipped_weights_load_into_their_configs(files, overrides, weights):
    """Each shipped weights file loads strictly (weights_only) into the network its documented config builds."""
    import torch
    from monai.bundle import ConfigParser

    from monai_galr.handlers import load_network_weights

    parser = ConfigParser()
    parser.read_config(files)
    for key, value in overrides.items():
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(REPO / "bundles" / "rotated_mnist_so2" / "models" / weights), map_location="cpu")
    expect = overrides.get("action") or parser["action"]
    assert net.is_harmonic == (expect == "harmonic")
    net.eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (2, 1, 32, 32) and torch.isfinite(y).all()
