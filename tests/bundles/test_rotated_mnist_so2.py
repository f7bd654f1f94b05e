"""The rotated_mnist_so2 bundle end to end, in-process, with tiny settings; bad inputs; metadata and net checks.

Every run writes under ``tmp_path`` (``bundle_root`` holds models/, logs/ and eval/); configs are read from the
repository's ``bundles/`` folder.

The end-to-end model (``trained``: 6 epochs on 64 digits at the config's learning rate, seeded) must beat, on the
evaluated test items themselves, every prediction that needs no model (all zeros, 0.5, each target's mean, the
unrotated input; the ``baselines`` fixture of ``tests/bundles/conftest.py``) by ``MARGIN_DB``, and the report's PSNR
must be the PSNR of the predictions the evaluator made: a broken network, loss or metric fails.
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
from monai.bundle import ConfigParser, run, verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "rotated_mnist_so2" / "configs"
TRAIN, EVALUATE, INFERENCE, BLOCKED = (str(CONFIGS / f) for f in ("train.yaml", "evaluate.yaml", "inference.yaml",
                                                                     "blocked.yaml"))
META = str(CONFIGS / "metadata.json")
SCHEMA = Path(__file__).resolve().parents[1] / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "e66d79e8da7e7a5a2f1ffbc3acd7ca10"  # MONAI-extra-test-data 0.8.1 meta_schema_20240725.json
TINY = {"max_train": 32, "max_val": 16, "max_test": 16, "num_threads": 1, "batch_size": 16}
# the end-to-end model: 4 iterations x 6 epochs (~5 s more than one epoch on 32 digits), 16-17 dB on the 16 test
# items, where the best trivial prediction (each target's mean) scores 11.6 dB and the untrained network about 6 dB
E2E = {"max_train": 64, "max_epochs": 6, "val_interval": 3}
# the blocked grid network of 0.2.0-0.4.3 (models/blocked_grid/model.pt), the overrides blocked.yaml's header names
BLOCKED_GRID = {"action": "grid", "latent_channels": 32, "channels": [32, 64], "harmonic_invariant": "harmonic",
                "harmonic_map_stride": 1}
MARGIN_DB = 2.0
FLOOR_DB = 13.0

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _run(run_id: str, config_file, bundle_root: Path, **override) -> None:
    run(run_id=run_id, config_file=config_file, meta_file=META, logging_file=False,
        bundle_root=str(bundle_root), **{**TINY, **override})


def _train(bundle_root: Path, config_file=TRAIN, **override) -> None:
    _run("training", config_file, bundle_root, **{"max_epochs": 1, "val_interval": 1, **override})


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
    _train(root, **E2E)
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


def _check_metrics(path: Path, angles: str, seen: dict, baselines) -> dict:
    """The report at ``path`` against the batches the evaluator saw (``baselines.record``)."""
    import torch

    data = json.loads(path.read_text())
    m = data["metrics"]
    for key in ("psnr", "ssim", "rmse"):
        for suffix in ("", "_identity"):
            assert math.isfinite(m[f"test_{key}{suffix}"]), key
    image, label, pred, identity = (torch.cat(seen[k]) for k in ("image", "label", "pred", "pred_identity"))
    assert image.shape[0] == TINY["max_test"]
    # the report measured the predictions the evaluator wrote (no other items, no other metric)
    psnr = baselines.psnr_per_image
    assert float(psnr(pred, label).mean()) == pytest.approx(m["test_psnr"], abs=1e-3)
    assert float(psnr(identity, image).mean()) == pytest.approx(m["test_psnr_identity"], abs=1e-3)
    # ... and they beat every prediction that needs no model, on the same items ('input' is the identity's own
    # target; with c4 angles an item rotated by 0 degrees makes the unrotated input exact)
    skip = ("input",) if angles == "c4" else ()
    baselines.check_bounds(m["test_psnr"], image, label, MARGIN_DB, FLOOR_DB, skip=skip)
    baselines.check_bounds(m["test_psnr_identity"], image, image, MARGIN_DB, FLOOR_DB, skip=("input",))
    assert -1 <= m["test_ssim"] <= 1 and 0 <= m["test_rmse"] <= 1
    assert math.isfinite(data["psnr_ratio"]) and data["psnr_ratio"] > 0
    assert 0 <= data["mask_fraction"] <= 1 and data["partition"] == "learned"
    assert data["num_images"] == TINY["max_test"]
    assert f"angles {angles}" in data["protocol"]
    return data


def test_evaluating_writes_metrics(trained, baselines, monkeypatch):
    seen = baselines.record(monkeypatch)
    _run("evaluating", [TRAIN, EVALUATE], trained)
    _check_metrics(trained / "eval" / "metrics_uniform.json", "uniform", seen, baselines)


def test_evaluating_c4_angles(trained, baselines, monkeypatch):
    seen = baselines.record(monkeypatch)
    _run("evaluating", [TRAIN, EVALUATE], trained, eval_angles="c4")
    _check_metrics(trained / "eval" / "metrics_c4.json", "c4", seen, baselines)


def test_evaluation_bounds_reject_a_zero_output(trained, tmp_path, baselines, monkeypatch):
    """The same pipeline scores a network whose output is all zeros at its analytic value, and the bounds fail it."""
    import torch

    seen = baselines.record(monkeypatch, replace=lambda image, target, pred: pred * 0)
    _run("evaluating", [TRAIN, EVALUATE], trained, output_dir=str(tmp_path))
    report = json.loads((tmp_path / "metrics_uniform.json").read_text())["metrics"]
    image, label = torch.cat(seen["image"]), torch.cat(seen["label"])
    zeros = -10.0 * torch.log10((label.double() ** 2).flatten(1).mean(1)).mean()  # PSNR of 0 against each target
    assert report["test_psnr"] == pytest.approx(float(zeros), abs=1e-3)
    assert report["test_psnr"] == pytest.approx(baselines.trivial_psnr(image, label)["zeros"], abs=1e-3)
    with pytest.raises(AssertionError, match="floor"):
        _check_metrics(tmp_path / "metrics_uniform.json", "uniform", seen, baselines)
    with pytest.raises(AssertionError, match="does not beat the trivial 'zeros'"):
        baselines.check_bounds(report["test_psnr"], image, label, MARGIN_DB, floor_db=-math.inf)


def test_inferring_writes_pngs(trained):
    _run("inferring", [TRAIN, INFERENCE], trained, num_images=2)
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


def test_blocked_overlay_with_the_hybrid_latent_trains_and_evaluates(tmp_path):
    """blocked.yaml's hybrid latent (0.4.4) reaches the network: the checkpoint holds it, evaluation loads it, and a
    grid-view config is told which entry to set (tiny: strides [2, 1], 4 channels)."""
    import torch

    assert ConfigParser.load_config_file(BLOCKED)["harmonic_invariant"] == "map"
    hybrid = {"strides": [2, 1], "latent_channels": 4}
    _train(tmp_path, [TRAIN, BLOCKED], **hybrid)
    state = torch.load(tmp_path / "models" / "blocked" / "model.pt", weights_only=True)
    assert "encode.harmonic.invariant_map" in state
    _run("evaluating", [TRAIN, BLOCKED, EVALUATE], tmp_path, **hybrid)
    data = json.loads((tmp_path / "eval" / "blocked" / "metrics_uniform.json").read_text())
    assert math.isfinite(data["metrics"]["test_psnr"])
    text = _failure("evaluating", [TRAIN, BLOCKED, EVALUATE], tmp_path, **{**hybrid, "harmonic_invariant": "harmonic",
                                                                           "harmonic_map_stride": 1})
    assert "set harmonic_invariant: map" in text


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
        ([TRAIN, BLOCKED], {}, "blocked/model.pt"),  # 0.4.4: blocked.yaml's hybrid network and its weights
        ([TRAIN, BLOCKED], BLOCKED_GRID, "blocked_grid/model.pt"),  # 0.2.0-0.4.3 blocked grid weights, as blocked.yaml says
        ([TRAIN, INFERENCE], {}, "model.pt"),  # the inference pair: inference.yaml is an overlay on train.yaml
    ],
    ids=["default", "grid", "blocked", "blocked_grid", "inference"],
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
    assert net.harmonic_invariant == (overrides.get("harmonic_invariant") or parser["harmonic_invariant"])
    net.eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (2, 1, 32, 32) and torch.isfinite(y).all()
