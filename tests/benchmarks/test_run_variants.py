"""benchmarks/run_variants.py: the study definitions, their errors, and one tiny tau sweep end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "rotated_mnist_so2"


def _module():
    spec = importlib.util.spec_from_file_location("run_variants", REPO / "benchmarks" / "run_variants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_studies_override_what_they_name():
    rv = _module()
    assert rv.STUDIES["ablation"]["inv_only"][-2:] == ["--lambda_v", "0.0"]
    assert rv.STUDIES["ablation"]["const_only"][-2:] == ["--lambda_i", "0.0"]
    assert rv.tau_variants([0.1, 0.75]) == {
        "tau0.1": ["--partition", "learned", "--tau", "0.1"],
        "tau0.75": ["--partition", "learned", "--tau", "0.75"],
    }


def test_tau_list_comes_from_the_config():
    rv = _module()
    assert rv.config_taus(str(BUNDLE), []) == [0.1, 0.3, 0.5, 0.6, 0.7, 0.9]


@pytest.mark.parametrize("taus, match", [([], "tau list is empty"), ([0.5, 1.0], r"in \(0, 1\), got \[1.0\]")])
def test_bad_tau_lists_are_refused(taus, match):
    with pytest.raises(ValueError, match=match):
        _module().tau_variants(taus)


def test_empty_tau_option_exits_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _module().main(["--bundle", str(BUNDLE), "--study", "tau", "--taus", ",", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "tau list is empty" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written that could look like a finished study


def test_tiny_tau_sweep_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    tiny = ["--set", "max_train", "64", "--set", "max_val", "16", "--set", "max_test", "32", "--set", "max_epochs",
            "1", "--set", "val_interval", "1", "--set", "batch_size", "32", "--set", "num_threads", "1", "--set", "channels", "[8, 8]",
            "--set", "latent_channels", "8"]
    code = _module().main(["--bundle", str(BUNDLE), "--study", "tau", "--taus", "0.3,0.7", "--angles", "uniform",
                           "--out", str(out), *tiny])
    assert code == 0
    for name, tau in (("tau0.3", 0.3), ("tau0.7", 0.7)):
        probes = json.loads((out / name / "eval" / "probes.json").read_text())
        assert probes["tau"] == pytest.approx(tau)
        metrics = json.loads((out / name / "eval" / "metrics_uniform.json").read_text())
        assert 5.0 < metrics["metrics"]["test_psnr"] < 60.0
    sweep = json.loads((out / "analysis" / "sweep.json").read_text())
    assert sorted(r["tau"] for r in sweep["rows"]) == pytest.approx([0.3, 0.7])
    assert sweep["figure"] == "tau_sweep.png" and (out / "analysis" / "tau_sweep.png").stat().st_size > 1000
    table = (out / "variants.md").read_text()
    assert "| tau0.3 | uniform |" in table and "| tau0.7 | uniform |" in table
