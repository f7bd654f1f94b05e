"""MLflow experiment tracking of the bundles' training: ``--tracking bundles/<name>/configs/mlflow.yaml``.

Checks that every handler id of the shipped settings (and of MONAI's default ``--tracking mlflow`` settings) exists
in the bundle's train.yaml, why MONAI's default trainer handler cannot log this trainer's output, and runs tiny
trainings with tracking into a temporary SQLite store (MONAI >= 1.6 refuses ``file://`` tracking URIs), reading
runs, metrics, params and artifacts back with MLflow's client.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, run
from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

import monai_galr

REPO = Path(__file__).resolve().parents[2]
NAMES = ["rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3"]
HAS_MLFLOW = all(importlib.util.find_spec(m) is not None for m in ("mlflow", "sqlalchemy", "alembic"))

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _configs(name: str) -> Path:
    return REPO / "bundles" / name / "configs"


def _train_parser(name: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(_configs(name) / "train.yaml"))
    return parser


@pytest.mark.parametrize("name", NAMES)
def test_settings_ids_exist_in_train_config(name):
    settings = ConfigParser.load_config_file(str(_configs(name) / "mlflow.yaml"))
    parser = _train_parser(name)
    assert set(settings["handlers_id"]) <= set(settings["configs"]), "every handlers_id entry needs a handler config"
    for role, ids in settings["handlers_id"].items():
        assert parser.get(ids["id"]) is not None, f"{name}/train.yaml has no engine {ids['id']!r} ({role})"
        assert isinstance(parser.get(ids["handlers"]), list), f"{name}/train.yaml: {ids['handlers']!r} is no list"
    trainer = settings["configs"]["trainer"]
    refs = [v[1:] for v in trainer["experiment_param"].values() if isinstance(v, str) and v.startswith("@")]
    refs.append("log_interval")
    missing = [r for r in refs if r not in parser]
    assert not missing, f"{name}/train.yaml lacks the entries {missing} that mlflow.yaml logs"


@pytest.mark.parametrize("name", NAMES)
def test_default_mlflow_settings_ids_exist(name):
    """MONAI's `--tracking mlflow` finds the trainer, the validator and output_dir under its default ids."""
    parser = _train_parser(name)
    ids = DEFAULT_MLFLOW_SETTINGS["handlers_id"]
    for role in ("trainer", "validator"):
        assert parser.get(ids[role]["id"]) is not None, f"{name}: no {ids[role]['id']!r}"
        assert isinstance(parser.get(ids[role]["handlers"]), list), f"{name}: no list {ids[role]['handlers']!r}"
    assert "output_dir" in parser


def test_default_trainer_transform_does_not_fit_this_trainer():
    """Why the bundles ship mlflow.yaml: GroupActionTrainer's output is one dict (decollate=False)."""
    default = ConfigParser({"t": DEFAULT_MLFLOW_SETTINGS["configs"]["trainer"]["output_transform"]})
    default_transform = default.get_parsed_content("t")
    output = {"loss": torch.tensor(0.5), "loss_r": 0.3, "loss_i": 0.1, "loss_v": 0.1, "mask_fraction": 1.0}
    assert isinstance(default_transform(output), tuple)  # not a number, not a dict: MLflow refuses it
    ours = ConfigParser.load_config_file(str(_configs("rotated_mnist_so2") / "mlflow.yaml"))
    transform = ConfigParser({"t": ours["configs"]["trainer"]["output_transform"]}).get_parsed_content("t")
    assert transform(output) == {"loss": 0.5, "loss_r": 0.3, "loss_i": 0.1, "loss_v": 0.1, "mask_fraction": 1.0}


def _adrenal_data(tmp_path: Path) -> dict:
    from monai_galr.data import make_synthetic_adrenal

    make_synthetic_adrenal(tmp_path / "data" / "adrenalmnist3d_16.npz", 8, 4, 4, size=16, seed=1)
    return {"dataset_dir": str(tmp_path / "data"), "data_size": 16, "spatial_size": [16, 16, 16], "batch_size": 4}


TINY = {
    "rotated_mnist_so2": lambda tmp: {"max_train": 32, "max_val": 16, "max_test": 16, "batch_size": 16},
    "adrenal_ct_so3": _adrenal_data,
}


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow-skinny, sqlalchemy and alembic are not installed")
@pytest.mark.parametrize("name", sorted(TINY))
def test_training_records_run_metrics_params(name, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = "sqlite:///" + str(tmp_path / "mlruns.db")
    configs = _configs(name)
    overrides = {"max_epochs": 1, "val_interval": 1, "num_threads": 1, "log_interval": 1, **TINY[name](tmp_path)}
    run("training", config_file=str(configs / "train.yaml"), meta_file=str(configs / "metadata.json"),
        logging_file=False, bundle_root=str(tmp_path / "bundle"), tracking=str(configs / "mlflow.yaml"),
        tracking_uri=uri, **overrides)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r} in {uri}"
    runs = client.search_runs([experiment.experiment_id])
    train_runs = [r for r in runs if "loss" in r.data.metrics]
    assert len(train_runs) == 1, [r.data.metrics for r in runs]
    rec = train_runs[0]
    assert rec.info.status == "FINISHED"
    for key in ("loss", "loss_r", "loss_i", "loss_v", "mask_fraction", "val_psnr", "val_ssim", "val_psnr_identity"):
        assert key in rec.data.metrics, f"metric {key!r} not recorded: {sorted(rec.data.metrics)}"
    iterations = len(client.get_metric_history(rec.info.run_id, "loss"))
    assert iterations >= 1 and iterations == len(client.get_metric_history(rec.info.run_id, "mask_fraction"))
    params = rec.data.params
    assert params["bundle"] == name and params["monai_galr"] == monai_galr.__version__
    assert params["partition"] == "learned" and params["max_epochs"] == "1"
    assert json.loads(params["spatial_size"]) == list(overrides.get("spatial_size", [32, 32]))
    artifacts = [a.path for a in client.list_artifacts(rec.info.run_id)]
    assert any(a.startswith("config_") and a.endswith(".json") for a in artifacts), artifacts
    if name == "adrenal_ct_so3":  # the final test evaluation is tracked too (its own run)
        assert any("test_psnr" in r.data.metrics for r in runs), [sorted(r.data.metrics) for r in runs]
