"""bundles/adrenal_ct_so3 background.yaml: the shape rotates over fixed anatomy; train, evaluate and probe on 16^3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.bundle import run as bundle_run

from monai_galr.data import make_synthetic_adrenal

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "adrenal_ct_so3" / "configs"
TRAIN = [str(CONFIGS / "train.yaml"), str(CONFIGS / "background.yaml")]
EVALUATE = TRAIN + [str(CONFIGS / "evaluate.yaml")]
TINY = {"spatial_size": [16, 16, 16], "max_epochs": 1, "val_interval": 1, "num_threads": 1, "batch_size": 4,
        "num_backgrounds": 2, "data_size": 16}


def _run(run_id: str, config_file, bundle_root: Path, **overrides) -> None:
    bundle_run(run_id, config_file=config_file, meta_file=str(CONFIGS / "metadata.json"),
               logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(bundle_root), **overrides)


def _parser(bundle_root: Path, data: Path) -> ConfigParser:
    """train.yaml + background.yaml at the tiny size, not yet parsed."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"bundle_root": str(bundle_root), "dataset_dir": str(data), **TINY})
    return parser


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("adrenal_bg_data")
    make_synthetic_adrenal(folder / "adrenalmnist3d_16.npz", 8, 4, 4, size=16, seed=1)
    return folder


def test_background_overlay_composites_a_fixed_layer(tmp_path, tiny_data):
    parser = _parser(tmp_path, tiny_data)
    parser.parse()
    ds = parser.get_parsed_content("train#dataset")
    item = ds[0]
    assert item["background"].shape == (1, 16, 16, 16) and item["background_mask"].shape == (1, 16, 16, 16)
    assert 0 <= item["background_id"] < 2 and float(item["background_mask"].max()) > 0.5
    from monai_galr.engines import PrepareGroupActionBatch
    from monai_galr.groups import random_rotation

    batch = {k: torch.as_tensor(np.asarray(item[k]))[None] for k in ("image", "background", "background_mask")}
    batch["rotation"] = random_rotation(1, 3, generator=torch.Generator().manual_seed(0))
    x, target, _, _ = PrepareGroupActionBatch()(batch)
    m = batch["background_mask"]
    inside = m > 0.999
    # where the background is opaque, x and T_R x both show it: it does not rotate
    torch.testing.assert_close(x[inside], batch["background"][inside])
    torch.testing.assert_close(target[inside], batch["background"][inside])


def test_background_train_evaluate_probe(tmp_path, tiny_data):
    _run("training", TRAIN, tmp_path, dataset_dir=str(tiny_data), **TINY)
    assert (tmp_path / "models" / "background" / "model.pt").is_file()
    _run("evaluating", EVALUATE, tmp_path, dataset_dir=str(tiny_data), **TINY)
    res = json.loads((tmp_path / "eval" / "background" / "metrics_uniform.json").read_text())
    assert np.isfinite(res["metrics"]["test_psnr"])
    _run("probe", EVALUATE, tmp_path, dataset_dir=str(tiny_data), probe_max_iter=200, **TINY)
    out = json.loads((tmp_path / "eval" / "background" / "probes.json").read_text())
    assert out["grid"] == [4, 4, 4] or out["grid"] is None  # None: a harmonic latent (flattened coefficients)
    assert set(out["targets"]) == {"background"} and set(out["targets"]["background"]) == {"z", "z_v", "z_i"}


def test_background_that_does_not_match_the_volume(tmp_path, tiny_data):
    parser = _parser(tmp_path, tiny_data)
    parser["backgrounds"] = "$monai_galr.data.load_backgrounds(@background_file)"
    parser["background_file"] = (
        "$monai_galr.data.ensure_synthetic_backgrounds(@synthetic_dir, num_backgrounds=2, size=12, seed=0)"
    )
    parser.parse()
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("attach_background")
    exc = info.value
    while exc.__cause__ is not None:
        exc = exc.__cause__
    assert isinstance(exc, ValueError) and "spatial shape [12, 12, 12]" in str(exc) and "[16, 16, 16]" in str(exc)


def test_background_overlay_uses_the_hybrid_latent_without_a_hold(tmp_path, tiny_data):
    """0.4.4: the overlay trains the hybrid latent, every loss term reaching the logits, without train.yaml's
    one-epoch hold, and the network and trainer receive it."""
    parser = _parser(tmp_path, tiny_data)
    parser.parse()
    trainer = parser.get_parsed_content("train#trainer")
    assert (trainer.mask_warmup_epochs, trainer.mask_warmup_iterations) == (0, 0)
    assert trainer.mask_loss_terms is None  # every term
    net = parser.get_parsed_content("network_def")
    assert net.harmonic_invariant == "map" and hasattr(net.encode.harmonic, "invariant_map")
    plain = ConfigParser()
    plain.read_config(TRAIN[0])
    assert (plain["mask_warmup_epochs"], plain["mask_warmup_iterations"]) == (1, 0)
