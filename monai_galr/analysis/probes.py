"""Linear probes: how much class information the pooled latent ``z`` and its parts ``z_v`` / ``z_i`` carry.

A logistic regression (scikit-learn, standardized features, seeded) is fitted on pooled features of the train split
and scored on the test split: accuracy, macro precision / recall / F1 and the one-vs-rest AUC.

Pooling: global (one number per channel, ``grid=None``) measures mostly the pooling; ``grid=(8, 8)`` (2D) or
``(4, 4, 4)`` (3D) pools each channel to a coarse grid (adaptive average / max pooling) and keeps where things are.
A harmonic latent ``(B, L, S, M)`` holds coefficients, not a map: ``features="map"`` (the default) renders it on
the latent grid with the network's own fixed, linear, channel-wise synthesis (``latent_map``) and pools that map like
a spatial latent; ``features="coefficients"`` flattens the coefficients as they are (no pooling).  Beside the
class label, ``targets`` probes other properties of the items (on localized data: the block position, the
background), to show *what* each part of the split holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_galr.analysis.utils import (
    CollectOutputs,
    check_items,
    check_network,
    item_labels,
    run_study,
    unwrap,
    write_outputs_atomic,
)
from monai_galr.engines import PrepareGroupActionBatch

__all__ = [
    "FEATURE_PARTS",
    "POOLINGS",
    "block_position_target",
    "check_features",
    "check_grid",
    "check_labels",
    "extract_features",
    "item_key_target",
    "linear_probe",
    "probe_table",
    "run_probes",
]

FEATURE_PARTS = ("z", "z_v", "z_i")
POOLINGS = ("avg", "max")
VIEWS = ("input", "rotated")
FEATURES = ("map", "coefficients")
DEFAULT_LABEL_HINT = "Give every item a 'label' (an int class)."


def _check_pooling(pooling: str | Sequence[str]) -> tuple[str, ...]:
    pools = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    if not pools or any(p not in POOLINGS for p in pools) or len(set(pools)) != len(pools):
        raise ValueError(f"pooling must be one or more distinct values of {POOLINGS}, got {pooling!r}.")
    return pools


def check_labels(items: Any, name: str, hint: str = "") -> list[Mapping]:
    """``items`` (see :func:`~monai_galr.analysis.utils.check_items`) if every one holds a ``"label"``.

    Raises:
        ValueError: ``"dataset has no labels for a probe: ..."`` naming the split, the first unlabelled item (its
            subject or image path) and how many lack a label, followed by ``hint`` (how to supply labels).
    """
    items = check_items(items, name, require=("image",))
    missing = [i for i, d in enumerate(items) if "label" not in d]
    if missing:
        i = missing[0]
        ident = items[i].get("subject") or (items[i]["image"] if isinstance(items[i]["image"], str) else None)
        where = f"item {i}" + (f" ({ident!r})" if ident else "")
        raise ValueError(
            f"dataset has no labels for a probe: {name} {where} has no 'label' key ({len(missing)} of {len(items)} "
            f"items unlabelled, keys: {sorted(map(str, items[i]))}). A linear probe needs one class label per "
            f"item. {hint or DEFAULT_LABEL_HINT}"
        )
    return items


def check_features(features: str, harmonic: bool) -> str:
    """``features`` (config entry ``probe_features``) checked: ``"map"``, or ``"coefficients"`` for a harmonic latent."""
    if features not in FEATURES:
        raise ValueError(f"probe_features must be one of {FEATURES}, got {features!r}.")
    if features == "coefficients" and not harmonic:
        raise ValueError(
            "probe_features 'coefficients' needs a harmonic latent (action: harmonic); this network's latent is a "
            "spatial map: use probe_features: map."
        )
    return features


def check_grid(grid: Sequence[int] | None, latent_spatial: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """``grid`` (the probe grid, config entry ``probe_grid``) as a tuple, checked against the latent grid.

    Raises:
        ValueError: not None or a sequence of positive ints; a length that is not the latent's number of spatial
            dims; a cell count larger than the latent along any axis (the message gives both shapes).
    """
    if grid is None:
        return None
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid or any(
        isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1 for g in grid
    ):
        raise ValueError(f"probe_grid must be null or a list of positive ints (e.g. [8, 8], [4, 4, 4]), got {grid!r}.")
    grid = tuple(int(g) for g in grid)
    if latent_spatial is not None:
        latent_spatial = tuple(int(v) for v in latent_spatial)
        if len(grid) != len(latent_spatial):
            raise ValueError(
                f"probe_grid {list(grid)} has {len(grid)} entries but the latent grid {list(latent_spatial)} has "
                f"{len(latent_spatial)} spatial dims."
            )
        if any(g > v for g, v in zip(grid, latent_spatial)):
            raise ValueError(
                f"probe_grid {list(grid)} is larger than the latent grid {list(latent_spatial)}: each entry must be "
                "<= the latent size along that axis."
            )
    return grid


def _pool(t: torch.Tensor, pools: tuple[str, ...], grid: tuple[int, ...] | None = None,
          flatten: bool = False) -> torch.Tensor:
    """``(B, K, *spatial)`` -> ``(B, K * len(pools) * prod(grid))`` (``grid=None``: global pooling); ``flatten``:
    ``(B, K * prod(rest))`` with no pooling (harmonic coefficients)."""
    if flatten:
        return t.flatten(1)
    if t.shape[1] == 0:
        return t.new_zeros(t.shape[0], 0)
    feats = []
    for p in pools:
        if grid is None:
            flat = t.flatten(2)
            feats.append(flat.mean(-1) if p == "avg" else flat.amax(-1))
        else:
            d = len(grid)
            fn = {("avg", 2): F.adaptive_avg_pool2d, ("avg", 3): F.adaptive_avg_pool3d,
                  ("max", 2): F.adaptive_max_pool2d, ("max", 3): F.adaptive_max_pool3d}[(p, d)]
            feats.append(fn(t, grid).flatten(1))
    return torch.cat(feats, dim=1)


def item_key_target(key: str) -> Callable[[Mapping], int]:
    """A probe target read from each item: ``int(item[key])`` (e.g. ``"background_id"``)."""

    def target(item: Mapping) -> int:
        if key not in item:
            raise ValueError(f"probe target {key!r}: an item has no {key!r} key (keys: {sorted(map(str, item))}).")
        return int(np.asarray(item[key]).reshape(-1)[0])

    target.__name__ = key
    return target


def block_position_target(
    spatial_shape: Sequence[int], block_size: int | Sequence[int], cells: int = 3, key: str = "block_corner"
) -> Callable[[Mapping], int]:
    """A probe target: which of ``cells ** d`` equal parts of the range of block corners holds ``item[key]``.

    The corner of a block of ``block_size`` in an image of ``spatial_shape`` ranges over
    ``0 .. spatial_shape - block_size`` per axis; each axis is cut into ``cells`` equal intervals and the class is
    the cell index (row-major), e.g. 9 classes in 2D with ``cells=3``.

    Raises:
        ValueError: ``cells`` < 1, a block larger than the image; at call time an item without ``key``.
    """
    shape = tuple(int(v) for v in spatial_shape)
    block = (int(block_size),) * len(shape) if isinstance(block_size, (int, np.integer)) else tuple(block_size)
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"cells must be a positive int, got {cells!r}.")
    if len(block) != len(shape) or any(b > s for b, s in zip(block, shape)):
        raise ValueError(f"block_size {block_size!r} does not fit the image {shape}.")
    ranges = [s - b + 1 for s, b in zip(shape, block)]

    def target(item: Mapping) -> int:
        if key not in item:
            raise ValueError(f"probe target block_position: an item has no {key!r} (keys: {sorted(map(str, item))}).")
        corner = np.asarray(item[key]).reshape(-1)
        idx = 0
        for c, r in zip(corner, ranges):
            idx = idx * cells + min(int(c) * cells // r, cells - 1)
        return idx

    target.__name__ = "block_position"
    return target


@torch.no_grad()
def extract_features(
    network: torch.nn.Module,
    items: Sequence[Mapping],
    transform: Any = None,
    batch_size: int = 64,
    pooling: str | Sequence[str] = "avg",
    view: str = "input",
    device: Any = None,
    name: str = "items",
    grid: Sequence[int] | None = None,
    ckpt_path: str | None = None,
    features: str = "map",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled ``z``, ``z_v`` and ``z_i`` of every item (eval mode, batched, no gradients).

    ``z = network.encode(x)``; ``(z_v, z_i) = network.split(z)``; only the channels of each part are kept
    (``z_v``: the ALD mask's varying channels, ``z_i`` the others), then pooled over space: globally
    (``grid=None``) or per channel to ``grid`` cells.  A harmonic latent (``network.is_harmonic``: ``(B, L, S, M)``
    coefficients) is rendered on the latent grid first (``features="map"``: ``network.latent_map``, channel by
    channel, so the split is the same) or flattened as it is (``features="coefficients"``, whatever ``pooling`` /
    ``grid`` say).

    Args:
        network: a ``GroupActionAutoEncoder`` (already loaded; see :func:`run_probes`).
        items: data dicts with ``"image"`` and ``"label"`` (and ``"rotation"`` for ``view="rotated"``).
        transform: preprocessing of the items (padding, overlays).
        batch_size: images per forward pass.
        pooling: ``"avg"`` (average), ``"max"`` or both (concatenated).
        view: ``"input"`` (features of ``x``) or ``"rotated"`` (of ``T_R x``, with the items' fixed rotations).
        device: the network's device.
        name: the items' name in error messages.
        grid: None (global pooling: one number per channel) or the cells per spatial axis, e.g. ``(8, 8)``.
        ckpt_path: weights loaded into ``network`` when the evaluator starts (None: use it as it is).
        features: ``"map"`` or ``"coefficients"`` (harmonic latents only), see above.

    Returns:
        ``({"z": (N, L*P*G), "z_v": (N, L_v*P*G), "z_i": (N, L_i*P*G)}, labels (N,))``, float64 / int64 numpy
        arrays (``G = prod(grid)``, 1 for global pooling).

    Raises:
        ValueError: an item has no ``"label"`` (the message names ``name``), bad ``pooling`` / ``view`` /
            ``features``, a ``grid`` larger than the latent grid (both shapes named).
    """
    pools = _check_pooling(pooling)
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
    items = check_items(items, name, require=("image", "label") + (("rotation",) if view == "rotated" else ()))
    grid = check_grid(grid)
    core = check_network(network)
    harmonic = bool(getattr(core, "is_harmonic", False))
    flatten = check_features(features, harmonic) == "coefficients"
    key = "z_target" if view == "rotated" else "z"  # E(T_R x) or E(x)

    def collect(engine) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The pooled parts of the batch's latents (float64: identical parts, identical features), its labels."""
        z = engine.state.output[key]
        z_v, z_i = core.split(z)
        if harmonic and not flatten:  # the synthesis acts channel by channel: the split of the map is the same
            z, z_v, z_i = core.latent_map(z), core.latent_map(z_v), core.latent_map(z_i)
        if grid is not None and not flatten:
            check_grid(grid, z.shape[2:])
        mask = core.ald.hard_mask().detach().bool().to(z.device)
        kw = dict(grid=grid, flatten=flatten)
        parts = {"z": z.double(), "z_v": z_v.double()[:, mask], "z_i": z_i.double()[:, ~mask]}
        return {p: _pool(t, pools, **kw).cpu() for p, t in parts.items()}, item_labels(engine.state.batch)

    collector = CollectOutputs(collect)
    prepare = PrepareGroupActionBatch(identity_if_missing=view == "input")  # the input view needs no rotation
    was_training = unwrap(network).training
    try:
        run_study(core, items, transform, [collector], batch_size, ckpt_path, device, outputs=(key,),
                  prepare_batch=prepare)
    finally:
        core.train(was_training)
    feats = {p: torch.cat([f[p] for f, _ in collector.results]).numpy() for p in FEATURE_PARTS}
    return feats, torch.cat([lab for _, lab in collector.results]).numpy()


