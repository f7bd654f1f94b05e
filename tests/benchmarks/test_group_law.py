"""benchmarks/group_law.py: the table, its exact laws on a network that rotates nothing, and a grid action that
breaks them (tiny MNIST setup: 8 test digits, an 8-channel network, fresh weights)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "rotated_mnist_so2"
TINY = ["channels=[8, 8]", "strides=[2, 1]", "latent_channels=8", "num_threads=1"]


def _module():
    spec = importlib.util.spec_from_file_location("group_law", REPO / "benchmarks" / "group_law.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fresh_checkpoint(gl, path: Path, sets: list[str]) -> Path:
    torch.manual_seed(0)
    net = gl.bundle_parser(str(BUNDLE), [], gl.parse_overrides([[s] for s in sets])).get_parsed_content("network_def")
    torch.save({"model": net.state_dict()}, path)
    return path


def _run(gl, tmp_path: Path, sets: list[str], label: str, extra: list[str]) -> dict:
    ckpt = _fresh_checkpoint(gl, tmp_path / f"{label}.pt", sets)
    out = tmp_path / label
    argv = ["--bundle", str(BUNDLE), "--ckpt", str(ckpt), "--max_test", "8", "--label", label, "--out", str(out),
            *[x for s in sets for x in ("--set", s)], *extra]
    assert gl.main(argv) == 0
    res = json.loads((out / "group_law.json").read_text())
    res["md"] = (out / "group_law.md").read_text()
    return res


def _prediction_gaps(gl, sets: list[str], ckpt: Path) -> tuple[dict[str, float], float]:
    """Largest |prediction - counterpart's prediction| of each case on 4 test digits, and latent / image."""
    from monai_galr.analysis.utils import iterate_batches, prepare_network

    parser = gl.bundle_parser(str(BUNDLE), [], gl.parse_overrides([[s] for s in sets]))
    net = prepare_network(parser.get_parsed_content("network_def"), str(ckpt), "cpu")
    items = parser.get_parsed_content("test_items")[:4]
    batch = next(iterate_batches(items, parser.get_parsed_content("validate#preprocessing"), 4))
    preds, ratio = gl.group_law_batch(net, batch["x"], batch["target"], batch["rotation"])
    against = {k: a or "identity" for k, _, a in gl.CASES}
    against["one_shot"] = "identity"
    return {k: (preds[k][0] - preds[against[k]][0]).abs().max().item() for k in preds}, ratio


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_nothing_rotates_so_every_law_holds_exactly(tmp_path):
    gl = _module()
    sets = [*TINY, "action=grid", "partition=manual", "varying_fraction=0.0"]
    res = _run(gl, tmp_path, sets, "frozen", ["--timing", "inline", "--batch_size", "4", "--steps", "1",
                                                "--warmup", "1"])
    c = res["cases"]
    assert set(c) == {k for k, _, _ in gl.CASES} and res["images"] == 8
    for key in ("identity", "one_shot"):
        assert math.isfinite(c[key]["psnr"]) and math.isfinite(c[key]["ssim"])
    # no channel varies: Phi_R(z) = z, so every latent law is the identity, bit for bit
    for key in ("round_trip", "circle"):
        assert c[key]["psnr"] == c["identity"]["psnr"] and c[key]["gap_db"] == 0.0
    for n in gl.STEPS:
        assert c[f"steps_{n}"]["psnr"] == c["one_shot"]["psnr"] and c[f"steps_{n}"]["gap_db"] == 0.0
    assert math.isfinite(c["reencode"]["psnr"])
    assert res["latent_ratio"] == 2.0  # 8 channels on the 16 x 16 grid of a 1 x 32 x 32 image
    t = res["timing"]
    assert t["batch"] == 4 and t["method"]["wall_ms"] > 0 and t["plain"]["wall_ms"] > 0 and t["ratio"] > 0
    # the table: the header names every column, the one row fills them all
    lines = [ln for ln in res["md"].splitlines() if ln.startswith("|")]
    assert _cells(lines[0]) == list(gl.COLUMNS) and len(lines) == 3
    row = _cells(lines[2])
    assert len(row) == len(gl.COLUMNS) and row[0] == "frozen" and row[1] == "2.00x"
    assert "n/a" not in row and "not timed" not in row
    assert row[4].endswith("(+0.00)") and row[8].endswith("(+0.00)")


