"""Regression of the shipped weights: each bundle's ``models/model.pt`` reproduces its documented subset figures.

Each bundle's ``evaluating`` runner (``train.yaml`` + ``evaluate.yaml``, the fixed seeded rotations of the protocol)
runs on a small fixed subset of a test split (``tests/resources/shipped_weights_subset.json``: the overrides that
select it, the figures measured once and the command that measured them) with the shipped weights copied under
``tmp_path``.  The test fails when

- the rotated or identity PSNR moves more than 0.5 dB from the recorded figure (a changed network, loader, transform
  or metric), or falls under the bundle's absolute floor;
- the model does not beat every trivial prediction on the same batch by ``margin_db``: all zeros, the constant 0.5,
  each target's own mean (the best constant) and the unrotated input (a model that ignores the rotation).

``test_bounds_reject_trivial_outputs`` runs the same evaluation with the network's output replaced by zeros (a fake
network) and checks that these bounds reject it and every other trivial prediction (the bounds can fail).

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

from monai_galr.engines import GroupActionEvaluator

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "resources" / "shipped_weights_subset.json"
TOLERANCE_DB = 0.5
BUNDLES = ("rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3")

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.usefixtures("one_thread")]  # tests/bundles/conftest.py


def _reference(name: str) -> dict:
    return json.loads(REFERENCE.read_text())["bundles"][name]


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` PSNR with data range 1 (the protocol's: MONAI's ``PSNRMetric(max_val=1)`` per image)."""
    mse = ((pred.double() - target.double()) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse)


