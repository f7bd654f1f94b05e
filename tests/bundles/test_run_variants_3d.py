"""benchmarks/run_variants.py on the 3D bundles (tiny data): the studies are not 2D-only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_variants(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("run_variants", REPO / "benchmarks" / "run_variants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(argv)


def _sets(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", k, str(v).replace(" ", ""))]


def test_brain_tau_sweep_without_labels(tiny_bundle, tmp_path):
    tiny = tiny_bundle("brain_mri_so3")
    out = tmp_path / "tau"
    code = _run_variants(["--bundle", str(REPO / "bundles" / "brain_mri_so3"), "--study", "tau", "--taus", "0.3,0.7",
                          "--no_probe", "--angles", "uniform", "--out", str(out),
                          *_sets({**tiny.overrides, "max_epochs": 1})])
    assert code == 0
    for name in ("tau0.3", "tau0.7"):
        res = json.loads((out / name / "eval" / "metrics.json").read_text())  # brain writes metrics.json
        assert 0.0 < res["metrics"]["test_psnr"] < 60.0 and 0.0 <= res["mask_fraction"] <= 1.0
        assert not (out / name / "eval" / "probes.json").exists()
    sweep = json.loads((out / "analysis" / "sweep.json").read_text())
    assert sorted(r["tau"] for r in sweep["rows"]) == pytest.approx([0.3, 0.7])  # tau read from metrics.json
    assert sweep["figure"] is None and "2 needed" in sweep["note"]


def test_adrenal_variant_with_probe(tiny_bundle, tmp_path):
    tiny = tiny_bundle("adrenal_ct_so3")
    out = tmp_path / "variants"
    code = _run_variants(["--bundle", str(REPO / "bundles" / "adrenal_ct_so3"), "--variants", "all", "--probe",
                          "--angles", "uniform", "--out", str(out), *_sets({**tiny.overrides, "max_epochs": 1})])
    assert code == 0
    res = json.loads((out / "all" / "eval" / "metrics_uniform.json").read_text())
    assert res["partition"] == "all" and res["mask_fraction"] == 1.0
    probes = json.loads((out / "all" / "eval" / "probes.json").read_text())
    assert 0.0 <= probes["probes"]["z"]["accuracy"] <= 1.0 and probes["num_test"] == 4
    assert "| all | uniform |" in (out / "variants.md").read_text()