def _ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` (with positives and negatives); binary too.

    ``roc_auc_score(y, proba, multi_class="ovr")`` gives the same number when every class of the train split is
    in the test split, but raises when one is missing (a small test split, a block-position target); the
    indicator form below scores the present classes only, with the same sklearn function.
    """
    from sklearn.metrics import roc_auc_score

    present = [k for k, c in enumerate(classes) if 0 < int(np.sum(y == c)) < len(y)]
    if not present:
        return math.nan
    if len(classes) == 2:  # the two one-vs-rest AUCs of a binary problem are equal: score one
        present = present[:1]
    onehot = (np.asarray(y).reshape(-1, 1) == np.asarray(classes)[present].reshape(1, -1)).astype(int)
    if len(present) == 1:
        return float(roc_auc_score(onehot[:, 0], proba[:, present[0]]))
    return float(roc_auc_score(onehot, proba[:, present], average="macro"))


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Fit ``StandardScaler -> LogisticRegression`` on ``(train_x, train_y)`` and score it on the test set.

    Args:
        train_x / test_x: ``(N, F)`` features; train_y / test_y: ``(N,)`` integer labels.
        seed: ``random_state`` of the regression.
        c: inverse regularization strength.
        max_iter: solver iterations.

    Returns:
        ``{"accuracy", "precision", "recall", "f1"`` (macro), ``"auc"`` (one-vs-rest macro), ``"chance"`` (the
        majority-class rate of the test set), ``"num_features", "note"}``; with zero features every score is
        NaN and ``note`` says why.

    Raises:
        ValueError: fewer than two classes in ``train_y``, or shapes that do not agree.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    train_y, test_y = np.asarray(train_y).reshape(-1), np.asarray(test_y).reshape(-1)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x and test_x must be (N, F) with the same F, got {train_x.shape} and {test_x.shape}.")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"features and labels disagree in length: train {len(train_x)} vs {len(train_y)}, "
            f"test {len(test_x)} vs {len(test_y)}."
        )
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f"train_y must hold at least two classes for a probe, got {classes.tolist()}.")
    _, counts = np.unique(test_y, return_counts=True)
    result: dict[str, Any] = {"num_features": int(train_x.shape[1]), "chance": float(counts.max() / len(test_y)),
                              "note": ""}
    if train_x.shape[1] == 0:
        result.update(dict.fromkeys(("accuracy", "precision", "recall", "f1", "auc"), math.nan))
        result["note"] = "no channels in this part of the latent (empty partition): nothing to probe"
        return result
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    clf.fit(train_x, train_y)
    pred = clf.predict(test_x)
    proba = clf.predict_proba(test_x)
    p, r, f, _ = precision_recall_fscore_support(test_y, pred, average="macro", zero_division=0)
    result.update(
        accuracy=float(accuracy_score(test_y, pred)), precision=float(p), recall=float(r), f1=float(f),
        auc=_ovr_auc(test_y, proba, clf.classes_),
    )
    if math.isnan(result["auc"]):
        result["note"] = "AUC undefined: the test split holds a single class"
    return result


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def probe_table(results: Mapping[str, Mapping[str, Any]], protocol: str = "") -> str:
    """A Markdown table (one row per latent part, scores in %) with the protocol stated under it."""
    lines = ["| features | channels | accuracy | precision | recall | F1 | AUC | chance |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for part, r in results.items():
        lines.append(
            f"| {part} | {r['channels']} | {_fmt(r['accuracy'])} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | "
            f"{_fmt(r['f1'])} | {_fmt(r['auc'])} | {_fmt(r['chance'])} |"
        )
        if r.get("note"):
            notes.append(f"{part}: {r['note']}.")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + " ".join(notes) + "\n"
    if protocol:
        text += f"\nProtocol: {protocol}\n"
    return text


def run_probes(
    network: torch.nn.Module, train_items: Sequence[Mapping], test_items: Sequence[Mapping], output_dir: str,
    transform: Any = None, ckpt_path: str | None = None, device: Any = None, batch_size: int = 64,
    pooling: str | Sequence[str] = "avg", view: str = "input", seed: int = 0, c: float = 1.0, max_iter: int = 1000,
    protocol: str = "", filename: str = "probes", label_hint: str = "", grid: Sequence[int] | None = None,
    targets: Mapping[str, Callable[[Mapping], int]] | None = None, features: str = "map",
) -> dict[str, Any]:
    """The probe study (runner ``probe``): features of both splits, one probe per part, JSON and Markdown.

    Writes ``output_dir/{filename}.json`` (every score, the mask, the protocol) and ``output_dir/{filename}.md``
    (the table with the protocol under it), both atomically.

    Args:
        network: a ``GroupActionAutoEncoder``; ``ckpt_path`` (when given) is loaded into it strictly.
        train_items / test_items: data dicts with ``"image"`` and ``"label"``.
        output_dir: the bundle's eval folder.
        transform: the evaluation preprocessing.
        ckpt_path, device: the weights and where to run.
        batch_size, pooling, view: see :func:`extract_features`.
        seed, c, max_iter: see :func:`linear_probe`.
        protocol: a sentence about the data, stored and printed under the table.
        filename: base name of the two files.
        label_hint: appended to the error raised for items without a ``"label"`` (how this bundle's data can
            supply labels).
        grid: the probe grid (``probe_grid``): None for global pooling, e.g. ``(8, 8)`` / ``(4, 4, 4)``; ignored
            with ``features="coefficients"``.
        targets: other properties to probe, ``{name: item -> int}`` (e.g. :func:`block_position_target`,
            :func:`item_key_target`), each on z / z_v / z_i like the class label; results under
            ``out["targets"][name]`` and one more table each.
        features: ``probe_features``: ``"map"`` (a harmonic latent rendered on the latent grid, then pooled) or
            ``"coefficients"`` (flattened harmonic coefficients), see :func:`extract_features`.

    Returns:
        the results (NaN where undefined; ``null`` in the JSON file).

    Raises:
        ValueError: a split without labels (``"dataset has no labels for a probe: ..."``, the split and the
            item named), a checkpoint that does not match the network (the file and the tensors are named),
            fewer than two classes in the train split.

    Example::

        >>> out = run_probes(net, splits["train"], test_items, "eval", transform=preprocessing, ckpt_path="model.pt")
        >>> out["probes"]["z_v"]["accuracy"], out["probes"]["z_i"]["auc"]
    """
    train_items = check_labels(train_items, "train_items", label_hint)
    test_items = check_labels(test_items, "test_items", label_hint)
    core = check_network(network)
    grid = check_grid(grid)
    targets = dict(targets or {})
    for tname, fn in targets.items():
        if not callable(fn):
            raise ValueError(f"probe target {tname!r} must be a callable item -> int, got {type(fn).__name__}.")
    harmonic = bool(getattr(core, "is_harmonic", False))
    flatten = check_features(features, harmonic) == "coefficients"
    kw = dict(transform=transform, batch_size=batch_size, pooling=pooling, view=view, device=device, grid=grid,
              features=features)
    train_f, train_y = extract_features(core, train_items, name="train_items", ckpt_path=ckpt_path, **kw)
    test_f, test_y = extract_features(core, test_items, name="test_items", **kw)
    mask = core.ald.hard_mask().detach().cpu()
    n_v = int(mask.sum().item())
    channels = {"z": int(mask.numel()), "z_v": n_v, "z_i": int(mask.numel()) - n_v}
    results = {}
    for part in FEATURE_PARTS:
        r = linear_probe(train_f[part], train_y, test_f[part], test_y, seed=seed, c=c, max_iter=max_iter)
        results[part] = {**r, "channels": channels[part]}
    target_results: dict[str, dict[str, Any]] = {}
    for tname, fn in targets.items():
        ty_train = np.asarray([fn(d) for d in train_items], dtype=np.int64)
        ty_test = np.asarray([fn(d) for d in test_items], dtype=np.int64)
        target_results[tname] = {}
        for part in FEATURE_PARTS:
            r = linear_probe(train_f[part], ty_train, test_f[part], ty_test, seed=seed, c=c, max_iter=max_iter)
            target_results[tname][part] = {**r, "channels": channels[part]}
    pools = _check_pooling(pooling)
    rendered = "of the harmonic latent rendered on the latent grid (latent_map), " if harmonic and not flatten else ""
    if flatten:
        feature_txt = "flattened harmonic coefficients (no pooling)"
    elif grid is not None:
        feature_txt = f"{rendered}{'+'.join(pools)}-pooled to a {'x'.join(map(str, grid))} grid per channel"
    else:
        feature_txt = f"{rendered}globally {'+'.join(pools)}-pooled (one number per channel)"
    full_protocol = (
        f"logistic regression (StandardScaler + LogisticRegression, C={c}, seed {seed}) on latent features "
        f"{feature_txt} of the {view} images; fitted on {len(train_items)} train "
        f"images, scored on {len(test_items)} test images; scores in %, AUC one-vs-rest macro"
    )
    if protocol:
        full_protocol += f"; {protocol}"
    out = {
        "probes": results,
        "protocol": full_protocol,
        "pooling": list(pools),
        "grid": None if grid is None or flatten else list(grid),
        "features": feature_txt,
        "feature_space": "coefficients" if flatten else "map",
        "targets": target_results,
        "view": view,
        "num_train": len(train_items),
        "num_test": len(test_items),
        "num_classes": int(len(np.unique(train_y))),
        "partition": core.ald.partition,
        "tau": float(core.ald.tau),
        "mask": mask.tolist(),
        "mask_fraction": float(mask.mean().item()),
        "checkpoint": ckpt_path,
    }
    mask_line = f"Mask: {n_v}/{mask.numel()} varying channels ({core.ald.partition}, tau {core.ald.tau})"
    table = probe_table(results, f"{full_protocol}. {mask_line}.")
    for tname, res in target_results.items():
        table += f"\nTarget `{tname}` (instead of the class label):\n\n" + probe_table(res)
    write_outputs_atomic(output_dir, {f"{filename}.md": table, f"{filename}.json": out})
    logging.getLogger(__name__).info("\n" + table)
    return out
