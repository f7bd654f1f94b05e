"""The ceiling that a harmonic latent's fixed resampling puts on a bundle's images, with no network in between.

For one bundle (``train.yaml`` + overlays + ``evaluate.yaml``, as ``benchmarks/group_law.py`` reads it) the script
takes the first ``--max_test`` images of its test split through ``validate#preprocessing``, average-pools each to
the size of the network's feature map (the image size over the product of ``strides``; ``--pool`` sets another
factor), and for every geometry given with ``--geometry`` samples that map on the rings / shells and renders it back
(``HarmonicAnalysis`` then ``HarmonicSynthesis`` of ``monai_galr.networks.blocks``, in float64): the PSNR / SSIM of
the round trip against the pooled map.  This is what a network whose encoder passes the pooled image on, one
channel, would lose to the resampling alone; a trained encoder can spread detail over channels, so the table bounds
the *geometry*, not the model.  Numbers per channel (radii x modes) over the map's voxels are printed beside it.

``--geometry RADII:DEGREE[:MAX_RADIUS[:ANGLES]]`` (repeatable): rings / shells, ``harmonic_modes`` (2D) or
``harmonic_lmax`` (3D), the outer radius in latent voxels (``corners`` or omitted: the half-diagonal of the grid,
the network's default) and the angular resolution (omitted: the block's default).  Without ``--geometry`` the
bundle's own ``harmonic_*`` entries (after ``--set``) give the one row.

Example (from the repository root; the brain bundle's demo set is built into ``demo_dir`` on first use)::

    OMP_NUM_THREADS=1 python benchmarks/harmonic_roundtrip.py --bundle bundles/brain_mri_so3 --set "strides=[2, 1]" \\
        --max_test 3 --geometry 14:20 --geometry 14:20:14.5 --geometry 16:24:14.5
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

_HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["parse_geometry", "round_trip_table", "main"]


def _group_law():
    """``benchmarks/group_law.py`` as a module (its bundle parser and ``--set`` parsing are reused)."""
    spec = importlib.util.spec_from_file_location("group_law", os.path.join(_HERE, "group_law.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_geometry(text: str) -> dict:
    """``"RADII:DEGREE[:MAX_RADIUS[:ANGLES]]"`` -> ``{"radii", "degree", "max_radius", "angles"}``.

    Raises:
        ValueError: not 2-4 fields, or a field that is not a number (``corners`` allowed for MAX_RADIUS).
    """
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"--geometry takes RADII:DEGREE[:MAX_RADIUS[:ANGLES]], got {text!r}.")
    try:
        radii, degree = int(parts[0]), int(parts[1])
        max_radius = None if len(parts) < 3 or parts[2] in ("", "corners") else float(parts[2])
        angles = int(parts[3]) if len(parts) == 4 and parts[3] else None
    except ValueError as e:
        raise ValueError(f"--geometry {text!r}: RADII, DEGREE and ANGLES are integers, MAX_RADIUS a number or "
                         f"'corners' ({e}).") from None
    return {"radii": radii, "degree": degree, "max_radius": max_radius, "angles": angles}


def bundle_geometry(parser, spatial_dims: int) -> dict:
    """The geometry of a bundle's own ``harmonic_*`` entries (``harmonic_modes`` in 2D, ``harmonic_lmax`` in 3D)."""

    def entry(key):
        return parser.get_parsed_content(key) if key in parser else None

    degree = entry("harmonic_modes" if spatial_dims == 2 else "harmonic_lmax")
    if entry("harmonic_radii") is None or degree is None:
        raise SystemExit("the bundle has no harmonic_radii / harmonic_lmax (harmonic_modes) entries: pass --geometry.")
    max_radius, angles = entry("harmonic_max_radius"), entry("harmonic_angles")
    return {"radii": int(entry("harmonic_radii")), "degree": int(degree),
            "max_radius": None if max_radius is None else float(max_radius),
            "angles": None if angles is None else int(angles)}


