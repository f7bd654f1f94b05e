"""Shared plumbing of the analysis studies: the evaluator run, item checks and image-grid figures.

Every study is an evaluator run (:func:`run_study`): a :class:`~monai_galr.engines.GroupActionEvaluator` over the
given items and transform, with the weights loaded by MONAI's ``CheckpointLoader``
(:class:`~monai_galr.handlers.GroupActionCheckpointLoader`, weights only) when the engine starts, and the study's
collection done by handlers reading ``engine.state.output``.  The atomic file helpers come from
:mod:`monai_galr.utils` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from matplotlib.figure import Figure
from monai.data import DataLoader, Dataset

from monai_galr.engines import GroupActionEvaluator, PrepareGroupActionBatch
from monai_galr.handlers import GroupActionCheckpointLoader, load_network_weights
from monai_galr.utils import check_items as _check_items
from monai_galr.utils import (
    check_positive_int,
    json_safe,
    mid_slices,
    save_figure_atomic,
    unwrap,
    write_outputs_atomic,
    write_text_atomic,
)

__all__ = [
    "CollectOutputs",
    "check_items",
    "check_network",
    "image_grid_figure",
    "iterate_batches",
    "json_safe",
    "mid_slices",
    "prepare_network",
    "run_study",
    "save_figure_atomic",
    "unwrap",
    "write_outputs_atomic",
    "write_text_atomic",
]


def check_network(network: torch.nn.Module) -> torch.nn.Module:
    """The ``GroupActionAutoEncoder`` inside ``network`` (unwrapped), in eval mode.

    Raises:
        TypeError: ``network`` has no ``encode`` / ``split`` / ``apply_action`` / ``decode`` / ``ald``.
    """
    core = unwrap(network)
    missing = [m for m in ("encode", "split", "decode", "apply_action") if not hasattr(core, m)]
    if missing or not hasattr(core, "ald"):
        raise TypeError(
            f"network must be a GroupActionAutoEncoder (encode / split / apply_action / decode / ald), got "
            f"{type(core).__name__} lacking {missing or ['ald']}."
        )
    core.eval()
    return core


def check_items(items: Any, name: str, require: Sequence[str] = ("image",), min_items: int = 1) -> list[Mapping]:
    """:func:`monai_galr.utils.check_items` with the studies' defaults (an ``"image"`` per item, one item at least)."""
    return _check_items(items, name, require, min_items)


class CollectOutputs:
    """Handler: at every iteration, call ``fn(engine)`` and keep what it returns in ``self.results``.

    ``fn`` reads ``engine.state.output`` (and ``engine.state.batch`` for item keys such as ``"label"``).
    """

    def __init__(self, fn: Callable[[Engine], Any]) -> None:
        self.fn = fn
        self.results: list[Any] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.results.append(self.fn(engine))


def run_study(
    network: torch.nn.Module,
    items: Sequence[Mapping],
    transform: Callable | None,
    handlers: Sequence[Any],
    batch_size: int,
    ckpt_path: str | None = None,
    device: Any = None,
    outputs: Sequence[str] = ("pred",),
    prepare_batch: Callable | None = None,
) -> GroupActionEvaluator:
    """Run ``network`` over ``items`` as one evaluator epoch, with the study's ``handlers`` attached.

    Args:
        network: a ``GroupActionAutoEncoder`` (see :func:`check_network`); moved to ``device`` when given.
        items: data dicts, read in order (no shuffling, no worker processes).
        transform: the evaluation preprocessing (e.g. ``@validate#preprocessing``: padding and overlays).
        handlers: the study's collectors (``attach(engine)``-able), attached after the checkpoint loader.
        batch_size: a positive int.
        ckpt_path: weights loaded (strictly, weights only) by ``GroupActionCheckpointLoader`` when the run starts.
        device: where the network and the batches go (None: the network's device).
        outputs: what the evaluation step computes (see :class:`~monai_galr.engines.GroupActionEvaluator`).
        prepare_batch: default: the engines' ``PrepareGroupActionBatch`` requiring a ``"rotation"`` per item.

    Returns:
        the evaluator, after its run.

    Raises:
        ValueError: a bad ``batch_size``; FileNotFoundError / ValueError from the checkpoint loader (a missing
            file, a file that is not weights-only or does not match the network, the file named).
    """
    check_positive_int(batch_size, "batch_size")
    core = check_network(network)
    if device is not None:
        core.to(device)
    device = torch.device(device) if device is not None else next(core.parameters()).device
    loader = DataLoader(Dataset(list(items), transform=transform), batch_size=batch_size, shuffle=False, num_workers=0)
    val_handlers = list(handlers)
    if ckpt_path is not None:
        load = GroupActionCheckpointLoader(load_path=ckpt_path, load_dict={"model": core}, map_location=device)
        val_handlers.insert(0, load)
    engine = GroupActionEvaluator(
        device=device,
        val_data_loader=loader,
        network=core,
        prepare_batch=prepare_batch or PrepareGroupActionBatch(random_if_missing=False),
        outputs=outputs,
        val_handlers=val_handlers,
    )
    engine.run()
    return engine


def prepare_network(network: torch.nn.Module, ckpt_path: str | None = None, device: Any = None) -> torch.nn.Module:
    """For scripted loops outside the studies (``benchmarks/group_law.py``): :func:`check_network`, moved to
    ``device``, with ``ckpt_path`` loaded strictly (:func:`monai_galr.handlers.load_network_weights`)."""
    core = check_network(network)
    if device is not None:
        core.to(device)
    if ckpt_path is not None:
        load_network_weights(core, ckpt_path, map_location=device)
    return core


def iterate_batches(
    items: Sequence[Mapping],
    transform: Callable | None,
    batch_size: int,
    device: Any = None,
    require_rotation: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """For scripted loops outside the studies (``benchmarks/group_law.py``): the model-ready batches of ``items``.

    Each batch dict holds ``"x"``, ``"target"`` (``T_R x``, or ``x`` for items without ``"rotation"`` when
    ``require_rotation`` is False), ``"rotation"`` (or None), ``"foreground"``, ``"background"`` /
    ``"background_mask"`` (or None) and ``"label"`` (``(B,)`` int64, when present), prepared by the engines'
    ``PrepareGroupActionBatch``.
    """
    check_positive_int(batch_size, "batch_size")
    loader = DataLoader(Dataset(list(items), transform=transform), batch_size=batch_size, shuffle=False, num_workers=0)
    prepare = PrepareGroupActionBatch(identity_if_missing=not require_rotation)
    for batch in loader:
        x, target, (rotation,), _ = prepare(batch, device)
        out: dict[str, Any] = {"x": x, "target": target, "rotation": rotation if "rotation" in batch else None}
        layers = {"foreground": "image", "background": "background", "background_mask": "background_mask"}
        for name, key in layers.items():
            out[name] = torch.as_tensor(batch[key]).float().to(device) if key in batch else None
        if "label" in batch:
            out["label"] = item_labels(batch)
        yield out


def item_labels(batch: Mapping) -> torch.Tensor:
    """The ``(B,)`` int64 class labels of a batch dict (``"label"`` of shape ``(B,)`` or ``(B, 1)``)."""
    lab = torch.as_tensor(batch["label"])
    return lab.reshape(lab.shape[0], -1)[:, 0].long()


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
