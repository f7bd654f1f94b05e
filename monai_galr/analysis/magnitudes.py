"""Latent magnitudes: where ``|z_v|`` and ``|z_i|`` live, averaged over rotations of the same input.

The varying part follows the rotation (``z_v(R x) ~ Phi_R(z_v(x))``, a rotated grid for the ``grid`` action), so
averaging its maps over rotations in the frame of each rotated input smears them; by default each ``|z_v|`` map is
rotated back by ``R^-1`` first (the frame of the unrotated input). The invariant part is meant not to move
(``z_i(R x) ~ z_i(x)``) and is averaged as encoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from monai_galr.analysis.figures import check_num_cases
from monai_galr.analysis.utils import (
    CollectOutputs, check_items, check_network, image_grid_figure, run_study, write_outputs_atomic,
)
from monai_galr.engines import PrepareGroupActionBatch
from monai_galr.groups import angle_to_matrix, identity, inverse, random_rotation, rotate_image
from monai_galr.utils import check_bool

__all__ = ["latent_magnitude_maps", "rotation_averaged_maps", "rotation_set", "run_latent_magnitudes"]


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
        ``{"z_v": (K, *latent_spatial), "z_i": (K, *latent_spatial)}``; a part without channels is NaN.  A harmonic
        latent is first rendered on its feature grid (``network.latent_map``), so the maps are spatial for every
        action.
    """
    return _magnitudes(network, network.encode(x_rotated))


