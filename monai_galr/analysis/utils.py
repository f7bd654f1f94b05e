"""Shared plumbing of the analysis studies: weights, batches, atomic files and image-grid figures."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.data import DataLoader, Dataset

from monai_galr.engines.batch import PrepareGroupActionBatch
from monai_galr.handlers.checkpoint import load_network_weights

__all__ = [
    "check_items",
    "image_grid_figure",
    "iterate_batches",
    "json_safe",
    "mid_slices",
    "prepare_network",
    "save_figure_atomic",
    "unwrap",
    "write_outputs_atomic",
    "write_text_atomic",
]


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside ``DataParallel`` / ``DistributedDataParallel`` wrappers."""
    while hasattr(network, "module") and isinstance(network.module, torch.nn.Module):
        network = network.module
    return network


def prepare_network(network: torch.nn.Module, ckpt_path: str | None = None, device: Any = None) -> torch.nn.Module:
    """Move ``network`` to ``device``, load ``ckpt_path`` strictly (when given) and switch to eval mode.

    Raises:
        TypeError: ``network`` has no ``encode`` / ``split`` / ``decode`` (not a ``GroupActionAutoEncoder``).
        FileNotFoundError / ValueError: see :func:`monai_galr.handlers.load_network_weights` (a checkpoint that
            does not match the configured network names the file).
    """
    core = unwrap(network)
    missing = [m for m in ("encode", "split", "decode", "apply_action") if not hasattr(core, m)]
    if missing or not hasattr(core, "ald"):
        raise TypeError(
            f"network must be a GroupActionAutoEncoder (encode / split / apply_action / decode / ald), got "
            f"{type(core).__name__} lacking {missing or ['ald']}."
        )
    if device is not None:
        core.to(device)
    if ckpt_path is not None:
        load_network_weights(core, ckpt_path, map_location=device)
    core.eval()
    return core


