"""benchmarks/step_breakdown.py at a tiny size: the table names every part and the ratio is its own arithmetic."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("step_breakdown", REPO / "benchmarks" / "step_breakdown.py")
step_breakdown = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(step_breakdown)

TINY = ["spatial_size=[16, 16, 16]", "channels=[4, 8]", "strides=[2, 1]", "latent_channels=4", "harmonic_radii=3",
        "harmonic_lmax=2"]


@pytest.mark.parametrize("action", ["harmonic", "grid"])
def test_tiny_adrenal_table(capsys, action):
    rc = step_breakdown.main(["--bundle", str(REPO / "bundles" / "adrenal_ct_so3"), "--batch_size", "2",
                              "--repeats", "1", "--num_threads", "1", "--set", *TINY, f"action={action}"])
    assert rc == 0
    out = capsys.readouterr().out
    ms = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^\| ([^|]+) \| ([0-9.]+) \|$", out, re.M)}
    assert len(ms) == 5 and all(v > 0 for v in ms.values()), out
    total, plain, ratio = re.search(r"\| ([0-9.]+) / ([0-9.]+) = ([0-9.]+)x \|", out).groups()
    method = ms["method forward + backward, given T_R x"] + ms["rotate_image of the batch (T_R x)"]
    assert float(total) == pytest.approx(method, abs=0.11)
    assert float(plain) == ms["plain autoencoder step (forward + backward)"]
    t, q = float(total), float(plain)  # printed to 0.1 ms; the ratio is of the unrounded times
    assert (t - 0.05) / (q + 0.05) - 0.005 <= float(ratio) <= (t + 0.05) / (q - 0.05) + 0.005
    assert "batch 2, spatial size [16, 16, 16]" in out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        step_breakdown.main(["--bundle", str(REPO / "bundles" / "no_such_bundle")])
    with pytest.raises(SystemExit):
        step_breakdown.main(["--bundle", str(REPO / "bundles" / "adrenal_ct_so3"), "--repeats", "0"])
    with pytest.raises(SystemExit):
        step_breakdown.main(["--bundle", str(REPO / "bundles" / "adrenal_ct_so3"), "--set", "no_equals_sign"])
