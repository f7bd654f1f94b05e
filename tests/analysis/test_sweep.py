"""Threshold sweep / variant tables from result JSONs laid out like benchmarks/run_variants.py's."""

from __future__ import annotations

import json

import pytest

from monai_galr.analysis import collect_variant_results, run_sweep, variant_table
from monai_galr.analysis.sweep import main


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _variant(root, name, tau, frac, psnr, acc_v, acc_z, probes_root=None):
    _write(root / name / "eval" / "metrics_uniform.json", {
        "metrics": {"test_psnr": psnr, "test_ssim": 0.9, "test_rmse": 0.02, "test_psnr_identity": psnr - 1},
        "psnr_ratio": psnr / (psnr - 1), "mask_fraction": frac, "partition": "learned", "protocol": "test split",
    })
    if acc_v is not None:
        _write((probes_root or root) / name / "eval" / "probes.json", {
            "tau": tau, "mask_fraction": frac, "protocol": "logistic regression",
            "probes": {"z": {"accuracy": acc_z}, "z_v": {"accuracy": acc_v}, "z_i": {"accuracy": None}},
        })


def test_sweep_table_and_figure(tmp_path):
    root = tmp_path / "runs"
    _variant(root, "tau_0.7", 0.7, 0.25, 30.0, 0.6, 0.8)
    _variant(root, "tau_0.3", 0.3, 1.0, 31.0, 0.8, 0.8)
    _variant(root, "no_probe", None, 0.5, 29.0, None, None)
    (root / "empty").mkdir()
    rows = collect_variant_results(str(root))
    assert [r["variant"] for r in rows] == ["tau_0.3", "tau_0.7", "no_probe"]
    out = run_sweep(str(root), str(tmp_path / "out"))
    assert out["figure"] == "tau_sweep.png"
    png = tmp_path / "out" / "tau_sweep.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
    md = (tmp_path / "out" / "variants_analysis.md").read_text()
    assert "| tau_0.3 | 0.30 | 31.00 |" in md and "| no_probe | n/a |" in md and "Protocol:" in md
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert saved["rows"][1]["probe_z_v"] == 0.6 and saved["rows"][0]["probe_z_i"] is None


def test_sweep_separate_probes_root_and_cli(tmp_path, capsys):
    root, proot = tmp_path / "runs", tmp_path / "probes"
    _variant(root, "learned", 0.5, 0.5, 30.0, 0.7, 0.75, probes_root=proot)
    assert main(["--root", str(root), "--probes_root", str(proot), "--out", str(tmp_path / "o")]) == 0
    assert "| learned | 0.50 |" in capsys.readouterr().out
    assert not (tmp_path / "o" / "tau_sweep.png").exists()  # one tau: no sweep to plot
    assert "1 distinct tau" in json.loads((tmp_path / "o" / "sweep.json").read_text())["note"]


def test_sweep_without_probes_has_table_only(tmp_path):
    _variant(tmp_path / "r", "all", None, 1.0, 30.0, None, None)
    out = run_sweep(str(tmp_path / "r"), str(tmp_path / "o"))
    assert out["figure"] is None and not (tmp_path / "o" / "tau_sweep.png").exists()
    assert "Probes: n/a" in variant_table(out["rows"])


def test_sweep_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="root must be a folder"):
        collect_variant_results(str(tmp_path / "missing"))
    (tmp_path / "r" / "v").mkdir(parents=True)
    with pytest.raises(ValueError, match="no <variant>/eval"):
        collect_variant_results(str(tmp_path / "r"))
    _write(tmp_path / "r" / "v" / "eval" / "metrics_uniform.json", {})
    (tmp_path / "r" / "v" / "eval" / "probes.json").write_text("{not json")
    with pytest.raises(ValueError, match="probes.json.*not valid JSON"):
        collect_variant_results(str(tmp_path / "r"))


def test_sweep_tau_selection_and_bad_tau_lists(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "out"
    _variant(root, "tau0.3", 0.3, 1.0, 31.0, 0.8, 0.8)
    _variant(root, "tau0.7", 0.7, 0.25, 30.0, 0.6, 0.8)
    _variant(root, "tau0.9", 0.9, 0.0, 29.0, 0.5, 0.7)
    res = run_sweep(str(root), str(out), taus=[0.3, 0.7, 0.5])
    assert [r["variant"] for r in res["rows"]] == ["tau0.3", "tau0.7"] and res["missing_taus"] == [0.5]
    assert res["figure"] == "tau_sweep.png" and "| tau0.9 |" not in (out / "variants_analysis.md").read_text()
    before = sorted(p.name for p in out.iterdir())
    for bad, msg in (([], "taus is empty"), ([0.5, 1.5], r"in \(0, 1\), got \[1.5\]"), ("0.5", "must be a list")):
        with pytest.raises(ValueError, match=msg):
            run_sweep(str(root), str(tmp_path / "bad"), taus=bad)
    with pytest.raises(ValueError, match=r"no variant under .* at any of them .*\[0.3, 0.7, 0.9\]"):
        run_sweep(str(root), str(tmp_path / "bad"), taus=[0.1])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="taus is empty"):
        main(["--root", str(root), "--out", str(out), "--taus", ","])
    assert sorted(p.name for p in out.iterdir()) == before  # the failed runs left the earlier results alone
    assert not list(out.glob(".tmp_*"))


def test_sweep_reads_metrics_json_of_single_protocol_bundles(tmp_path):
    # brain_mri_so3 writes eval/metrics.json (one angle protocol) instead of eval/metrics_<angles>.json
    _write(tmp_path / "r" / "learned" / "eval" / "metrics.json", {
        "metrics": {"test_psnr": 28.5}, "mask_fraction": 0.5, "partition": "learned", "protocol": "brain test"})
    rows = collect_variant_results(str(tmp_path / "r"))
    assert rows[0]["psnr"] == 28.5 and rows[0]["protocol"] == "brain test"
