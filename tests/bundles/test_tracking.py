"""MLflow experiment tracking of the bundles' training: ``--tracking mlflow`` and ``--tracking <bundle>/mlflow.yaml``.

Checks that every handler id of the shipped settings (and of MONAI's default ``--tracking mlflow`` settings) exists
in the bundle's train.yaml, that MONAI's default trainer transform reads this trainer's (decollated) output, and
runs tiny trainings with tracking into a SQLite store (MONAI >= 1.6 refuses ``file://`` tracking URIs), reading
runs, metrics, params and artifacts back with MLflow's client.
"""

from __future__ import annotations

import importlib.util
import math
import json
import re
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
    refs = set(re.findall(r"@(\w+)", settings["configs"]["trainer"])) - set(settings["configs"])
    missing = sorted(r for r in refs if r not in parser)
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


def _decollated_output() -> list:
    """What GroupActionTrainer's ``engine.state.output`` is under the bundles' ``decollate: true``."""
    from monai.transforms import Decollated

    batch = {"image": torch.zeros(2, 1, 4, 4), "loss": torch.tensor(0.5), "loss_r": 0.3, "loss_i": 0.1,
             "loss_v": 0.1, "mask_fraction": 1.0}
    return Decollated(keys=None, detach=True)(batch)


def test_default_trainer_transform_reads_this_trainer():
    """MONAI's `--tracking mlflow` trainer transform gets the loss as a number from the decollated output."""
    default = ConfigParser({"t": DEFAULT_MLFLOW_SETTINGS["configs"]["trainer"]["output_transform"]})
    assert default.get_parsed_content("t")(_decollated_output()) == 0.5
    for name in NAMES:
        assert _train_parser(name).get("train#trainer#decollate") is True, name


def test_loss_terms_reads_both_layouts():
    from monai_galr.bundle import loss_terms

    keys = ("loss", "loss_r", "mask_fraction")
    expected = {"loss": 0.5, "loss_r": 0.3, "mask_fraction": 1.0}
    assert loss_terms(keys)(_decollated_output()) == expected
    assert loss_terms(keys)({"loss": torch.tensor(0.5), "loss_r": 0.3, "mask_fraction": 1.0}) == expected
    with pytest.raises(TypeError, match="list of output names"):
        loss_terms("loss")


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


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow-skinny, sqlalchemy and alembic are not installed")
def test_monai_default_tracking_mlflow_logs_the_loss(tmp_path, monkeypatch):
    """`--tracking mlflow` (MONAI's DEFAULT_MLFLOW_SETTINGS, nothing of ours): the store is the SQLite database
    <output_dir>/mlruns.db that MONAI's default tracking_uri names; the trainer's loss is read back per iteration."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = "rotated_mnist_so2"
    configs = _configs(name)
    root = tmp_path / "bundle"
    run("training", config_file=str(configs / "train.yaml"), meta_file=str(configs / "metadata.json"),
        logging_file=False, bundle_root=str(root), tracking="mlflow", max_epochs=1, val_interval=1, num_threads=1,
        **TINY[name](tmp_path))

    db = root / "eval" / "mlruns.db"
    assert db.is_file(), sorted(p.name for p in (root / "eval").iterdir())
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + str(db))
    experiment = client.get_experiment_by_name(DEFAULT_MLFLOW_SETTINGS["configs"]["experiment_name"])
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    train_runs = [r for r in runs if "train_loss" in r.data.metrics]
    assert len(train_runs) == 1, [sorted(r.data.metrics) for r in runs]
    history = client.get_metric_history(train_runs[0].info.run_id, "train_loss")
    assert len(history) == 2  # 32 digits in batches of 16: one value per iteration
    assert all(math.isfinite(m.value) and m.value > 0 for m in history)
    assert "val_psnr" in train_runs[0].data.metrics
