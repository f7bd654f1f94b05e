"""benchmarks/mask_switch.py: the per-channel switch cost and per-state logit gradients (tiny MNIST setup: 8 test
digits, an 8-channel network with fresh weights and spread logits)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "rotated_mnist_so2"
TINY = ["channels=[8, 8]", "strides=[2, 1]", "latent_channels=8", "num_threads=1", "alpha_init_std=1.0"]


def _module():
    spec = importlib.util.spec_from_file_location("mask_switch", REPO / "benchmarks" / "mask_switch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _checkpoint(ms, path: Path, sets: list[str]) -> Path:
    gl = ms._group_law()
    torch.manual_seed(0)
    net = gl.bundle_parser(str(BUNDLE), [], gl.parse_overrides([[s] for s in sets])).get_parsed_content("network_def")
    torch.save({"model": net.state_dict()}, path)
    return path


def test_switch_rows_and_two_sided_gradients(tmp_path, capsys):
    ms = _module()
    ckpt = _checkpoint(ms, tmp_path / "net.pt", TINY)
    out = tmp_path / "switch.md"
    argv = ["--bundle", str(BUNDLE), "--ckpt", str(ckpt), "--max_test", "8", "--grad_batches", "1",
            "--out", str(out), *[x for s in TINY for x in ("--set", s)]]
    assert ms.main(argv) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 8

    # the same table from the API, to check its numbers
    gl = ms._group_law()
    setup = gl.load_setup(gl.build_arg_parser().parse_args(
        ["--bundle", str(BUNDLE), "--ckpt", str(ckpt), "--max_test", "8", *[x for s in TINY for x in ("--set", s)]]))
    net = setup["net"]
    from monai_galr.analysis.utils import iterate_batches

    batches = list(iterate_batches(setup["items"], setup["transform"], setup["eval_batch_size"], "cpu"))
    alpha0 = net.ald.alpha.detach().clone()
    assert 0 < net.ald.hard_mask().sum() < 8  # spread logits: both states present
    table = ms.switch_table(net, setup["parser"].get_parsed_content("loss"), batches, 1)
    assert torch.equal(net.ald.alpha.detach(), alpha0)  # restored exactly
    assert [r["varying"] for r in table] == [bool(v) for v in net.ald.hard_mask()]
    # the switch column, recomputed by hand for two channels: the logit moved across the threshold, PSNR re-read
    from monai.metrics import PSNRMetric

    def psnr() -> float:
        with torch.no_grad():
            return torch.cat([PSNRMetric(max_val=1.0)(y_pred=net(b["x"], b["rotation"]), y=b["target"]).reshape(-1)
                              for b in batches]).mean().item()

    base = psnr()
    for c in (0, 7):
        with torch.no_grad():
            net.ald.alpha[c] = net.ald.threshold + (-1e-3 if table[c]["varying"] else 1e-3)
        assert bool(net.ald.hard_mask()[c]) != table[c]["varying"]
        assert psnr() - base == pytest.approx(table[c]["switch_db"], abs=1e-5)
        with torch.no_grad():
            net.ald.alpha.copy_(alpha0)
    assert any(abs(r["switch_db"]) > 1e-5 for r in table)
    for r in table:
        # two-sided latent terms: loss_i pulls every logit to "varying", loss_v to "invariant", by the channel's
        # own errors, which do not depend on its state
        for side in ("var", "inv"):
            assert r[side]["loss_i"] <= 0 <= r[side]["loss_v"]
            assert r[side]["total"] == pytest.approx(sum(r[side][k] for k in ms.TERMS))
        assert r["var"]["loss_i"] == pytest.approx(r["inv"]["loss_i"], rel=1e-4, abs=1e-12)
        assert r["var"]["loss_v"] == pytest.approx(r["inv"]["loss_v"], rel=1e-4, abs=1e-12)


def test_fixed_partition_has_no_logits(tmp_path):
    ms = _module()
    sets = [*TINY, "partition=manual"]
    ckpt = _checkpoint(ms, tmp_path / "manual.pt", sets)
    with pytest.raises(ValueError, match="partition is 'manual'"):
        ms.main(["--bundle", str(BUNDLE), "--ckpt", str(ckpt), "--max_test", "4",
                 *[x for s in sets for x in ("--set", s)]])


def test_bad_grad_batches_exit(capsys):
    with pytest.raises(SystemExit):
        _module().main(["--bundle", str(BUNDLE), "--grad_batches", "0"])
    assert "--grad_batches must be >= 1, got 0" in capsys.readouterr().err
