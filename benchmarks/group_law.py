"""How well a trained model's latent action keeps the group laws, on a bundle's test split with its fixed protocol.

For one bundle and one checkpoint the script evaluates, on the bundle's own ``test_items`` (``train.yaml`` +
overlays + ``evaluate.yaml``, parsed with ``monai.bundle.ConfigParser``; the fixed, seeded rotation of each test
image) through ``validate#preprocessing``, with the network in eval mode and without gradients:

- ``identity``: the reconstruction ``D(E(x))`` vs ``x`` (the evaluator's ``network(x)``);
- ``one-shot``: ``D(Phi_R(E(x)))`` vs ``T_R x`` (the evaluator's ``network(x, R)``);
- ``R as n steps`` (n = 2, 6, 12): ``R^(1/n)`` applied n times in latent space, decoded once, vs ``T_R x``.
  ``R^(1/n)`` is the principal root: SO(2) the angle in (-pi, pi] divided by n; SO(3) the axis-angle vector
  (angle in [0, pi]) scaled by 1/n (``monai_galr.groups`` conversions, in float64);
- ``R then R^-1``: ``Phi_{R^-1}(Phi_R(E(x)))`` decoded, vs ``x``;
- ``12 x 30 deg``: twelve latent steps of 30 degrees about a fixed axis (2D: the image plane; 3D: the first array
  axis, H), decoded once, vs ``x``;
- ``6 re-encodings``: ``y0 = x``, ``y_{k+1} = network(y_k, R_60)`` (decode, encode again; 60 degrees about the same
  fixed axis), ``y_6`` vs ``x`` after the full turn;
- ``latent / image``: the numbers in ``network.encode(x)[0]`` (twice that for a complex latent) over those in
  ``x[0]``;
- the **training step** of the method (as ``GroupActionTrainer``: ``T_R x`` on the device with fresh Haar rotations,
  ``network(x, R, T_R x)``, the bundle's ``loss``, backward, Adam step) against a **plain autoencoder step** of the
  same network (``decode(encode(x))``, MSE, backward, Adam step), on the bundle's ``batch_size`` of test images,
  timed after warm-up; peak memory (CPU: peak RSS of the process, ``resource.getrusage``, with its increase over
  the resident memory before the first training step; the high-water mark is reset before each kind of step through
  ``/proc/self/clear_refs``; CUDA: ``torch.cuda.max_memory_allocated``).  By default the timing runs in a fresh
  process (``--timing process``) so that memory freed by the evaluation does not hide the training's own.

PSNR (``monai.metrics.PSNRMetric``, ``max_val`` 1) and SSIM (the bundle's ``validate#metrics#ssim``, i.e. MONAI's
``SSIMMetric`` with data range 1) are averaged per image.  Only the network's public API is used
(``encode``, ``apply_action``, ``decode``, ``forward``), so the latent may be a spatial map or coefficients.  Each
cell shows ``PSNR / SSIM`` and, in brackets, the PSNR gap in dB to its counterpart: one-shot for the multi-step
rows, identity for round trip, circle and re-encodings.

The result is one Markdown table row (``--label`` names it), printed and, with ``--out DIR``, written to
``DIR/group_law.md`` and ``DIR/group_law.json``; ``--append_to FILE.md`` adds the row (and its protocol note) to
the table in ``FILE.md`` (created when missing; a row with the same label is replaced), under a lock and with an
atomic replace, so rows of several runs (grid vs harmonic, ...) build one table.

Example (from the repository root; on a shared CPU use ``nice`` and one thread)::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/group_law.py --bundle bundles/rotated_mnist_so2 \\
        --label "grid (shipped)" --max_test 200 --out runs/group_law_mnist
    python benchmarks/group_law.py --bundle bundles/rotated_mnist_so2 --ckpt runs/harm/models/model.pt \\
        --set action=harmonic --label harmonic --append_to bundles/rotated_mnist_so2/docs/group_law.md
    python benchmarks/group_law.py --bundle bundles/adrenal_ct_so3 --max_test 50 --device cuda --label grid
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import gc
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["CASES", "COLUMNS", "bundle_parser", "fixed_axis_rotation", "main", "parse_overrides", "rotation_root"]

_HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = (2, 6, 12)
# (key, target, counterpart whose PSNR the gap is taken against)
CASES = (
    ("identity", "x", None),
    ("one_shot", "T_R x", None),
    *((f"steps_{n}", "T_R x", "one_shot") for n in STEPS),
    ("round_trip", "x", "identity"),
    ("circle", "x", "identity"),
    ("reencode", "x", "identity"),
)
COLUMNS = (
    "model",
    "latent / image",
    "identity D(E(x)): PSNR / SSIM",
    "one-shot R: PSNR / SSIM",
    *(f"R as {n} steps (gap to one-shot, dB)" for n in STEPS),
    "R then R^-1 (gap to identity)",
    "12 x 30 deg (gap to identity)",
    "6 re-encodings x 60 deg (gap to identity)",
    "train step ms: method / plain AE (ratio)",
    "peak MiB: method / plain AE",
)


def _bench_3d_speed():
    """``benchmarks/bench_3d_speed.py`` as a module (its memory probes are reused here)."""
    spec = importlib.util.spec_from_file_location("bench_3d_speed", os.path.join(_HERE, "bench_3d_speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- configuration -----------------------------------------------------------------------------------------


def parse_overrides(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``[["key=value"], ["key", "value"], ...]`` -> ``{key: value}``; values are Python literals when they parse.

    Raises:
        ValueError: an entry that is neither ``key=value`` nor ``key value``, or an empty key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if len(pair) == 1 and "=" in pair[0]:
            key, raw = pair[0].split("=", 1)
        elif len(pair) == 2:
            key, raw = pair
        else:
            raise ValueError(f"--set takes key=value or key value, got {' '.join(pair)!r}.")
        key = key.strip()
        if not key:
            raise ValueError(f"--set needs a config key, got {' '.join(pair)!r}.")
        try:
            value = ast.literal_eval(raw) if not raw.startswith(("$", "@", "%")) else raw
        except (ValueError, SyntaxError):
            value = raw
        out[key] = value
    return out


def bundle_parser(bundle: str, overlays: Sequence[str] = (), overrides: Mapping[str, Any] | None = None):
    """A ``ConfigParser`` over ``train.yaml`` + ``overlays`` + ``evaluate.yaml`` of ``bundle``, with overrides set.

    Raises:
        FileNotFoundError: a config file is missing.
    """
    from monai.bundle import ConfigParser

    files = [os.path.join(bundle, "configs", n) for n in ["train.yaml", *overlays, "evaluate.yaml"]]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"bundle config file(s) not found: {missing}.")
    parser = ConfigParser()
    parser.read_config(files)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


# ---- group elements ----------------------------------------------------------------------------------------


def rotation_root(r: torch.Tensor, n: int) -> torch.Tensor:
    """The principal ``n``-th root of ``(B, d, d)`` rotations: ``root^n == r``.

    SO(2): the angle taken in (-pi, pi] and divided by ``n``; SO(3): the axis-angle vector (angle in [0, pi])
    scaled by ``1/n``.  Computed in float64, returned in ``r``'s dtype and device.
    """
    from monai_galr.groups import angle_to_matrix, axis_angle_to_matrix, matrix_to_angle, matrix_to_axis_angle

    r64 = r.detach().to(torch.float64)
    if r.shape[-1] == 2:
        a = matrix_to_angle(r64)
        a = torch.where(a > math.pi, a - 2 * math.pi, a)
        out = angle_to_matrix(a / n)
    else:
        out = axis_angle_to_matrix(matrix_to_axis_angle(r64) / n)
    return out.to(dtype=r.dtype, device=r.device)


def fixed_axis_rotation(batch: int, dim: int, angle: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(batch, dim, dim)`` rotations by ``angle`` radians: 2D in the plane, 3D about the first array axis (H)."""
    from monai_galr.groups import angle_to_matrix, axis_angle_to_matrix

    if dim == 2:
        r = angle_to_matrix(torch.full((batch,), float(angle), dtype=torch.float64))
    else:
        v = torch.zeros(batch, 3, dtype=torch.float64)
        v[:, 0] = float(angle)
        r = axis_angle_to_matrix(v)
    return r.to(dtype=dtype, device=device)