def _pooled(images: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return images
    pool = F.avg_pool2d if images.ndim == 4 else F.avg_pool3d
    return pool(images, factor)


def round_trip_table(maps: torch.Tensor, geometries: Sequence[dict], ssim_metric) -> list[dict]:
    """PSNR / SSIM of ``synthesis(analysis(maps))`` against ``maps`` ``(B, 1, *shape)``, for each geometry.

    The rendered map is clamped to [0, 1] (the data range of the bundles' images and of the PSNR) before comparing.
    """
    from monai.metrics import PSNRMetric

    from monai_galr.networks.blocks.harmonic import HarmonicAnalysis, HarmonicSynthesis

    dims = maps.ndim - 2
    shape = tuple(maps.shape[2:])
    x = maps.double()
    rows = []
    for geo in geometries:
        args = (dims, shape, geo["radii"], geo["degree"], geo["angles"], geo["max_radius"])
        analysis, synthesis = HarmonicAnalysis(*args).double(), HarmonicSynthesis(*args).double()
        coeff = analysis(x)
        back = synthesis(coeff).clamp(0.0, 1.0)
        psnr = PSNRMetric(max_val=1.0)(back.float(), maps.float()).mean().item()
        ssim = ssim_metric(back.float(), maps.float()).mean().item()
        rows.append({
            **geo,
            "max_radius": analysis.geometry.max_radius,
            "numbers_per_channel": int(coeff.shape[2] * coeff.shape[3]),
            "per_voxel": coeff.shape[2] * coeff.shape[3] / math.prod(shape),
            "psnr": psnr,
            "ssim": ssim,
        })
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="bundle folder (with configs/train.yaml and evaluate.yaml)")
    p.add_argument("--overlay", action="append", default=[], help="overlay config file name(s) after train.yaml")
    p.add_argument("--set", action="append", nargs="+", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--max_test", type=int, default=3, help="first N test images (default 3)")
    p.add_argument("--pool", type=int, default=None, help="average-pooling factor (default: prod(strides))")
    p.add_argument("--geometry", action="append", default=[], help="RADII:DEGREE[:MAX_RADIUS[:ANGLES]] (default: "
                   "the bundle's harmonic_* entries)")
    p.add_argument("--num_threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.max_test < 1:
        raise SystemExit(f"--max_test must be >= 1, got {args.max_test}.")
    geometries = [parse_geometry(g) for g in args.geometry]
    torch.set_num_threads(args.num_threads)
    start = time.perf_counter()

    from monai_galr.analysis.utils import iterate_batches
    from monai_galr.bundle import additional_metrics

    gl = _group_law()
    parser = gl.bundle_parser(args.bundle, args.overlay, gl.parse_overrides(args.set))
    items = list(parser.get_parsed_content("test_items"))[: args.max_test]
    batch = next(iterate_batches(items, parser.get_parsed_content("validate#preprocessing"), len(items)))
    images = batch["x"].float().cpu()
    factor = args.pool or math.prod(int(s) for s in parser.get_parsed_content("strides"))
    if factor < 1 or any(n % factor for n in images.shape[2:]):
        raise SystemExit(f"--pool {factor} must divide the image size {tuple(images.shape[2:])}.")
    maps = _pooled(images, factor)
    dims = maps.ndim - 2
    if not geometries:
        geometries = [bundle_geometry(parser, dims)]
    win = parser.get_parsed_content("ssim_win_size") if "ssim_win_size" in parser else None
    ssim_metric = additional_metrics("val", dims, ssim_win_size=win)["val_ssim"].metric_fn
    rows = round_trip_table(maps, geometries, ssim_metric)

    degree = "modes" if dims == 2 else "lmax"
    print(f"{args.bundle}: the first {len(items)} test images, {tuple(images.shape[2:])} average-pooled by {factor} "
          f"to {tuple(maps.shape[2:])}; round trip analysis -> synthesis (float64), no network; "
          f"PSNR / SSIM (MONAI, data range 1) per image, averaged; {time.perf_counter() - start:.0f} s")
    print()
    print(f"| radii | {degree} | max_radius (latent voxels) | angles | numbers per channel / map voxels | "
          "round trip PSNR / SSIM |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        angles = "default" if r["angles"] is None else r["angles"]
        print(f"| {r['radii']} | {r['degree']} | {r['max_radius']:.2f} | {angles} | {r['numbers_per_channel']:,} / "
              f"{math.prod(maps.shape[2:]):,} ({r['per_voxel']:.2f}x) | {r['psnr']:.2f} / {r['ssim']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
