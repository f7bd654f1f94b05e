"""Latent swap: decode the varying part of one image with the invariant part of another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from monai_galr.analysis.figures import check_num_cases
from monai_galr.analysis.utils import (
    CollectOutputs, check_items, check_network, image_grid_figure, run_study, write_outputs_atomic,
)
from monai_galr.engines import PrepareGroupActionBatch

__all__ = ["run_latent_swap", "swap_latents"]


def swap_latents(network: torch.nn.Module, z_a: torch.Tensor, z_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([z_v(a); z_i(b)], [z_v(b); z_i(a)])`` = ``(M*z_a + (1-M)*z_b, M*z_b + (1-M)*z_a)`` via ``network.split``.

    Args:
        network: a ``GroupActionAutoEncoder``.
        z_a / z_b: latents ``(B, L, *latent_spatial)`` of the same shape.

    Raises:
        ValueError: ``z_a`` and ``z_b`` differ in shape.
    """
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}.")
    va, ia = network.split(z_a)
    vb, ib = network.split(z_b)
    return va + ib, vb + ia


@torch.no_grad()
def run_latent_swap(
    network: torch.nn.Module, test_items: Sequence[Mapping], output_dir: str, transform: Any = None,
    ckpt_path: str | None = None, device: Any = None, num_pairs: int = 3, protocol: str = "",
    filename: str = "latent_swap",
) -> dict[str, Any]:
    """The latent-swap study (runner ``latent_swap``) on pairs ``(0, 1), (2, 3), ...`` of the test items.

    Per pair: ``x_a``, ``x_b``, their reconstructions ``D(z_a)`` / ``D(z_b)``, ``D([z_v(a); z_i(b)])`` and
    ``D([z_v(b); z_i(a)])``. Writes ``{filename}.png`` and ``{filename}.json``: per pair the mean absolute
    difference of each swap from both reconstructions (``mad_vaib_to_rec_a`` = mean ``|D([z_v(a); z_i(b)]) -
    D(z_a)|``, and so on), which says which part carries the image content.

    Raises:
        ValueError: fewer than ``2 * num_pairs`` test items, bad ``num_pairs``, a checkpoint that does not match.
    """
    check_num_cases(num_pairs, "num_pairs")
    items = check_items(test_items, "test_items", require=("image",), min_items=2 * num_pairs)[: 2 * num_pairs]
    core = check_network(network)

    def collect(engine) -> tuple[torch.Tensor, ...]:
        """Inputs, reconstructions and the decoded swaps of the pairs ``(2k, 2k+1)`` of the batch."""
        x, z = engine.state.output["image"], engine.state.output["z"]
        s_ab, s_ba = swap_latents(core, z[0::2], z[1::2])
        return x, engine.state.output["pred_identity"].clamp(0, 1), core.decode(s_ab).clamp(0, 1), \
            core.decode(s_ba).clamp(0, 1)

    collector = CollectOutputs(collect)
    unrotated = PrepareGroupActionBatch(identity_if_missing=True)  # x only: the items' rotations do not matter
    run_study(core, items, transform, [collector], len(items), ckpt_path, device, outputs=("z", "pred_identity"),
              prepare_batch=unrotated)
    ((x, rec, d_ab, d_ba),) = collector.results
    rows, names, pairs = [], [], []
    for k in range(num_pairs):
        ra, rb = rec[2 * k], rec[2 * k + 1]
        rows.append([t[0].cpu().numpy() for t in (x[2 * k], x[2 * k + 1], ra, rb, d_ab[k], d_ba[k])])
        names.append(f"pair {k} (a={2 * k}, b={2 * k + 1})")
        pairs.append({
            "a": 2 * k,
            "b": 2 * k + 1,
            "mad_vaib_to_rec_a": float((d_ab[k] - ra).abs().mean()),
            "mad_vaib_to_rec_b": float((d_ab[k] - rb).abs().mean()),
            "mad_vbia_to_rec_a": float((d_ba[k] - ra).abs().mean()),
            "mad_vbia_to_rec_b": float((d_ba[k] - rb).abs().mean()),
        })
    mask = core.ald.hard_mask().detach().cpu()
    n_v = int(mask.sum().item())
    fig = image_grid_figure(
        rows,
        col_titles=["x_a", "x_b", "D(z_a)", "D(z_b)", "D([z_v(a); z_i(b)])", "D([z_v(b); z_i(a)])"],
        row_titles=names,
        title=f"Latent swap of varying / invariant channels ({n_v}/{mask.numel()} varying, {core.ald.partition})"
        + ("; mid-slices of each volume" if x.ndim == 5 else ""),
        colorbar_cols=(5,),
        colorbar_labels={5: "intensity"},
    )
    out = {
        "pairs": pairs, "varying_channels": n_v, "latent_channels": int(mask.numel()), "partition": core.ald.partition,
        "protocol": protocol or "consecutive test images paired (a=2k, b=2k+1), unrotated inputs",
        "figure": f"{filename}.png", "checkpoint": ckpt_path,
    }
    write_outputs_atomic(output_dir, {f"{filename}.png": fig, f"{filename}.json": out})
    return out