def check_items(items: Any, name: str, require: Sequence[str] = ("image",), min_items: int = 1) -> list[Mapping]:
    """Check that ``items`` is a list of at least ``min_items`` data dicts, each holding the ``require`` keys.

    Raises:
        TypeError: ``items`` is not a list of dicts.
        ValueError: too few items, or an item lacks a required key (the message names ``name`` and the key).
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a list of data dicts, got {type(items).__name__}.")
    items = list(items)
    if len(items) < min_items:
        raise ValueError(f"{name} must hold at least {min_items} item(s), got {len(items)}.")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"{name} must be a list of data dicts, but item {i} is a {type(item).__name__}.")
        for key in require:
            if key not in item:
                raise ValueError(
                    f"{name} item {i} has no {key!r} key (keys: {sorted(map(str, item))}); the study needs "
                    f"{list(require)} in every item."
                )
    return items


def iterate_batches(
    items: Sequence[Mapping],
    transform: Callable | None,
    batch_size: int,
    device: Any = None,
    require_rotation: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the model-ready batches of ``items``: the engine's compositing, without training.

    Each batch dict holds ``"x"`` (the model input ``(B, C, *spatial)``: the foreground composited with any fixed
    background layer), ``"target"`` (``T_R x`` for the item's ``"rotation"``, or ``x`` when there is none),
    ``"rotation"`` (``(B, d, d)`` or None), ``"foreground"``, ``"background"`` / ``"background_mask"`` (or None)
    and ``"label"`` (``(B,)`` int64, when the items carry labels).

    Args:
        items: data dicts (``"image"``, optional ``"rotation"``, ``"label"``, overlay keys).
        transform: the evaluation preprocessing (e.g. ``@validate#preprocessing``: padding and overlays).
        batch_size: a positive int.
        device: where the tensors go.
        require_rotation: raise when an item has no ``"rotation"``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    loader = DataLoader(Dataset(list(items), transform=transform), batch_size=batch_size, shuffle=False, num_workers=0)
    prepare = PrepareGroupActionBatch(random_if_missing=False)
    for batch in loader:
        has_rotation = "rotation" in batch
        if require_rotation and not has_rotation:
            raise ValueError("the items need a 'rotation' (monai_galr.data.attach_fixed_rotations).")
        if has_rotation:
            x, target, (rotation,), _ = prepare(batch, device)
        else:
            fg = torch.as_tensor(batch["image"])
            d = fg.ndim - 2
            eye = torch.eye(d).expand(fg.shape[0], d, d).clone()  # the identity: target == x
            x, target, _, _ = prepare({**batch, "rotation": eye}, device)
            rotation = None
        out: dict[str, Any] = {"x": x, "target": target, "rotation": rotation}
        out["foreground"] = torch.as_tensor(batch["image"]).float().to(device)
        out["background"] = torch.as_tensor(batch["background"]).float().to(device) if "background" in batch else None
        out["background_mask"] = (
            torch.as_tensor(batch["background_mask"]).float().to(device) if "background_mask" in batch else None
        )
        if "label" in batch:
            lab = torch.as_tensor(batch["label"])
            out["label"] = lab.reshape(lab.shape[0], -1)[:, 0].long()
        yield out


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN / inf floats replaced by None (strict JSON), numpy scalars as Python numbers."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _tmp_path(path: str, suffix: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
    return tmp


def write_text_atomic(text: str, path: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    tmp = _tmp_path(path, ".txt")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_figure_atomic(fig: Figure, path: str, dpi: int = 120) -> None:
    """Render ``fig`` with the Agg backend to a temporary PNG next to ``path``, then ``os.replace`` it."""
    tmp = _tmp_path(path, ".png")
    try:
        FigureCanvasAgg(fig)
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_outputs_atomic(output_dir: str, outputs: Mapping[str, Any], dpi: int = 120) -> list[str]:
    """Write every output of a study at once, at the end: nothing is left half-written or stale-looking.

    All files are first rendered to temporary files in ``output_dir`` (a failure there removes every temporary
    file and leaves the folder as it was, so old results are never mixed with new ones); then each is moved into
    place with ``os.replace``, in the order given (put the JSON, which records the whole result, last).

    Args:
        output_dir: the folder (created when needed).
        outputs: ``{file name: content}``; a matplotlib ``Figure`` is saved as PNG, a ``str`` as text, a dict or
            list as strict JSON (NaN / inf become null; keys sorted, indented).
        dpi: resolution of the PNG figures.

    Returns:
        the paths written, in order.

    Raises:
        TypeError: a content of another type (nothing is written).
    """
    for name, content in outputs.items():
        if not isinstance(content, (Figure, str, Mapping, list, tuple)):
            raise TypeError(f"output {name!r} must be a Figure, str, dict or list, got {type(content).__name__}.")
    created = not os.path.isdir(output_dir)
    pending: list[tuple[str, str]] = []
    try:
        for name, content in outputs.items():
            path = os.path.join(output_dir, name)
            tmp = _tmp_path(path, os.path.splitext(name)[1] or ".tmp")
            pending.append((tmp, path))
            if isinstance(content, Figure):
                FigureCanvasAgg(content)
                content.savefig(tmp, format="png", dpi=dpi)
            else:
                text = content if isinstance(content, str) else json.dumps(json_safe(content), indent=2,
                                                                            sort_keys=True, allow_nan=False)
                with open(tmp, "w") as f:
                    f.write(text)
    except BaseException:
        for tmp, _ in pending:
            if os.path.exists(tmp):
                os.remove(tmp)
        if created and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)
        raise
    for tmp, path in pending:
        os.replace(tmp, path)
    return [path for _, path in pending]


def mid_slices(img: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(H, W)`` -> ``[("", img)]``; ``(H, W, D)`` -> the three orthogonal mid-slices with their names.

    The names say which array axis is cut where and which axes the slice shows (rows x columns), e.g.
    ``"H=8 (W x D)"`` for ``img[8]``.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        return [("", img)]
    if img.ndim != 3:
        raise ValueError(f"expected a 2D (H, W) or 3D (H, W, D) array, got shape {img.shape}.")
    h, w, d = img.shape
    return [
        (f"H={h // 2} (W x D)", img[h // 2]),
        (f"W={w // 2} (H x D)", img[:, w // 2]),
        (f"D={d // 2} (H x W)", img[:, :, d // 2]),
    ]


def image_grid_figure(
    rows: Sequence[Sequence[np.ndarray]],
    col_titles: Sequence[str],
    row_titles: Sequence[str],
    title: str,
    cmaps: Sequence[str] | None = None,
    vranges: Sequence[tuple[float, float] | None] | None = None,
    colorbar_cols: Sequence[int] = (),
    colorbar_labels: Mapping[int, str] | None = None,
) -> Figure:
    """A grid of 2D or 3D maps: one figure row per (case, mid-slice), one column per kind of map.

    Args:
        rows: per case, one spatial array ``(H, W)`` or ``(H, W, D)`` per column (3D arrays expand to three
            figure rows: the orthogonal mid-slices).
        col_titles / row_titles: column headers and case names (the y-axis labels).
        title: the figure title.
        cmaps / vranges: per column colour map and ``(vmin, vmax)`` (None: the array's own range).
        colorbar_cols: columns that get a colour bar (labelled by ``colorbar_labels``).
    """
    ncols = len(col_titles)
    cmaps = list(cmaps) if cmaps is not None else ["gray"] * ncols
    vranges = list(vranges) if vranges is not None else [(0.0, 1.0)] * ncols
    colorbar_labels = dict(colorbar_labels or {})
    expanded = []
    for case, (name, arrays) in enumerate(zip(row_titles, rows)):
        if len(arrays) != ncols:
            raise ValueError(f"row {case} has {len(arrays)} maps for {ncols} columns.")
        per_col = [mid_slices(a) for a in arrays]
        for s in range(len(per_col[0])):
            sname = per_col[0][s][0]
            expanded.append((f"{name}\nslice {sname}" if sname else name, [pc[s][1] for pc in per_col]))
    nrows = len(expanded)
    width = 2.0 * ncols + 0.9 * len(colorbar_cols) + 0.6
    fig = Figure(figsize=(width, 2.0 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, (rname, tiles) in enumerate(expanded):
        for c, tile in enumerate(tiles):
            ax = axes[r][c]
            vr = vranges[c]
            kw = {} if vr is None else {"vmin": vr[0], "vmax": vr[1]}
            im = ax.imshow(np.asarray(tile, dtype=np.float32), cmap=cmaps[c], interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if not np.isfinite(np.asarray(tile, dtype=np.float32)).any():
                ax.text(0.5, 0.5, "n/a\n(no channels)", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            if r == 0:
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(rname, fontsize=8)
            if c in colorbar_cols:
                cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                if c in colorbar_labels:
                    cb.set_label(colorbar_labels[c], fontsize=7)
                cb.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return fig
