"""Error-map figures: input, image-space target, latent-action prediction and ``|error|`` for test cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_galr.analysis.utils import CollectOutputs, check_items, image_grid_figure, run_study, write_outputs_atomic
from monai_galr.groups import matrix_to_angle
from monai_galr.utils import check_positive_int

__all__ = ["check_num_cases", "error_map_figure", "run_error_maps"]


def check_num_cases(num_cases: int, name: str = "num_cases") -> int:
    """Return ``num_cases`` if it is a positive int, else raise ``ValueError`` naming ``name``."""
    return check_positive_int(num_cases, name)


def _rotation_name(r: torch.Tensor) -> str:
    if r.shape[-1] == 2:
        return f"{float(torch.rad2deg(matrix_to_angle(r[None].double()))[0]) % 360:.0f} deg"
    angle = torch.rad2deg(torch.arccos(((torch.diagonal(r).sum() - 1) / 2).clamp(-1, 1)))
    return f"{float(angle):.0f} deg (axis-angle)"


def error_map_figure(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    case_names: Sequence[str],
    title: str,
):
    """A figure with one row per case (three per 3D case: the mid-slices): input, target, prediction, |error|.

    Args:
        images / targets / preds: spatial arrays ``(H, W[, D])`` in [0, 1] (clipped for display).
        case_names: the row labels.
        title: the figure title.
    """
    rows = []
    for x, y, p in zip(images, targets, preds):
        x, y, p = (np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0) for a in (x, y, p))
        rows.append([x, y, p, np.abs(y - p)])
    return image_grid_figure(
        rows,
        col_titles=["input x", "target T_R x", "prediction D(Phi_R(E(x)))", "|target - prediction|"],
        row_titles=case_names,
        title=title,
        cmaps=["gray", "gray", "gray", "magma"],
        vranges=[(0.0, 1.0)] * 4,
        colorbar_cols=(2, 3),
        colorbar_labels={2: "intensity", 3: "absolute error"},
    )


@torch.no_grad()
def run_error_maps(
    network: torch.nn.Module, test_items: Sequence[Mapping], output_dir: str, transform: Any = None,
    ckpt_path: str | None = None, device: Any = None, num_cases: int = 4, protocol: str = "",
    filename: str = "error_maps",
) -> dict[str, Any]:
    """The error-map study (runner ``error_maps``) on the first ``num_cases`` test items with their fixed rotations.

    Writes ``output_dir/{filename}.png`` (input, target ``T_R x``, prediction ``D(Phi_R(E(x)))``, and
    ``|target - prediction|`` on a 0-1 colour scale with a colour bar) and ``{filename}.json`` (per-case MAE,
    maximum error and rotation), both atomically.

    Raises:
        ValueError: items without ``"rotation"``, bad ``num_cases``, a checkpoint that does not match.
    """
    check_num_cases(num_cases)
    items = check_items(test_items, "test_items", require=("image", "rotation"))[:num_cases]

    def collect(engine) -> list[dict[str, Any]]:
        """Per case of the batch: the three images, the rotation's name and the error statistics."""
        out = engine.state.output
        x, y, r, pred = out["image"], out["label"], out["rotation"], out["pred"].clamp(0, 1)
        err = (y.clamp(0, 1) - pred).abs().flatten(1)
        return [
            {"x": x[i, 0].cpu().numpy(), "y": y[i, 0].cpu().numpy(), "p": pred[i, 0].cpu().numpy(),
             "rotation": _rotation_name(r[i].cpu()), "mae": float(err[i].mean()), "max_error": float(err[i].max())}
            for i in range(x.shape[0])
        ]

    collector = CollectOutputs(collect)
    run_study(network, items, transform, [collector], len(items), ckpt_path, device, outputs=("pred",))
    found = [case for batch in collector.results for case in batch]
    xs, ys, ps = ([c[k] for c in found] for k in ("x", "y", "p"))
    names = [f"case {i}, {c['rotation']}" for i, c in enumerate(found)]
    cases = [{"index": i, "rotation": c["rotation"], "mae": c["mae"], "max_error": c["max_error"]}
             for i, c in enumerate(found)]
    kind = "mid-slices of each volume, " if xs[0].ndim == 3 else ""
    fig = error_map_figure(
        xs, ys, ps, names, title=f"Rotated prediction vs image-space rotation (test split; {kind}|error| on 0-1)"
    )
    out = {"cases": cases, "protocol": protocol or "first test images with their fixed, seeded rotations",
           "figure": f"{filename}.png", "checkpoint": ckpt_path}
    write_outputs_atomic(output_dir, {f"{filename}.png": fig, f"{filename}.json": out})
    return out