def trivial_predictions(image: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictions that need no model: all zeros, 0.5, each target's own mean, the unrotated input."""
    mean = target.flatten(1).mean(1).view(-1, *[1] * (target.ndim - 1)).expand_as(target)
    return {"zeros": torch.zeros_like(target), "half": torch.full_like(target, 0.5), "target_mean": mean.clone(),
            "input": image.clone()}


def trivial_psnr(image: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR of each trivial prediction on this batch."""
    return {k: float(psnr_per_image(p, target).mean()) for k, p in trivial_predictions(image, target).items()}


def check_bounds(psnr: float, image: torch.Tensor, target: torch.Tensor, margin_db: float, floor_db: float) -> None:
    """Raise ``AssertionError`` unless ``psnr`` beats every trivial prediction by ``margin_db`` and ``floor_db``."""
    assert math.isfinite(psnr), f"PSNR {psnr} is not finite"
    assert psnr >= floor_db, f"PSNR {psnr:.2f} dB under the absolute floor {floor_db} dB"
    for name, value in trivial_psnr(image, target).items():
        assert psnr >= value + margin_db, (
            f"PSNR {psnr:.2f} dB does not beat the trivial '{name}' prediction ({value:.2f} dB) by {margin_db} dB"
        )


def evaluate_shipped(name: str, root: Path, monkeypatch, replace: Callable | None = None) -> tuple[dict, dict]:
    """Run the bundle's ``evaluating`` runner on the reference subset; the metrics JSON and the batches seen.

    ``replace(image, target, pred) -> pred`` stands in for the network's output (a fake network) before the metrics.
    """
    ref = _reference(name)
    configs = REPO / "bundles" / name / "configs"
    (root / "models").mkdir(parents=True)
    shutil.copy(REPO / "bundles" / name / "models" / "model.pt", root / "models" / "model.pt")
    seen: dict[str, list[torch.Tensor]] = {"image": [], "label": [], "pred": [], "pred_identity": []}
    original = GroupActionEvaluator._iteration

    def spy(self, engine, batch):
        out = original(self, engine, batch)
        if replace is not None:
            out["pred"] = out["pred_identity"] = replace(out["image"], out["label"], out["pred"])
        for key in seen:
            seen[key].append(out[key].detach().float().cpu())
        return out

    monkeypatch.setattr(GroupActionEvaluator, "_iteration", spy)
    overrides = {k: (str(root / v[len("<tmp>/"):]) if isinstance(v, str) and v.startswith("<tmp>/") else v)
                 for k, v in ref["overrides"].items()}
    run(run_id="evaluating", config_file=[str(configs / "train.yaml"), str(configs / "evaluate.yaml")],
        meta_file=str(configs / "metadata.json"), logging_file=False, bundle_root=str(root),
        device="$torch.device('cpu')", **overrides)
    reports = [json.loads(p.read_text()) for p in sorted((root / "eval").glob("metrics*.json"))]
    reports = [r for r in reports if "test_psnr" in r.get("metrics", {})]
    assert len(reports) == 1, f"expected one metrics report under {root / 'eval'}, got {len(reports)}"
    return reports[0], {k: torch.cat(v) for k, v in seen.items()}




def _shipped(name: str) -> None:
    if not (REPO / "bundles" / name / "models" / "model.pt").is_file():
        pytest.skip(f"bundles/{name}/models/model.pt is not present")


@pytest.mark.parametrize("name", BUNDLES)
def test_shipped_weights_reproduce_subset_figures(name, tmp_path, monkeypatch):
    _shipped(name)
    ref = _reference(name)
    report, seen = evaluate_shipped(name, tmp_path, monkeypatch)
    m = report["metrics"]
    assert report["num_images"] == ref["num_images"] == seen["label"].shape[0]
    # the batches the spy saw are the ones the metrics were computed on
    assert float(psnr_per_image(seen["pred"], seen["label"]).mean()) == pytest.approx(m["test_psnr"], abs=1e-3)
    for key in ("test_psnr", "test_psnr_identity"):
        assert abs(m[key] - ref["metrics"][key]) <= TOLERANCE_DB, (
            f"{name} {key} {m[key]:.3f} dB, recorded {ref['metrics'][key]:.3f} dB (tolerance {TOLERANCE_DB} dB): "
            f"the shipped weights no longer reproduce their figure; command: {ref['command']}"
        )
    assert abs(m["test_ssim"] - ref["metrics"]["test_ssim"]) <= 0.01
    # the subset itself is unchanged (data, rotations, preprocessing): the trivial predictions score as recorded
    for key, value in trivial_psnr(seen["image"], seen["label"]).items():
        assert value == pytest.approx(ref["trivial_psnr"][key], abs=0.05), f"{name}: the subset changed ({key})"
    bounds = ref["bounds"]
    check_bounds(m["test_psnr"], seen["image"], seen["label"], bounds["margin_db"], bounds["floor_db"])
    # identity reconstruction: against the input itself (the trivial 'input' prediction is then perfect, so skip it)
    identity = float(psnr_per_image(seen["pred_identity"], seen["image"]).mean())
    assert identity >= bounds["floor_db"]
    for key, value in trivial_psnr(seen["image"], seen["image"]).items():
        if key != "input":
            assert identity >= value + bounds["margin_db"], (key, identity, value)


def test_bounds_reject_trivial_outputs(tmp_path, monkeypatch):
    """A network whose output is all zeros fails the bounds end to end; so do 0.5, the mean and the unrotated input.

    The all-zero output goes through the whole evaluation (metrics handlers, report); the other trivial outputs are
    checked on the same batches.  The old bound ``0 < PSNR < 100`` accepts every one of them.
    """
    name = "rotated_mnist_so2"  # the fastest bundle; the bounds are the same code for every bundle
    _shipped(name)
    bounds = _reference(name)["bounds"]
    report, seen = evaluate_shipped(name, tmp_path, monkeypatch, replace=lambda image, target, pred: pred * 0)
    zero_psnr = report["metrics"]["test_psnr"]
    trivial = trivial_psnr(seen["image"], seen["label"])
    assert zero_psnr == pytest.approx(trivial["zeros"], abs=1e-3)  # the fake output is what the report measured
    for fake, psnr in trivial.items():
        assert 0 < psnr < 100, (fake, psnr)  # the old bound accepts it ...
        with pytest.raises(AssertionError, match="floor"):  # ... the absolute floor does not
            check_bounds(psnr, seen["image"], seen["label"], bounds["margin_db"], bounds["floor_db"])
        with pytest.raises(AssertionError, match="does not beat the trivial"):  # nor the relative bound, without a floor
            check_bounds(psnr, seen["image"], seen["label"], bounds["margin_db"], floor_db=-math.inf)
