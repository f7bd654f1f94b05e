"""Latent magnitudes: where ``|z_v|`` and ``|z_i|`` live, averaged over rotations of the same input."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from monai_galr.analysis.figures import check_num_cases
from monai_galr.analysis.utils import (
    check_items,
    image_grid_figure,
    iterate_batches,
    json_safe,
    prepare_network,
    save_figure_atomic,
)
from monai_galr.groups import angle_to_matrix, identity, random_rotation, rotate_image
from monai_galr.handlers.report import write_json_atomic
from monai_galr.transforms.overlay import composite

__all__ = ["latent_magnitude_maps", "rotation_set", "run_latent_magnitudes"]


def rotation_set(spatial_dims: int, num_rotations: int, seed: int = 0) -> torch.Tensor:
    """``(K, d, d)``: SO(2) angles ``2*pi*k/K``; SO(3) the identity and ``K-1`` seeded Haar rotations."""
    check_num_cases(num_rotations, "num_rotations")
    if spatial_dims == 2:
        return angle_to_matrix(torch.arange(num_rotations, dtype=torch.float32) * (2 * math.pi / num_rotations))
    if num_rotations == 1:
        return identity(1, 3)
    g = torch.Generator().manual_seed(int(seed))
    return torch.cat([identity(1, 3), random_rotation(num_rotations - 1, 3, generator=g)])


@torch.no_grad()
def latent_magnitude_maps(network: torch.nn.Module, x_rotated: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-location mean ``|z_v|`` and ``|z_i|`` (over each part's channels) of a batch of inputs.

    Args:
        network: a ``GroupActionAutoEncoder``.
        x_rotated: ``(K, C, *spatial)`` inputs (e.g. one image under ``K`` rotations).

    Returns:
        ``{"z_v": (K, *latent_spatial), "z_i": (K, *latent_spatial)}``; a part without channels is NaN.
    """
    z = network.encode(x_rotated)
    z_v, z_i = network.split(z)
    mask = network.ald.hard_mask().to(z.device).bool()
    out = {}
    for name, part, sel in (("z_v", z_v, mask), ("z_i", z_i, ~mask)):
        n = int(sel.sum())
        out[name] = part[:, sel].abs().mean(1) if n else torch.full_like(z[:, 0], math.nan)
    return out


@torch.no_grad()
def run_latent_magnitudes(
    network: torch.nn.Module,
    test_items: Sequence[Mapping],
    output_dir: str,
    transform: Any = None,
    ckpt_path: str | None = None,
    device: Any = None,
    num_cases: int = 3,
    num_rotations: int = 8,
    seed: int = 0,
    protocol: str = "",
    filename: str = "latent_magnitudes",
) -> dict[str, Any]:
    """The latent-magnitude study (runner ``latent_magnitudes``).

    Each of the first ``num_cases`` test inputs is rotated by ``num_rotations`` rotations (the foreground only;
    a fixed background layer stays), encoded, and the maps of mean ``|z_v|`` and ``|z_i|`` are averaged over the
    rotations. Writes ``{filename}.png`` (input, mean ``|z_v|``, mean ``|z_i|``, on a shared colour scale with
    colour bars) and ``{filename}.json`` (per case the mean magnitudes and their relative spread over the
    rotations: ``std_k(mean |z_part(R_k x)|) / mean_k(...)``).

    Raises:
        ValueError: bad ``num_cases`` / ``num_rotations``, too few items, a checkpoint that does not match.
    """
    check_num_cases(num_cases)
    items = check_items(test_items, "test_items", require=("image",), min_items=1)[:num_cases]
    core = prepare_network(network, ckpt_path, device)
    batch = next(iterate_batches(items, transform, batch_size=len(items), device=device, require_rotation=False))
    fg, bg, m = batch["foreground"], batch["background"], batch["background_mask"]
    rots = rotation_set(fg.ndim - 2, num_rotations, seed).to(fg.device)
    k = rots.shape[0]
    rows, names, cases = [], [], []
    vmax = 0.0
    for i in range(fg.shape[0]):
        xr = rotate_image(fg[i : i + 1].expand(k, *fg.shape[1:]), rots)
        if bg is not None:
            mi = m[i : i + 1] if m is not None else (bg[i : i + 1] > 0).float()
            xr = composite(xr, bg[i : i + 1], mi)
        maps = latent_magnitude_maps(core, xr)
        mean_v, mean_i = maps["z_v"].mean(0), maps["z_i"].mean(0)
        per_rot = {p: maps[p].flatten(1).mean(1) for p in maps}
        case = {"index": i}
        for p, mean_map in (("z_v", mean_v), ("z_i", mean_i)):
            vals = per_rot[p]
            case[f"mean_abs_{p}"] = float(vals.mean())
            spread = vals.std(unbiased=False) / vals.mean() if vals.mean() > 0 else math.nan
            case[f"rotation_spread_{p}"] = float(spread)
            if torch.isfinite(mean_map).all():
                vmax = max(vmax, float(mean_map.max()))
        cases.append(case)
        rows.append([batch["x"][i, 0].cpu().numpy(), mean_v.cpu().numpy(), mean_i.cpu().numpy()])
        names.append(f"case {i}")
    mask = core.ald.hard_mask().detach().cpu()
    n_v = int(mask.sum().item())
    vr = (0.0, vmax if vmax > 0 else 1.0)
    fig = image_grid_figure(
        rows,
        col_titles=["input x", f"mean |z_v| ({n_v} ch)", f"mean |z_i| ({mask.numel() - n_v} ch)"],
        row_titles=names,
        title=f"Latent magnitudes averaged over {k} rotations of each input",
        cmaps=["gray", "viridis", "viridis"],
        vranges=[(0.0, 1.0), vr, vr],
        colorbar_cols=(1, 2),
        colorbar_labels={1: "mean |z| per channel", 2: "mean |z| per channel"},
    )
    save_figure_atomic(fig, os.path.join(output_dir, f"{filename}.png"))
    rot_desc = (f"{k} angles 2*pi*k/{k}" if fg.ndim == 4 else f"identity + {k - 1} Haar rotations (seed {seed})")
    out = {
        "cases": cases, "num_rotations": k, "varying_channels": n_v, "latent_channels": int(mask.numel()),
        "partition": core.ald.partition,
        "protocol": protocol or f"first {len(items)} test inputs, foreground rotated by {rot_desc}",
        "figure": f"{filename}.png", "checkpoint": ckpt_path,
    }
    if n_v in (0, mask.numel()):
        out["note"] = "one part of the latent has no channels: its map is empty (NaN)"
    write_json_atomic(json_safe(out), os.path.join(output_dir, f"{filename}.json"))
    return out
