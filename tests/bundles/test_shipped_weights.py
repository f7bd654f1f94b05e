"""Regression of the shipped weights: each bundle's ``models/model.pt`` reproduces its documented subset figures.

Each bundle's ``evaluating`` runner (``train.yaml`` + ``evaluate.yaml``, the fixed seeded rotations of the protocol;
for an overlay's own shipped weights, e.g. ``rotated_mnist_so2:blocked``, ``train.yaml`` + ``blocked.yaml`` +
``evaluate.yaml`` on ``models/blocked/model.pt``) runs on a small fixed subset of a test split
(``tests/resources/shipped_weights_subset.json``: the overrides that select it, the figures measured once and the
command that measured them) with the shipped weights copied under ``tmp_path``.  The test fails when

- the rotated or identity PSNR moves more than 0.5 dB from the recorded figure (a changed network, loader, transform
  or metric), or falls under the bundle's absolute floor;
- the model does not beat every trivial prediction on the same batch by ``margin_db``: all zeros, the constant 0.5,
  each target's own mean (the best constant) and the unrotated input (a model that ignores the rotation).

``test_bounds_reject_trivial_outputs`` runs the same evaluation with the network's output replaced by zeros (a fake
network) and checks that these bounds reject it and every other trivial prediction (the bounds can fail).

The trivial predictions, their PSNR and the bounds are the ``baselines`` fixture (``tests/bundles/conftest.py``),
shared with the end-to-end bundle tests.

Recompute a figure (after a deliberate change, say why in the commit) with the ``command`` of its JSON entry.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from monai.bundle import run


REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "resources" / "shipped_weights_subset.json"
TOLERANCE_DB = 0.5
# <bundle> or <bundle>:<overlay> (the overlay's config file and its own weights, see _case)
BUNDLES = ("rotated_mnist_so2", "rotated_mnist_so2:blocked", "adrenal_ct_so3", "brain_mri_so3")

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.usefixtures("one_thread")]  # tests/bundles/conftest.py


def _reference(name: str) -> dict:
    return json.loads(REFERENCE.read_text())["bundles"][name]


def _case(name: str) -> tuple[str, list[str], str]:
    """The bundle, its config files and the weights (relative to the bundle) of a reference entry ``name``."""
    bundle, _, overlay = name.partition(":")
    overlays = [f"{overlay}.yaml"] if overlay else []
    model = f"models/{overlay}/model.pt" if overlay else "models/model.pt"
    return bundle, ["train.yaml", *overlays, "evaluate.yaml"], model


def evaluate_shipped(name: str, root: Path, monkeypatch, baselines,
                     replace: Callable | None = None) -> tuple[dict, dict]:
    """Run the bundle's ``evaluating`` runner on the reference subset; the metrics JSON and the batches seen.

    ``replace(image, target, pred) -> pred`` stands in for the network's output (a fake network) before the metrics.
    """
    ref = _reference(name)
    bundle, config_files, model = _case(name)
    configs = REPO / "bundles" / bundle / "configs"
    (root / model).parent.mkdir(parents=True)
    shutil.copy(REPO / "bundles" / bundle / model, root / model)
    seen = baselines.record(monkeypatch, replace)  # tests/bundles/conftest.py
    overrides = {k: (str(root / v[len("<tmp>/"):]) if isinstance(v, str) and v.startswith("<tmp>/") else v)
                 for k, v in ref["overrides"].items()}
    run(run_id="evaluating", config_file=[str(configs / f) for f in config_files],
        meta_file=str(configs / "metadata.json"), logging_file=False, bundle_root=str(root),
        device="$torch.device('cpu')", **overrides)
    reports = [json.loads(p.read_text()) for p in sorted((root / "eval").rglob("metrics*.json"))]
    reports = [r for r in reports if "test_psnr" in r.get("metrics", {})]
    assert len(reports) == 1, f"expected one metrics report under {root / 'eval'}, got {len(reports)}"
    return reports[0], {k: torch.cat(v) for k, v in seen.items()}




def _shipped(name: str) -> None:
    bundle, _, model = _case(name)
    if not (REPO / "bundles" / bundle / model).is_file():
        pytest.skip(f"bundles/{bundle}/{model} is not present")


@pytest.mark.parametrize("name", BUNDLES)
def test_shipped_weights_reproduce_subset_figures(name, tmp_path, monkeypatch, baselines):
    _shipped(name)
    ref = _reference(name)
    report, seen = evaluate_shipped(name, tmp_path, monkeypatch, baselines)
    m = report["metrics"]
    assert report["num_images"] == ref["num_images"] == seen["label"].shape[0]
    # the batches the spy saw are the ones the metrics were computed on
    measured = float(baselines.psnr_per_image(seen["pred"], seen["label"]).mean())
    assert measured == pytest.approx(m["test_psnr"], abs=1e-3)
    for key in ("test_psnr", "test_psnr_identity"):
        assert abs(m[key] - ref["metrics"][key]) <= TOLERANCE_DB, (
            f"{name} {key} {m[key]:.3f} dB, recorded {ref['metrics'][key]:.3f} dB (tolerance {TOLERANCE_DB} dB): "
            f"the shipped weights no longer reproduce their figure; command: {ref['command']}"
        )
    assert abs(m["test_ssim"] - ref["metrics"]["test_ssim"]) <= 0.01
    # the subset itself is unchanged (data, rotations, preprocessing): the trivial predictions score as recorded
    for key, value in baselines.trivial_psnr(seen["image"], seen["label"]).items():
        assert value == pytest.approx(ref["trivial_psnr"][key], abs=0.05), f"{name}: the subset changed ({key})"
    bounds = ref["bounds"]
    baselines.check_bounds(m["test_psnr"], seen["image"], seen["label"], bounds["margin_db"], bounds["floor_db"])
    # identity reconstruction: against the input itself (the trivial 'input' prediction is then perfect, so skip it)
    identity = float(baselines.psnr_per_image(seen["pred_identity"], seen["image"]).mean())
    assert identity >= bounds["floor_db"]
    for key, value in baselines.trivial_psnr(seen["image"], seen["image"]).items():
        if key != "input":
            assert identity >= value + bounds["margin_db"], (key, identity, value)


def test_bounds_reject_trivial_outputs(tmp_path, monkeypatch, baselines):
    """A network whose output is all zeros fails the bounds end to end; so do 0.5, the mean and the unrotated input.

    The all-zero output goes through the whole evaluation (metrics handlers, report); the other trivial outputs are
    checked on the same batches.  The old bound ``0 < PSNR < 100`` accepts every one of them.
    """
    name = "rotated_mnist_so2"  # the fastest bundle; the bounds are the same code for every bundle
    _shipped(name)
    bounds = _reference(name)["bounds"]
    report, seen = evaluate_shipped(name, tmp_path, monkeypatch, baselines,
                                    replace=lambda image, target, pred: pred * 0)
    zero_psnr = report["metrics"]["test_psnr"]
    trivial = baselines.trivial_psnr(seen["image"], seen["label"])
    assert zero_psnr == pytest.approx(trivial["zeros"], abs=1e-3)  # the fake output is what the report measured
    for fake, psnr in trivial.items():
        assert 0 < psnr < 100, (fake, psnr)  # the old bound accepts it ...
        with pytest.raises(AssertionError, match="floor"):  # ... the absolute floor does not
            baselines.check_bounds(psnr, seen["image"], seen["label"], bounds["margin_db"], bounds["floor_db"])
        with pytest.raises(AssertionError, match="does not beat the trivial"):  # nor the relative bound, without a floor
            baselines.check_bounds(psnr, seen["image"], seen["label"], bounds["margin_db"], floor_db=-math.inf)
