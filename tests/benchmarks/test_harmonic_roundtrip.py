"""benchmarks/harmonic_roundtrip.py: the fixed resampling's round trip on synthetic maps (exact where the geometry
holds the map, lossy where it cannot), its --geometry parsing, and its table on 4 MNIST test digits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("harmonic_roundtrip", REPO / "benchmarks" / "harmonic_roundtrip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ssim(spatial_dims):
    from monai_galr.bundle import additional_metrics

    return additional_metrics("val", spatial_dims)["val_ssim"].metric_fn


def test_parse_geometry():
    rt = _module()
    assert rt.parse_geometry("8:16") == {"radii": 8, "degree": 16, "max_radius": None, "angles": None}
    assert rt.parse_geometry("14:20:14.5:84") == {"radii": 14, "degree": 20, "max_radius": 14.5, "angles": 84}
    assert rt.parse_geometry("14:20:corners")["max_radius"] is None
    for bad in ("8", "8:16:1:2:3", "a:16", "8:16:far"):
        with pytest.raises(ValueError, match="--geometry"):
            rt.parse_geometry(bad)


@pytest.mark.parametrize("dims", [2, 3])
def test_constant_map_round_trips_exactly_inside_the_inscribed_sphere(dims):
    rt = _module()
    shape = (16, 16) if dims == 2 else (12, 12, 12)
    maps = torch.full((2, 1, *shape), 0.6)
    degree = 4 if dims == 2 else 2
    inscribed = min(shape) / 2.0
    (row,) = rt.round_trip_table(maps, [{"radii": 4, "degree": degree, "max_radius": inscribed, "angles": None}],
                                 _ssim(dims))
    assert row["psnr"] > 80.0  # the constant is mode / degree 0, held exactly
    assert row["max_radius"] == pytest.approx(inscribed)


def test_finer_rings_hold_more_of_a_textured_map():
    rt = _module()
    torch.manual_seed(0)
    maps = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 36, 36), 3, 1, 0)  # (2, 1, 34, 34) -> crop
    maps = maps[..., 1:33, 1:33]
    rows = rt.round_trip_table(
        maps, [{"radii": 4, "degree": 4, "max_radius": 16.0, "angles": None},
               {"radii": 16, "degree": 32, "max_radius": 16.0, "angles": 128}], _ssim(2))
    coarse, fine = rows
    assert fine["numbers_per_channel"] == 16 * 63 and coarse["numbers_per_channel"] == 4 * 7
    assert fine["psnr"] > coarse["psnr"] + 3.0
    assert coarse["psnr"] < 30.0  # a 4 x 7 description cannot hold 1,024 random pixels


def test_table_on_mnist_uses_the_bundle_geometry(capsys):
    rt = _module()
    bundle = REPO / "bundles" / "rotated_mnist_so2"
    assert rt.main(["--bundle", str(bundle), "--max_test", "4", "--geometry", "8:16:16:64"]) == 0
    explicit = capsys.readouterr().out
    assert rt.main(["--bundle", str(bundle), "--max_test", "4"]) == 0  # train.yaml: 8 rings, 16 modes, r 16, 64
    default = capsys.readouterr().out
    row = [line for line in default.splitlines() if line.startswith("| 8 | 16 |")]
    assert len(row) == 1 and "248 / 1,024 (0.24x)" in row[0]
    assert row[0] in explicit
    psnr = float(row[0].split("|")[-2].split("/")[0])
    assert 10.0 < psnr < 40.0
    with pytest.raises(SystemExit, match="--pool"):
        rt.main(["--bundle", str(bundle), "--max_test", "4", "--pool", "3"])
