"""The analysis runner ids of bundles/rotated_mnist_so2/configs/evaluate.yaml, in-process, on tiny settings.

A checkpoint is trained for one epoch into ``tmp_path`` with the ``training`` runner; the studies then read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, run

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "rotated_mnist_so2" / "configs"
TRAIN, EVALUATE, BLOCKED = (str(CONFIGS / f) for f in ("train.yaml", "evaluate.yaml", "blocked.yaml"))
META = str(CONFIGS / "metadata.json")
TINY = {"max_train": 64, "max_val": 16, "max_test": 32, "num_threads": 1, "batch_size": 32}

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _run(run_id: str, config_file, bundle_root: Path, **override) -> None:
    run(run_id=run_id, config_file=config_file, meta_file=META, logging_file=False, bundle_root=str(bundle_root),
        **{**TINY, **override})


def _chain(err: BaseException) -> str:
    parts = []
    while err is not None:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    _run("training", TRAIN, root, max_epochs=1, val_interval=1)
    assert (root / "models" / "model.pt").is_file()
    return root


def test_probe_runner(trained):
    _run("probe", [TRAIN, EVALUATE], trained)
    data = json.loads((trained / "eval" / "probes.json").read_text())
    assert data["num_train"] == 64 and data["num_test"] == 32 and data["num_classes"] == 10
    n_v, n_all = sum(data["mask"]), len(data["mask"])  # the latent channels of the bundle's network
    for part, channels in (("z", n_all), ("z_v", n_v), ("z_i", n_all - n_v)):
        r = data["probes"][part]
        assert r["channels"] == channels
        if channels:
            assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["auc"] <= 1.0
    assert data["probes"]["z"]["accuracy"] > 0.2  # ten classes: chance ~0.1, even after one epoch
    md = (trained / "eval" / "probes.md").read_text()
    assert "| z_v |" in md and "Protocol:" in md and "test split (32 images)" in md


def test_figure_runners_with_blocked_overlay(trained):
    # blocked.yaml sets its own network (the hybrid latent, 0.4.4); the model trained here is train.yaml's network
    base, blocked = ConfigParser.load_config_file(TRAIN), ConfigParser.load_config_file(BLOCKED)
    net = {k: base[k] for k in ("action", "channels", "latent_channels", "harmonic_invariant", "harmonic_map_stride")}
    assert any(k in blocked and blocked[k] != v for k, v in net.items())  # else these overrides are not needed
    out = trained / "blocked_eval"
    for run_id in ("error_maps", "latent_swap", "latent_magnitudes"):
        _run(run_id, [TRAIN, BLOCKED, EVALUATE], trained, ckpt_path=str(trained / "models" / "model.pt"), **net,
             output_dir=str(out), analysis_num_cases=2, analysis_num_pairs=1, magnitude_num_rotations=2)
        assert (out / f"{run_id}.png").stat().st_size > 1000
        assert json.loads((out / f"{run_id}.json").read_text())["figure"] == f"{run_id}.png"
    _run("probe", [TRAIN, BLOCKED, EVALUATE], trained, ckpt_path=str(trained / "models" / "model.pt"), **net,
         output_dir=str(out), probe_pooling=["avg", "max"], probe_view="rotated")
    data = json.loads((out / "probes.json").read_text())
    assert data["pooling"] == ["avg", "max"] and data["view"] == "rotated"
    n_all = len(data["mask"])
    # avg + max pooled to the probe_grid of evaluate.yaml, per channel (a harmonic latent: of its rendered map)
    assert data["grid"] == [8, 8] and data["probes"]["z"]["num_features"] == 2 * 64 * n_all
    assert data["feature_space"] == "map" and ("latent_map" in data["features"]) == (net["action"] == "harmonic")
    assert set(data["targets"]) == {"block_position"}  # blocked.yaml: what z_v / z_i hold besides the digit


def test_probe_runner_mismatched_checkpoint(trained, tmp_path):
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the ValueError; the chain is checked
        _run("probe", [TRAIN, EVALUATE], trained, channels=[16, 32], output_dir=str(tmp_path / "eval"))
    assert "does not match the network" in _chain(info.value) and "model.pt" in _chain(info.value)
    # the initialize step may create the (empty, writable-checked) output folder; no result file may appear
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())