# ---- the group-law metrics ---------------------------------------------------------------------------------


def _numbers(t: torch.Tensor) -> int:
    return t.numel() * (2 if t.is_complex() else 1)


@torch.no_grad()
def group_law_batch(
    net: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, rotation: torch.Tensor
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """``({case: (prediction, reference)}, latent / image)`` for one batch (see the module docstring).

    Args:
        net: a ``GroupActionAutoEncoder`` in eval mode.
        x: the input ``(B, C, *spatial)``; target: ``T_R x``; rotation: ``R``, ``(B, d, d)``.
    """
    b, d = x.shape[0], rotation.shape[-1]
    from monai_galr.groups import inverse

    z = net.encode(x)
    out = {"identity": (net(x), x), "one_shot": (net(x, rotation), target)}
    for n in STEPS:
        root, zn = rotation_root(rotation, n), z
        for _ in range(n):
            zn = net.apply_action(zn, root)
        out[f"steps_{n}"] = (net.decode(zn), target)
    out["round_trip"] = (net.decode(net.apply_action(net.apply_action(z, rotation), inverse(rotation))), x)
    r30 = fixed_axis_rotation(b, d, math.pi / 6, dtype=rotation.dtype, device=rotation.device)
    zc = z
    for _ in range(12):
        zc = net.apply_action(zc, r30)
    out["circle"] = (net.decode(zc), x)
    r60 = fixed_axis_rotation(b, d, math.pi / 3, dtype=rotation.dtype, device=rotation.device)
    y = x
    for _ in range(6):
        y = net(y, r60)
    out["reencode"] = (y, x)
    return out, _numbers(z[0]) / _numbers(x[0])


def evaluate_group_laws(net, batches, ssim_metric, amp: bool = False) -> dict:
    """Per-image mean PSNR / SSIM of every case over ``batches`` (dicts with ``x``, ``target``, ``rotation``).

    ``amp``: run the network under ``torch.autocast`` as the bundle's evaluator does with ``amp: true``.
    """
    from monai.metrics import PSNRMetric

    psnr_metric = PSNRMetric(max_val=1.0)
    values: dict[str, dict[str, list[torch.Tensor]]] = {k: {"psnr": [], "ssim": []} for k, _, _ in CASES}
    ratio, count = None, 0
    net.eval()
    for batch in batches:
        with torch.autocast(batch["x"].device.type, enabled=bool(amp)):
            preds, ratio = group_law_batch(net, batch["x"], batch["target"], batch["rotation"])
        count += batch["x"].shape[0]
        for key, (pred, ref) in preds.items():
            for name, metric in (("psnr", psnr_metric), ("ssim", ssim_metric)):
                v = metric(y_pred=pred.float(), y=ref.float())
                metric.reset()
                values[key][name].append(v.reshape(-1).double().cpu())
    if count == 0:
        raise ValueError("the test split is empty: nothing to evaluate.")
    res: dict[str, Any] = {"images": count, "latent_ratio": ratio, "cases": {}}
    for key, target, against in CASES:
        psnr = torch.cat(values[key]["psnr"]).mean().item()
        ssim = torch.cat(values[key]["ssim"]).mean().item()
        res["cases"][key] = {"psnr": psnr, "ssim": ssim, "target": target, "gap_to": against}
    for key, _, against in CASES:
        if against is not None:
            res["cases"][key]["gap_db"] = res["cases"][key]["psnr"] - res["cases"][against]["psnr"]
    return res


# ---- training-step timing ----------------------------------------------------------------------------------


def time_training_steps(
    net, loss_fn, batch: Mapping, steps: int, warmup: int, lr: float, seed: int = 0, amp: bool = False
) -> dict:
    """Time the method's training step and a plain autoencoder step of ``net`` on one ``batch`` (plain first).

    ``batch`` holds ``"image"`` (the foreground) and optionally ``"background"`` / ``"background_mask"``, already
    on the network's device; each method step draws fresh Haar rotations and builds ``x`` / ``T_R x`` with the
    trainer's ``PrepareGroupActionBatch``.  ``amp``: both steps under ``torch.autocast`` with a ``GradScaler``
    (on CUDA), as ``GroupActionTrainer`` with ``amp: true``.
    """
    from monai_galr.engines import PrepareGroupActionBatch
    from monai_galr.groups import random_rotation

    b3 = _bench_3d_speed()
    device = batch["image"].device
    dim = batch["image"].ndim - 2
    n = batch["image"].shape[0]
    gen = torch.Generator().manual_seed(seed)
    prepare = PrepareGroupActionBatch(random_if_missing=False)
    x_plain, _, _, _ = prepare({**batch, "rotation": torch.eye(dim).expand(n, dim, dim)}, device)
    net.train()

    scaler = torch.amp.GradScaler(device.type, enabled=bool(amp) and device.type == "cuda")

    def update(opt, loss):
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def plain_step(opt):
        with torch.autocast(device.type, enabled=bool(amp)):
            loss = torch.mean((net.decode(net.encode(x_plain)).float() - x_plain) ** 2)
        update(opt, loss)

    def group_step(opt):
        r = random_rotation(n, dim, generator=gen)
        x, target, (r,), _ = prepare({**batch, "rotation": r}, device)
        with torch.autocast(device.type, enabled=bool(amp)):
            out = net(x, r, target)
            loss = loss_fn.from_outputs(out, target)["loss"]
        update(opt, loss)

    def reset_peak() -> bool:
        """Reset the peak (RSS high-water mark, Linux ``clear_refs``; CUDA peak stats); False where it cannot."""
        gc.collect()
        if device.type == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats(device)
            return True
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result: dict[str, Any] = {"batch": n, "steps": steps, "warmup": warmup, "device": str(device), "amp": bool(amp)}
    for name, step in (("plain", plain_step), ("method", group_step)):
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        reset = reset_peak()
        before = b3._current_rss_mb() if device.type == "cpu" else torch.cuda.memory_allocated(device) / 2**20
        for _ in range(warmup):
            step(opt)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step(opt)
        sync()
        wall, cpu = (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
        peak = b3._rss_mb() if device.type == "cpu" else torch.cuda.max_memory_allocated(device) / 2**20
        result[name] = {"wall_ms": 1e3 * wall, "cpu_ms": 1e3 * cpu, "peak_mb": peak, "before_mb": before,
                        "peak_reset": reset}
        del opt
    key = "cpu_ms" if device.type == "cpu" else "wall_ms"
    result["ratio"] = result["method"][key] / max(result["plain"][key], 1e-12)
    result["ratio_of"] = "CPU time per step" if device.type == "cpu" else "wall time per step"
    if device.type == "cuda":
        result["memory"] = "torch.cuda.max_memory_allocated during each kind of step"
    elif result["plain"]["peak_reset"] and result["method"]["peak_reset"]:
        result["memory"] = "peak RSS during each kind of step (high-water mark reset before it)"
    else:
        result["memory"] = "peak RSS of the process so far (high-water mark could not be reset)"
    return result


# ---- setup from the bundle ---------------------------------------------------------------------------------


def load_setup(args: argparse.Namespace) -> dict:
    """Network (weights loaded, eval mode), test items, preprocessing, SSIM metric and loss from the bundle."""
    from monai_galr.analysis.utils import prepare_network
    from monai_galr.bundle import additional_metrics

    overrides = parse_overrides(args.set)
    parser = bundle_parser(args.bundle, args.overlay, overrides)
    device = torch.device(args.device) if args.device else parser.get_parsed_content("device")
    ckpt = args.ckpt or parser.get_parsed_content("ckpt_path")
    net = prepare_network(parser.get_parsed_content("network_def"), ckpt, device)
    items = list(parser.get_parsed_content("test_items"))
    total = len(items)
    if args.max_test is not None:
        items = items[: args.max_test]
    spatial_dims = int(parser.get_parsed_content("spatial_dims"))
    # the bundle's own SSIM (monai_galr.bundle.additional_metrics, with its ssim_win_size when it sets one)
    win = parser.get_parsed_content("ssim_win_size") if "ssim_win_size" in parser else None
    ssim_metric = additional_metrics("val", spatial_dims, ssim_win_size=win)["val_ssim"].metric_fn
    eval_bs = args.eval_batch_size or int(parser.get_parsed_content("validate#dataloader#batch_size"))
    train_bs = args.batch_size or int(parser.get_parsed_content("batch_size"))
    lr = float(parser.get_parsed_content("learning_rate")) if "learning_rate" in parser else 1e-3
    amp = bool(parser.get_parsed_content("amp")) if "amp" in parser else False
    protocol = {
        "bundle": args.bundle,
        "overlays": list(args.overlay),
        "overrides": overrides,
        "ckpt": ckpt,
        "test_items": f"first {len(items)} of {total}" if len(items) < total else f"all {total}",
        "eval_seed": parser.get_parsed_content("eval_seed") if "eval_seed" in parser else None,
        "eval_angles": parser.get_parsed_content("eval_angles") if "eval_angles" in parser else "uniform",
        "spatial_dims": spatial_dims,
        "fixed_axis": "the image plane" if spatial_dims == 2 else "the first array axis (H)",
        "action": getattr(net, "action_name", None),
        "partition": getattr(getattr(net, "ald", None), "partition", None),
        "varying_fraction": net.ald.varying_fraction() if hasattr(net, "ald") else None,
        "amp": amp,
    }
    return {
        "parser": parser,
        "net": net,
        "device": device,
        "items": items,
        "transform": parser.get_parsed_content("validate#preprocessing"),
        "ssim_metric": ssim_metric,
        "eval_batch_size": eval_bs,
        "train_batch_size": train_bs,
        "lr": lr,
        "amp": amp,
        "protocol": protocol,
    }


def _timing_batch(setup: dict) -> dict:
    from monai_galr.analysis.utils import iterate_batches

    items, bs = setup["items"], setup["train_batch_size"]
    batch_items = [items[i % len(items)] for i in range(bs)]
    b = next(iterate_batches(batch_items, setup["transform"], bs, setup["device"]))
    out = {"image": b["foreground"]}
    if b["background"] is not None:
        out["background"], out["background_mask"] = b["background"], b["background_mask"]
    return out


def run_timing(setup: dict, args: argparse.Namespace) -> dict:
    loss_fn = setup["parser"].get_parsed_content("loss")
    return time_training_steps(
        setup["net"], loss_fn, _timing_batch(setup), steps=args.steps, warmup=args.warmup, lr=setup["lr"],
        amp=setup["amp"],
    )


def _timing_in_child(argv: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--_timing_child"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the timing process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---- the table ---------------------------------------------------------------------------------------------


def _cell(value: float, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None or not math.isfinite(value) else fmt.format(value)


def header_lines() -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def table_row(label: str, res: dict) -> str:
    c = res["cases"]

    def ps(key):
        return f"{_cell(c[key]['psnr'])} / {_cell(c[key]['ssim'], '{:.3f}')}"

    def gap(key):
        return f"{ps(key)} ({_cell(c[key]['gap_db'], '{:+.2f}')})"

    t = res.get("timing")
    if t:
        step = (f"{_cell(t['method']['wall_ms'], '{:.1f}')} / {_cell(t['plain']['wall_ms'], '{:.1f}')} "
                f"({_cell(t['ratio'])}x)")
        mem = f"{_cell(t['method']['peak_mb'], '{:.0f}')} / {_cell(t['plain']['peak_mb'], '{:.0f}')}"
        if t["device"].startswith("cpu"):  # RSS: also the increase over the memory before the first training step
            base = t["plain"]["before_mb"]
            mem += (f" (+{_cell(t['method']['peak_mb'] - base, '{:.0f}')} / "
                    f"+{_cell(t['plain']['peak_mb'] - base, '{:.0f}')})")
    else:
        step = mem = "not timed"
    cells = [label.replace("|", "\\|"), f"{_cell(res['latent_ratio'])}x", ps("identity"), ps("one_shot"),
             *(gap(f"steps_{n}") for n in STEPS), gap("round_trip"), gap("circle"), gap("reencode"), step, mem]
    return "| " + " | ".join(cells) + " |"


def note_line(label: str, res: dict) -> str:
    p, t = res["protocol"], res.get("timing")
    text = (f"- **{label}**: {p['bundle']} (overlays {p['overlays'] or 'none'}, overrides {p['overrides'] or 'none'}), "
            f"checkpoint {p['ckpt']}; action {p['action']}, partition {p['partition']} (varying fraction "
            f"{_cell(p['varying_fraction'], '{:.3f}')}); test split: {p['test_items']} items, fixed seeded rotations "
            f"(seed {p['eval_seed']}, angles {p['eval_angles']}); fixed axis: {p['fixed_axis']}; intensities in "
            f"[0, 1], PSNR / SSIM (MONAI, data range 1) averaged per image{', amp' if p.get('amp') else ''}")
    if t:
        text += (f"; training step on {t['device']}, batch {t['batch']}, {t['steps']} timed steps after {t['warmup']} "
                 f"warm-up, {t.get('threads', '?')} thread(s), ratio of {t['ratio_of']}, memory: {t['memory']}"
                 + (" (in brackets the increase over the resident memory before the first training step: model, data, "
                    "interpreter)" if t["device"].startswith("cpu")
                    else ""))
    return text + f"; {res['wall_s']:.0f} s."


def render(label: str, res: dict) -> str:
    return "\n".join([*header_lines(), table_row(label, res), "", note_line(label, res)]) + "\n"


@contextlib.contextmanager
def _locked_dir(folder: str):
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append_row(path: str, label: str, res: dict) -> str:
    """Add (or replace, by label) this run's row and note in the group-law table of ``path``; returns the text.

    Raises:
        ValueError: ``path`` exists but holds no table with this script's header.
    """
    from monai_galr.utils import write_text_atomic

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    head = header_lines()
    row, note = table_row(label, res), note_line(label, res)
    row_key = "| " + label.replace("|", "\\|") + " |"
    note_key = f"- **{label}**:"
    with _locked_dir(folder):
        if not os.path.isfile(path):
            text = "\n".join([*head, row, "", note]) + "\n"
        else:
            with open(path) as f:
                lines = f.read().splitlines()
            if head[0] not in lines:
                raise ValueError(
                    f"{path!r} holds no group-law table (expected the header line {head[0]!r}); give a new file or "
                    "one written by this script."
                )
            start = lines.index(head[0]) + 2
            end = start
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            rows = [r for r in lines[start:end] if not r.startswith(row_key)] + [row]
            rest = [ln for ln in lines[end:] if not ln.startswith(note_key)]
            while rest and not rest[-1].strip():
                rest.pop()
            if not rest:
                rest = [""]
            text = "\n".join([*lines[:start], *rows, *rest, note]) + "\n"
        write_text_atomic(text, path)
    return text


# ---- command line ------------------------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/rotated_mnist_so2")
    p.add_argument("--ckpt", default=None, help="weights to load (default: the bundle's ckpt_path, models/model.pt)")
    p.add_argument("--overlay", action="append", default=[],
                   help="extra config file(s) of the bundle, e.g. blocked.yaml")
    p.add_argument("--set", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, key=value (or key value), e.g. --set partition=manual; repeatable")
    p.add_argument("--label", default=None, help="the row's name (default: action / partition of the network)")
    p.add_argument("--max_test", type=int, default=None, help="evaluate the first N test items only")
    p.add_argument("--eval_batch_size", type=int, default=0, help="0: the bundle's validate#dataloader#batch_size")
    p.add_argument("--batch_size", type=int, default=0, help="training-step batch; 0: the bundle's batch_size")
    p.add_argument("--steps", type=int, default=5, help="timed training steps of each kind")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps before them")
    p.add_argument("--timing", default="process", choices=("process", "inline", "off"),
                   help="time the training steps in a fresh process (peak memory of training alone), in this one, "
                        "or not at all")
    p.add_argument("--device", default=None, help="default: the bundle's device")
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--out", default=None, help="folder for group_law.md and group_law.json")
    p.add_argument("--append_to", default=None, help="add the row to the table in this Markdown file")
    p.add_argument("--_timing_child", action="store_true", help=argparse.SUPPRESS)
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not os.path.isdir(args.bundle):
        p.error(f"--bundle {args.bundle!r} is not a folder")
    if args.ckpt is not None and not os.path.isfile(args.ckpt):
        p.error(f"--ckpt {args.ckpt!r} is not a file")
    for name in ("max_test",):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name} must be a positive int, got {v}")
    for name in ("eval_batch_size", "batch_size", "num_threads", "warmup"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    try:
        parse_overrides(args.set)
    except ValueError as e:
        p.error(str(e))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_arg_parser()
    args = p.parse_args(argv)
    _check_args(p, args)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    t0 = time.time()
    setup = load_setup(args)
    if args._timing_child:
        timing = run_timing(setup, args)
        timing["threads"] = torch.get_num_threads()
        print("RESULT " + json.dumps(timing), flush=True)
        return 0

    from monai_galr.analysis.utils import iterate_batches
    from monai_galr.utils import json_safe, write_text_atomic

    batches = iterate_batches(setup["items"], setup["transform"], setup["eval_batch_size"], setup["device"])
    res = evaluate_group_laws(setup["net"], batches, setup["ssim_metric"], amp=setup["amp"])
    if args.timing == "inline":
        res["timing"] = run_timing(setup, args)
        res["timing"]["threads"] = torch.get_num_threads()
    elif args.timing == "process":
        res["timing"] = _timing_in_child([*argv, "--timing", "off"])
    res["protocol"] = setup["protocol"]
    res["wall_s"] = time.time() - t0
    res["command"] = " ".join([os.path.relpath(__file__), *argv])
    p_ = setup["protocol"]
    label = args.label or f"{p_['action']} / {p_['partition']}"
    res["label"] = label
    text = render(label, res)
    print(text, end="")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_text_atomic(text, os.path.join(args.out, "group_law.md"))
        write_text_atomic(json.dumps(json_safe(res), indent=2, sort_keys=True) + "\n",
                          os.path.join(args.out, "group_law.json"))
    if args.append_to:
        append_row(args.append_to, label, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
