"""MetricsReport and write_json_atomic: valid JSON with the PSNR ratio and mask statistics, written atomically."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from ignite.engine import Engine, Events

from monai_galr.handlers import MetricsReport, write_json_atomic
from monai_galr.networks import GroupActionAutoEncoder

METRICS = {"test_psnr": 20.0, "test_psnr_identity": 25.0, "test_ssim": 0.8, "test_rmse": 0.1}


def _engine(metrics: dict) -> Engine:
    engine = Engine(lambda e, b: None)

    @engine.on(Events.STARTED)
    def _set(e):
        e.state.metrics.update(metrics)

    return engine


def test_report_writes_json_with_ratio_and_mask_fraction(tmp_path, caplog):
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4,), strides=(1,), latent_channels=8, partition="manual",
                                 varying_fraction=0.25)
    report = MetricsReport(str(tmp_path / "eval"), network=net, protocol="seeded test", filename="m.json",
                           name="report_test")
    engine = _engine(METRICS)
    report.attach(engine)
    with caplog.at_level(logging.INFO, logger="report_test"):
        engine.run([0, 1], max_epochs=1)
    files = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert files == ["m.json"]  # no temporary file left behind
    data = json.loads((tmp_path / "eval" / "m.json").read_text())
    assert data["metrics"] == METRICS
    assert data["psnr_ratio"] == pytest.approx(0.8)
    assert data["mask_fraction"] == 0.25
    assert data["mask_varying_channels"] == 2 and data["latent_channels"] == 8
    assert data["partition"] == "manual" and data["protocol"] == "seeded test"
    assert data == report.result
    assert "| rotated | 20.0000 | 0.8000 | 0.1000 |" in caplog.text
    assert "PSNR ratio 0.800" in caplog.text


def test_report_without_identity_or_network_has_no_ratio(tmp_path):
    report = MetricsReport(str(tmp_path), prefix="val")
    engine = _engine({"val_psnr": 10.0, "note": "text"})
    report.attach(engine)
    engine.run([0], max_epochs=1)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert "psnr_ratio" not in data and "mask_fraction" not in data
    assert data["metrics"] == {"val_psnr": 10.0}  # non-numeric entries are dropped


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic({"a": 1}, str(path))
    write_json_atomic({"a": 2}, str(path))
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_write_json_atomic_failure_keeps_old_file(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic({"a": 1}, str(path))
    with pytest.raises(TypeError):
        write_json_atomic({"a": torch.zeros(1)}, str(path))
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
