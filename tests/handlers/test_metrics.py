"""StructuralSimilarity (and MONAI's PSNR/RMSE handlers) on engine outputs shaped like the group-action evaluator."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import PeakSignalToNoiseRatio, RootMeanSquaredError, from_engine

from monai_galr.handlers import StructuralSimilarity

C1 = (0.01 * 1.0) ** 2  # SSIM luminance constant for data_range 1
# MONAI computes variances as E[x^2] - E[x]^2 in float32: ~1e-7 of cancellation against c2 = 9e-4
SSIM_REL = 1e-3


def _evaluator(batches: list[dict[str, torch.Tensor]]) -> Engine:
    """An engine that returns ``batches[i]`` (an evaluator-like output dict) at iteration ``i``."""

    def step(engine, index):
        return batches[index]

    return Engine(step)


def _run(batches: list[dict[str, torch.Tensor]], **handlers) -> Engine:
    engine = _evaluator(batches)
    for name, handler in handlers.items():
        handler.attach(engine, name)
    engine.run(range(len(batches)), max_epochs=1)
    return engine


def _smooth_images(batch: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, *(s // 4 for s in shape), generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(x, size=shape, mode=mode, align_corners=False)


@pytest.mark.parametrize("shape, win", [((28, 28), 7), ((32, 32), 11), ((16, 16, 16), 7), ((12, 16, 20), 5)])
def test_identical_images_give_one(shape, win):
    x = _smooth_images(3, shape)
    ssim = StructuralSimilarity(spatial_dims=len(shape), win_size=win, output_transform=from_engine(["pred", "label"]))
    engine = _run([{"image": x, "label": x, "pred": x.clone()}], ssim=ssim)
    assert engine.state.metrics["ssim"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("a, b", [(0.5, 0.6), (0.2, 0.9), (0.0, 0.3)])
def test_constant_images_match_the_closed_form(a, b):
    # constant images: the contrast-structure term is c2 / c2 = 1, SSIM = (2ab + c1) / (a^2 + b^2 + c1)
    pred, label = torch.full((2, 1, 16, 16), a), torch.full((2, 1, 16, 16), b)
    ssim = StructuralSimilarity(spatial_dims=2, win_size=7, output_transform=from_engine(["pred", "label"]))
    engine = _run([{"pred": pred, "label": label}], ssim=ssim)
    expect = (2 * a * b + C1) / (a * a + b * b + C1)
    assert engine.state.metrics["ssim"] == pytest.approx(expect, rel=SSIM_REL)


def test_psnr_rmse_and_ssim_of_a_known_perturbation():
    # a constant offset of 0.1: MSE 0.01, RMSE 0.1, PSNR 20 dB; SSIM keeps the structure and loses luminance only
    label = _smooth_images(4, (32, 32), seed=1) * 0.8
    pred = label + 0.1
    batches = [{"image": label, "label": label, "pred": pred, "pred_identity": label}]
    ot = from_engine(["pred", "label"])
    engine = _run(
        batches,
        psnr=PeakSignalToNoiseRatio(max_val=1.0, output_transform=ot),
        rmse=RootMeanSquaredError(output_transform=ot),
        ssim=StructuralSimilarity(spatial_dims=2, output_transform=ot),
        ssim_identity=StructuralSimilarity(spatial_dims=2, output_transform=from_engine(["pred_identity", "image"])),
    )
    m = engine.state.metrics
    assert m["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert m["rmse"] == pytest.approx(0.1, abs=1e-5)
    assert 0.9 < m["ssim"] < 1.0
    assert m["ssim_identity"] == pytest.approx(1.0, abs=1e-5)


def test_noise_lowers_ssim_monotonically():
    label = _smooth_images(2, (32, 32), seed=2)
    noise = torch.randn(label.shape, generator=torch.Generator().manual_seed(3))
    values = []
    for sigma in (0.0, 0.05, 0.2):
        ssim = StructuralSimilarity(spatial_dims=2, output_transform=from_engine(["pred", "label"]))
        engine = _run([{"pred": label + sigma * noise, "label": label}], ssim=ssim)
        values.append(engine.state.metrics["ssim"])
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert values[0] > values[1] > values[2]


def test_averages_over_iterations_and_saves_details():
    a, b = 0.5, 0.6
    same = {"pred": torch.full((2, 1, 16, 16), a), "label": torch.full((2, 1, 16, 16), a)}
    diff = {"pred": torch.full((3, 1, 16, 16), a), "label": torch.full((3, 1, 16, 16), b)}
    ssim = StructuralSimilarity(spatial_dims=2, win_size=7, output_transform=from_engine(["pred", "label"]))
    engine = _run([same, diff], ssim=ssim)
    s_diff = (2 * a * b + C1) / (a * a + b * b + C1)
    # mean over the 5 images of the epoch, not over the 2 iterations
    assert engine.state.metrics["ssim"] == pytest.approx((2 * 1.0 + 3 * s_diff) / 5, rel=SSIM_REL)
    details = engine.state.metric_details["ssim"]
    assert details.shape == (5, 1)


def test_reduction_none_keeps_per_image_values():
    pred = torch.stack([torch.full((1, 16, 16), 0.5), torch.full((1, 16, 16), 0.2)])
    label = torch.full((2, 1, 16, 16), 0.5)
    ssim = StructuralSimilarity(
        spatial_dims=2, win_size=7, reduction="none", output_transform=from_engine(["pred", "label"])
    )
    engine = _run([{"pred": pred, "label": label}], ssim=ssim)
    values = torch.as_tensor(engine.state.metrics["ssim"]).reshape(-1)
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert values[1] == pytest.approx((2 * 0.1 + C1) / (0.25 + 0.04 + C1), rel=SSIM_REL)


def test_uniform_kernel_and_per_dim_window():
    x = _smooth_images(1, (12, 16, 20), seed=4)
    ssim = StructuralSimilarity(
        spatial_dims=3, kernel_type="uniform", win_size=(3, 5, 7), output_transform=from_engine(["pred", "label"])
    )
    engine = _run([{"pred": x, "label": x}], ssim=ssim)
    assert engine.state.metrics["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_wrong_ndim_for_spatial_dims():
    ssim = StructuralSimilarity(spatial_dims=3, win_size=3, output_transform=from_engine(["pred", "label"]))
    with pytest.raises(ValueError, match="5 dimensions"):
        _run([{"pred": torch.zeros(1, 1, 8, 8), "label": torch.zeros(1, 1, 8, 8)}], ssim=ssim)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"spatial_dims": 1}, ValueError, "spatial_dims must be 2 or 3, got 1"),
        ({"spatial_dims": True}, ValueError, "spatial_dims must be 2 or 3"),
        ({"spatial_dims": 2, "data_range": 0.0}, ValueError, "data_range must be a positive number, got 0.0"),
        ({"spatial_dims": 2, "data_range": "1"}, TypeError, "data_range must be a positive number, got str"),
        ({"spatial_dims": 2, "win_size": 4}, ValueError, "win_size must be a positive odd int, got 4"),
        ({"spatial_dims": 2, "win_size": 0}, ValueError, "win_size must be a positive odd int"),
        ({"spatial_dims": 2, "win_size": (7, 7, 7)}, ValueError, r"win_size must be an int or 2 ints"),
        ({"spatial_dims": 2, "win_size": 7.0}, TypeError, "win_size must hold ints, got float"),
        ({"spatial_dims": 2, "kernel_type": "box"}, ValueError, "box"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        StructuralSimilarity(**kwargs)


def test_psnr_of_identical_images_is_infinite():
    # documents MONAI's behaviour the evaluation must handle: identical images have infinite PSNR
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    psnr = PeakSignalToNoiseRatio(max_val=1.0, output_transform=from_engine(["pred", "label"]))
    engine = _run([{"pred": x, "label": x}], psnr=psnr)
    assert math.isinf(engine.state.metrics["psnr"])