def _magnitudes(network: torch.nn.Module, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`latent_magnitude_maps` of the latents ``z = network.encode(x)``."""
    if getattr(network, "is_harmonic", False):
        z = network.latent_map(z)  # per-channel linear rendering: the split commutes with it
    z_v, z_i = network.split(z)
    mask = network.ald.hard_mask().to(z.device).bool()
    out = {}
    for name, part, sel in (("z_v", z_v, mask), ("z_i", z_i, ~mask)):
        n = int(sel.sum())
        out[name] = part[:, sel].abs().mean(1) if n else torch.full_like(z[:, 0], math.nan)
    return out


@torch.no_grad()
def rotation_averaged_maps(
    network: torch.nn.Module, x_rotated: torch.Tensor, rotations: torch.Tensor, align: bool = True
) -> dict[str, dict[str, torch.Tensor]]:
    """Mean ``|z_v|`` / ``|z_i|`` maps of ``K`` rotated copies of one input, averaged over the rotations.

    With ``align``, the ``|z_v|`` map of ``R_k x`` is rotated back by ``R_k^-1`` (``rotate_image``, tri-/bi-linear,
    zero padding) before averaging; each location is averaged over the rotations whose back-rotated grid covers it
    (interpolation weights of a rotated map of ones), so grid corners that a rotation leaves empty do not darken the
    mean. ``|z_i|`` maps are averaged as encoded.

    Args:
        network: a ``GroupActionAutoEncoder``.
        x_rotated: ``(K, C, *spatial)``: ``R_k x`` for ``k < K``.
        rotations: ``(K, d, d)``: the ``R_k``.
        align: rotate the ``|z_v|`` maps back to the frame of ``x`` first.

    Returns:
        ``{"z_v": {"mean": (*latent_spatial), "disagreement": ()}, "z_i": {...}}``; ``disagreement`` is the
        weighted standard deviation over the rotations, averaged over locations and divided by the mean magnitude
        (0: every rotation gives the same map in the common frame). NaN for a part without channels.

    Raises:
        ValueError: ``rotations`` does not hold one ``(d, d)`` rotation per input.
    """
    d = x_rotated.ndim - 2
    if rotations.ndim != 3 or rotations.shape[0] != x_rotated.shape[0] or rotations.shape[-1] != d:
        raise ValueError(
            f"rotations must be ({x_rotated.shape[0]}, {d}, {d}) for inputs {tuple(x_rotated.shape)}, got "
            f"{tuple(rotations.shape)}."
        )
    return _average_maps(latent_magnitude_maps(network, x_rotated), rotations, align)


def _average_maps(
    maps: Mapping[str, torch.Tensor], rotations: torch.Tensor, align: bool
) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for part, m in maps.items():
        if align and part == "z_v" and bool(torch.isfinite(m).all()):
            inv = inverse(rotations.to(device=m.device, dtype=m.dtype))
            # zero padding: the interpolated map is w * (the map inside the grid), w the in-grid weight
            w = rotate_image(torch.ones_like(m[:, None]), inv, padding_mode="zeros")[:, 0]
            w = torch.where(w > 1e-3, w, torch.zeros_like(w))
            m = rotate_image(m[:, None], inv, padding_mode="zeros")[:, 0] / w.clamp_min(1e-3)
        else:
            w = torch.ones_like(m)
        total = w.sum(0).clamp_min(1e-6)
        mean = (w * m).sum(0) / total
        std = ((w * (m - mean) ** 2).sum(0) / total).sqrt()
        level = mean.mean()
        out[part] = {"mean": mean, "disagreement": std.mean() / level if level > 0 else torch.tensor(math.nan)}
    return out


class RotatedCopies:
    """``prepare_batch`` for one item a batch: ``K`` copies of its foreground, the ``k``-th rotated by ``R_k``.

    ``R_k`` is :func:`rotation_set` of the batch's spatial dims; the engine's ``T_R x`` of the copies is then
    ``composite(R_k image, background, mask)`` (a fixed background layer does not rotate), built by
    :class:`~monai_galr.engines.PrepareGroupActionBatch`.

    Args:
        num_rotations / seed: see :func:`rotation_set`.
    """

    def __init__(self, num_rotations: int, seed: int = 0) -> None:
        self.num_rotations, self.seed = num_rotations, seed
        self.prepare = PrepareGroupActionBatch()

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        image = torch.as_tensor(batchdata["image"])
        rotations = rotation_set(image.ndim - 2, self.num_rotations, self.seed)
        copies = {key: torch.as_tensor(batchdata[key]).expand(len(rotations), *image.shape[1:])
                  for key in ("image", "background", "background_mask") if key in batchdata}
        return self.prepare({**copies, "rotation": rotations}, device, non_blocking, **kwargs)


@torch.no_grad()
def run_latent_magnitudes(
    network: torch.nn.Module, test_items: Sequence[Mapping], output_dir: str, transform: Any = None,
    ckpt_path: str | None = None, device: Any = None, num_cases: int = 3, num_rotations: int = 8, seed: int = 0,
    align: bool = True, protocol: str = "", filename: str = "latent_magnitudes",
) -> dict[str, Any]:
    """The latent-magnitude study (runner ``latent_magnitudes``).

    Each of the first ``num_cases`` test inputs is rotated by ``num_rotations`` rotations (the foreground only;
    a fixed background layer stays), encoded, and the maps of mean ``|z_v|`` and ``|z_i|`` are averaged over the
    rotations (see :func:`rotation_averaged_maps`; with ``align`` the ``|z_v|`` maps are rotated back by ``R^-1``
    first, and the figure title says which was done). Writes ``{filename}.png`` (input, mean ``|z_v|``, mean
    ``|z_i|`` on a shared colour scale with colour bars; mid-slices for 3D) and ``{filename}.json`` (per case the
    mean magnitudes, their relative spread over the rotations ``std_k(mean |z_part(R_k x)|) / mean_k(...)`` and
    the per-location ``disagreement`` of the maps in the common frame), both at the end, atomically.

    Raises:
        ValueError: bad ``num_cases`` / ``num_rotations``, too few items, a checkpoint that does not match.
        TypeError: ``align`` is not a bool (or the command-line strings ``"true"`` / ``"false"``).
    """
    check_num_cases(num_cases)
    align = check_bool(align, "align")
    items = check_items(test_items, "test_items", require=("image",), min_items=1)[:num_cases]
    core = check_network(network)

    def collect(engine) -> tuple[dict[str, Any], list, float]:
        """One case: its statistics, its figure row and the largest mean magnitude of its maps."""
        rots = engine.state.output["rotation"]
        maps = _magnitudes(core, engine.state.output["z_target"])  # the latents of the K rotated copies
        per_rot = {p: v.flatten(1).mean(1) for p, v in maps.items()}
        averaged = _average_maps(maps, rots, align)
        case: dict[str, Any] = {"index": engine.state.iteration - 1}
        vmax = 0.0
        for p in ("z_v", "z_i"):
            vals, mean_map = per_rot[p], averaged[p]["mean"]
            case[f"mean_abs_{p}"] = float(vals.mean())
            spread = vals.std(unbiased=False) / vals.mean() if vals.mean() > 0 else math.nan
            case[f"rotation_spread_{p}"] = float(spread)
            case[f"disagreement_{p}"] = float(averaged[p]["disagreement"])
            if torch.isfinite(mean_map).all():
                vmax = max(vmax, float(mean_map.max()))
        row = [engine.state.output["image"][0, 0].cpu().numpy()] + [averaged[p]["mean"].cpu().numpy()
                                                                   for p in ("z_v", "z_i")]
        return case, row, vmax

    check_num_cases(num_rotations, "num_rotations")
    collector = CollectOutputs(collect)
    run_study(core, items, transform, [collector], 1, ckpt_path, device, outputs=("z_target",),
              prepare_batch=RotatedCopies(num_rotations, seed))
    k, spatial_dims = num_rotations, collector.results[0][1][0].ndim
    cases = [c for c, _, _ in collector.results]
    rows = [r for _, r, _ in collector.results]
    names = [f"case {i}" for i in range(len(cases))]
    vmax = max([v for _, _, v in collector.results] + [0.0])
    mask = core.ald.hard_mask().detach().cpu()
    n_v = int(mask.sum().item())
    vr = (0.0, vmax if vmax > 0 else 1.0)
    frame = "|z_v| rotated back by R^-1 before averaging" if align else "|z_v| NOT rotated back (frame of each R x)"
    slices = "; mid-slices" if spatial_dims == 3 else ""
    fig = image_grid_figure(
        rows,
        col_titles=["input x", f"mean |z_v| ({n_v} ch)", f"mean |z_i| ({mask.numel() - n_v} ch)"],
        row_titles=names,
        title=f"Latent magnitudes averaged over {k} rotations of each input\n({frame}; |z_i| as encoded{slices})",
        cmaps=["gray", "viridis", "viridis"],
        vranges=[(0.0, 1.0), vr, vr],
        colorbar_cols=(1, 2),
        colorbar_labels={1: "mean |z| per channel", 2: "mean |z| per channel"},
    )
    rot_desc = (f"{k} angles 2*pi*k/{k}" if spatial_dims == 2 else f"identity + {k - 1} Haar rotations (seed {seed})")
    out = {
        "cases": cases, "num_rotations": k, "varying_channels": n_v, "latent_channels": int(mask.numel()),
        "partition": core.ald.partition, "aligned": align, "frame": frame,
        "protocol": protocol or f"first {len(items)} test inputs, foreground rotated by {rot_desc}",
        "figure": f"{filename}.png", "checkpoint": ckpt_path,
    }
    if n_v in (0, mask.numel()):
        out["note"] = "one part of the latent has no channels: its map is empty (NaN)"
    write_outputs_atomic(output_dir, {f"{filename}.png": fig, f"{filename}.json": out})
    return out