def test_grid_action_breaks_composition_and_rows_append(tmp_path):
    gl = _module()
    res = _run(gl, tmp_path, [*TINY, "partition=all", "action=grid"], "grid_all", ["--timing", "off"])
    c = res["cases"]
    # every resampling of the latent grid blurs: two half-rotations are not the rotation, 12 x 30 deg not I (a
    # fresh decoder renders nearly the same grey for any latent, so the PSNR gap is small but never exactly 0) ...
    for key in ("steps_2", "steps_12", "round_trip", "circle"):
        assert c[key]["gap_db"] != 0.0
    # ... and the rendered images differ well beyond float rounding
    diff, ratio = _prediction_gaps(gl, [*TINY, "action=grid", "partition=all"], tmp_path / "grid_all.pt")
    assert ratio == 2.0 and diff["steps_2"] > 1e-4 and diff["circle"] > 1e-4
    assert "not timed" in res["md"]
    table = tmp_path / "docs" / "group_law.md"
    for label in ("a", "b", "a"):  # a second "a" replaces the first
        gl.append_row(str(table), label, {**res, "label": label})
    lines = table.read_text().splitlines()
    rows = [ln for ln in lines if ln.startswith("|")]
    assert len(rows) == 4 and [_cells(r)[0] for r in rows[2:]] == ["b", "a"]
    assert sum(ln.startswith("- **a**:") for ln in lines) == 1 and sum(ln.startswith("- **b**:") for ln in lines) == 1
    other = tmp_path / "other.md"
    other.write_text("| x | y |\n|---|---|\n")
    with pytest.raises(ValueError, match="holds no group-law table"):
        gl.append_row(str(other), "a", res)


def test_rotation_roots_compose_back():
    gl = _module()
    from monai_galr.groups import random_rotation

    for d in (2, 3):
        r = random_rotation(16, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
        for n in (2, 6, 12):
            root, acc = gl.rotation_root(r, n), torch.eye(d, dtype=torch.float64).expand(16, d, d)
            for _ in range(n):
                acc = root @ acc
            assert torch.allclose(acc, r, atol=1e-10)
    turn = gl.fixed_axis_rotation(1, 3, math.pi / 6, dtype=torch.float64)
    assert torch.allclose(torch.linalg.matrix_power(turn[0], 12), torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert turn[0, 0, 0] == 1.0  # about the first array axis


@pytest.mark.parametrize(
    "argv, match",
    [(["--set", "partition"], "key=value or key value"), (["--max_test", "0"], "--max_test must be a positive"),
     (["--steps", "0"], "--steps must be >= 1")],
)
def test_bad_options_exit_before_loading(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        _module().main(["--bundle", str(BUNDLE), *argv])
    assert info.value.code == 2 and match in capsys.readouterr().err


def test_harmonic_action_keeps_the_laws(tmp_path):
    from monai_galr.networks.blocks.actions import ACTIONS

    if "harmonic" not in ACTIONS:
        pytest.skip("no harmonic action in this tree")
    gl = _module()
    res = _run(gl, tmp_path, [*TINY, "action=harmonic", "partition=all"], "harmonic_all", ["--timing", "off"])
    c = res["cases"]
    assert res["latent_ratio"] == 8 * 8 * 31 / 1024  # (L, rings, 2 * modes - 1) coefficients per 32 x 32 image
    # an exact representation: composition, inverse and the full turn hold to float rounding, even untrained
    for key in ("steps_2", "steps_6", "steps_12", "round_trip", "circle"):
        assert abs(c[key]["gap_db"]) < 0.01
    diff, _ = _prediction_gaps(gl, [*TINY, "action=harmonic", "partition=all"], tmp_path / "harmonic_all.pt")
    assert diff["one_shot"] > 1e-3  # the rotation does change the rendering ...
    assert max(diff[k] for k in ("steps_2", "steps_12", "round_trip", "circle")) < 1e-5  # ... the laws do not


@pytest.mark.slow
def test_timing_in_a_fresh_process(tmp_path):
    gl = _module()
    res = _run(gl, tmp_path, [*TINY, "action=grid"], "child", ["--batch_size", "4", "--steps", "1", "--warmup", "1"])
    t = res["timing"]
    assert t["batch"] == 4 and t["threads"] >= 1 and t["method"]["peak_mb"] > 0 and t["plain"]["peak_mb"] > 0
    assert t["memory"].startswith("peak RSS")  # the high-water mark is reset per kind of step where Linux allows
