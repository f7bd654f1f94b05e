"""Linear probes: how much class information the pooled latent ``z`` and its parts ``z_v`` / ``z_i`` carry.

A logistic regression (scikit-learn, standardized features, seeded) is fitted on spatially pooled features of the
train split and scored on the test split: accuracy, macro precision / recall / F1 and the one-vs-rest AUC.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_galr.analysis.utils import check_items, iterate_batches, prepare_network, unwrap, write_outputs_atomic

__all__ = ["FEATURE_PARTS", "POOLINGS", "check_labels", "extract_features", "linear_probe", "probe_table", "run_probes"]

FEATURE_PARTS = ("z", "z_v", "z_i")
POOLINGS = ("avg", "max")
VIEWS = ("input", "rotated")
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


def _pool(t: torch.Tensor, pools: tuple[str, ...]) -> torch.Tensor:
    """``(B, K, *spatial)`` -> ``(B, K * len(pools))``."""
    flat = t.flatten(2)
    feats = []
    for p in pools:
        if flat.shape[1] == 0:
            feats.append(flat.new_zeros(flat.shape[0], 0))
        else:
            feats.append(flat.mean(-1) if p == "avg" else flat.amax(-1))
    return torch.cat(feats, dim=1)


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
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled ``z``, ``z_v`` and ``z_i`` of every item (eval mode, batched, no gradients).

    ``z = network.encode(x)``; ``(z_v, z_i) = network.split(z)``; only the channels of each part are kept
    (``z_v``: the ALD mask's varying channels, ``z_i`` the others), then pooled over space.

    Args:
        network: a ``GroupActionAutoEncoder`` (already loaded; see :func:`run_probes`).
        items: data dicts with ``"image"`` and ``"label"`` (and ``"rotation"`` for ``view="rotated"``).
        transform: preprocessing of the items (padding, overlays).
        batch_size: images per forward pass.
        pooling: ``"avg"`` (global average), ``"max"`` or both (concatenated).
        view: ``"input"`` (features of ``x``) or ``"rotated"`` (of ``T_R x``, with the items' fixed rotations).
        device: the network's device.
        name: the items' name in error messages.

    Returns:
        ``({"z": (N, L*P), "z_v": (N, L_v*P), "z_i": (N, L_i*P)}, labels (N,))``, float64 / int64 numpy arrays.

    Raises:
        ValueError: an item has no ``"label"`` (the message names ``name``), bad ``pooling`` / ``view``.
    """
    pools = _check_pooling(pooling)
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
    items = check_items(items, name, require=("image", "label") + (("rotation",) if view == "rotated" else ()))
    core = unwrap(network)
    mask = core.ald.hard_mask().detach().cpu().bool()
    feats: dict[str, list[torch.Tensor]] = {k: [] for k in FEATURE_PARTS}
    labels = []
    was_training = core.training
    core.eval()
    try:
        for batch in iterate_batches(items, transform, batch_size, device, require_rotation=view == "rotated"):
            x = batch["target"] if view == "rotated" else batch["x"]
            z = core.encode(x)
            z_v, z_i = core.split(z)
            z, z_v, z_i = z.double(), z_v.double(), z_i.double()  # pool in float64: identical parts, identical features
            feats["z"].append(_pool(z, pools).cpu())
            feats["z_v"].append(_pool(z_v[:, mask.to(z.device)], pools).cpu())
            feats["z_i"].append(_pool(z_i[:, (~mask).to(z.device)], pools).cpu())
            labels.append(batch["label"].cpu())
    finally:
        core.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in feats.items()}, torch.cat(labels).numpy()


def _ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` (with positives and negatives); binary too."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for k, c in enumerate(classes):
        pos = y == c
        if pos.any() and (~pos).any():
            aucs.append(roc_auc_score(pos.astype(int), proba[:, k]))
    if len(classes) == 2 and aucs:  # the two one-vs-rest AUCs of a binary problem are equal
        return float(aucs[0])
    return float(np.mean(aucs)) if aucs else math.nan


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
    network: torch.nn.Module,
    train_items: Sequence[Mapping],
    test_items: Sequence[Mapping],
    output_dir: str,
    transform: Any = None,
    ckpt_path: str | None = None,
    device: Any = None,
    batch_size: int = 64,
    pooling: str | Sequence[str] = "avg",
    view: str = "input",
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 1000,
    protocol: str = "",
    filename: str = "probes",
    label_hint: str = "",
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
    core = prepare_network(network, ckpt_path, device)
    kw = dict(transform=transform, batch_size=batch_size, pooling=pooling, view=view, device=device)
    train_f, train_y = extract_features(core, train_items, name="train_items", **kw)
    test_f, test_y = extract_features(core, test_items, name="test_items", **kw)
    mask = core.ald.hard_mask().detach().cpu()
    n_v = int(mask.sum().item())
    channels = {"z": int(mask.numel()), "z_v": n_v, "z_i": int(mask.numel()) - n_v}
    results = {}
    for part in FEATURE_PARTS:
        r = linear_probe(train_f[part], train_y, test_f[part], test_y, seed=seed, c=c, max_iter=max_iter)
        results[part] = {**r, "channels": channels[part]}
    pools = _check_pooling(pooling)
    full_protocol = (
        f"logistic regression (StandardScaler + LogisticRegression, C={c}, seed {seed}) on "
        f"{'+'.join(pools)}-pooled latent features of the {view} images; fitted on {len(train_items)} train "
        f"images, scored on {len(test_items)} test images; scores in %, AUC one-vs-rest macro"
    )
    if protocol:
        full_protocol += f"; {protocol}"
    out = {
        "probes": results,
        "protocol": full_protocol,
        "pooling": list(pools),
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
    write_outputs_atomic(output_dir, {f"{filename}.md": table, f"{filename}.json": out})
    logging.getLogger(__name__).info("\n" + table)
    return out
