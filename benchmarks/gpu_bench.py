"""GPU benchmark of the 3D bundles at full resolution: speed, peak memory and a short training run's rotated PSNR.

For each bundle (``brain_mri_so3`` at 160x192x224, the OASIS grid; ``adrenal_ct_so3`` at 64^3, AdrenalMNIST3D's),
each precision (``fp32``; ``bf16``: ``torch.autocast`` with bfloat16, no grad scaler) and each variant:

- ``plain``: the bundle's network (``action: grid``) trained as a plain autoencoder, ``decode(encode(x))`` vs
  ``x`` (MSE): the reference step;
- ``grid`` / ``harmonic``: the bundle's group-action training step with that latent action (``T_R x`` by one
  batched ``grid_sample``, the network's training forward with the stop-gradient second encoding, the bundle's
  ``GroupActionLoss``, backward, the bundle's optimizer), as ``GroupActionTrainer._iteration`` runs it,

the script trains a fresh network for ``--steps`` steps (the first ``--warmup`` untimed) on a few volumes of the
bundle's own synthetic data (adrenal: ``monai_galr.data.synthetic_adrenal_volume``; brain: the OASIS-style demo
subjects of ``monai_galr.data.make_demo_oasis``, from nilearn's MNI152 template), then reports:

- volumes/s and ms per step of the timed steps, and the step-time ratio vs ``plain`` at the same precision;
- peak memory: ``torch.cuda.max_memory_allocated`` on a GPU (reset before the run); on the CPU the peak resident
  set size of the process (``resource.getrusage``; each run in its own process unless ``--isolate no``);
- the rotated PSNR ``decode(Phi_R(encode(x)))`` vs ``T_R x`` (data range 1, MONAI's ``PSNRMetric``) on held-out
  volumes with fixed seeded Haar rotations, and the identity PSNR ``decode(encode(x))`` vs ``x`` beside it (the
  protocol of docs: the rotated prediction cannot beat the model's own reconstruction); ``plain`` gets the grid
  action on a latent never trained for it (a baseline); and the ALD varying fraction.

The network, loss and optimizer are the bundle's ``train.yaml`` entries (``network_def``, ``loss``,
``optimizer``, ``batch_size``, read with ``monai.bundle.ConfigParser``), with ``action`` and ``spatial_size`` set
per run (a numeric ``harmonic_max_radius``, in latent voxels of the bundle's own ``spatial_size``, is scaled to the
benchmark size so that the shells cover the same share of the grid). The same command runs on one GPU (``--device cuda``) and on the CPU; a tiny ``--size`` makes it a smoke
test (``tests/benchmarks/test_gpu_bench.py``).

Examples (from the repository root)::

    python benchmarks/gpu_bench.py --device cuda                      # both bundles, full size, fp32 + bf16
    python benchmarks/gpu_bench.py --device cuda --bundles adrenal_ct_so3 --actions grid harmonic --json out.json
    nice python benchmarks/gpu_bench.py --device cpu --size 16 --steps 3 --warmup 1 --train_volumes 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FULL_SIZES = {"brain_mri_so3": (160, 192, 224), "adrenal_ct_so3": (64, 64, 64)}
VARIANTS = ("plain", "grid", "harmonic")
PRECISIONS = ("fp32", "bf16")
HARMONIC_KEYS = ("harmonic_radii", "harmonic_lmax", "harmonic_angles", "harmonic_max_radius")

__all__ = ["FULL_SIZES", "build", "main", "parse_size", "run_one", "synthetic_volumes"]


def parse_size(text: str, name: str = "--size") -> tuple[int, int, int]:
    """``"64"`` -> ``(64, 64, 64)``; ``"160x192x224"`` -> ``(160, 192, 224)``.

    Raises:
        ValueError: not one or three positive integers (the message names ``name``).
    """
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError as e:
        raise ValueError(f"{name} must be an edge or HxWxD of positive integers, got {text!r}.") from e
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"{name} must be an edge or HxWxD of positive integers, got {text!r}.")
    return tuple(parts)  # type: ignore[return-value]


def _bundle_dir(bundle: str) -> Path:
    path = Path(bundle)
    if not (path / "configs" / "train.yaml").is_file():
        path = REPO / "bundles" / bundle
    if not (path / "configs" / "train.yaml").is_file():
        raise ValueError(f"--bundles: {bundle!r} is neither a bundle folder nor a bundle under {REPO / 'bundles'}.")
    if path.name not in FULL_SIZES:
        raise ValueError(f"--bundles: {path.name!r} has no benchmark data; choose from {sorted(FULL_SIZES)}.")
    return path


def build(bundle: Path, action: str, size: tuple[int, int, int], device: str) -> tuple[Any, Any, Any, dict]:
    """The bundle's ``network`` (with ``action``, ``spatial_size`` = ``size``), ``loss`` and ``optimizer``.

    Returns:
        ``(network, loss, optimizer, entries)``; ``entries`` holds the config values the report names.

    Raises:
        ValueError: ``action`` unknown to this ``monai_galr`` (``harmonic`` before it landed), with the option named.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.yaml"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = f"$torch.device({device!r})"
    parser["action"] = action
    own_size = parser["spatial_size"] if "spatial_size" in parser else None
    parser["spatial_size"] = list(size)
    radius = parser["harmonic_max_radius"] if "harmonic_max_radius" in parser else None
    if isinstance(radius, (int, float)) and not isinstance(radius, bool) and isinstance(own_size, list):
        # in latent voxels of the bundle's own grid: keep the same share of the grid at the benchmark size
        parser["harmonic_max_radius"] = float(radius) * min(n / float(o) for n, o in zip(size, own_size))
    if action == "harmonic" and "spatial_size" not in parser["network_def"]:  # the harmonic grid is fixed on it
        parser["network_def"]["spatial_size"] = "@spatial_size"
    try:
        network = parser.get_parsed_content("network")
    except Exception as e:  # noqa: BLE001 - MONAI wraps the constructor's error; name the option
        if action not in str(e):
            raise
        raise ValueError(f"--actions {action}: the network rejects action {action!r} here: {e}") from e
    keys = ("channels", "strides", "latent_channels", "batch_size") + (HARMONIC_KEYS if action == "harmonic" else ())
    entries = {k: parser[k] for k in keys if k in parser}
    return network, parser.get_parsed_content("loss"), parser.get_parsed_content("optimizer"), entries


_VOLUMES: dict[tuple, Any] = {}  # one process runs every variant on the same volumes: make them once


def synthetic_volumes(bundle_name: str, size: tuple[int, int, int], n: int, seed: int):
    """``n`` volumes ``float32 (n, 1, *size)`` in [0, 1] of the bundle's own synthetic data (cached per process)."""
    key = (bundle_name, tuple(size), n, seed)
    if key not in _VOLUMES:
        _VOLUMES[key] = _make_volumes(bundle_name, tuple(size), n, seed)
    return _VOLUMES[key].clone()


def _make_volumes(bundle_name: str, size: tuple[int, int, int], n: int, seed: int):
    import numpy as np
    import torch

    if bundle_name == "adrenal_ct_so3":
        from monai_galr.data import synthetic_adrenal_volume

        rng = np.random.default_rng(seed)
        edge = max(size)
        vols = torch.as_tensor(
            np.stack([synthetic_adrenal_volume(rng, size=edge, mass=bool(i % 2)) for i in range(n)])[:, None],
            dtype=torch.float32,
        )
    else:
        import nibabel as nib

        from monai_galr.data import make_demo_oasis

        with tempfile.TemporaryDirectory(prefix="gpu_bench_brain_") as tmp:
            files = make_demo_oasis(tmp, n_subjects=n, seed=seed, shape=size)
            vols = torch.stack([torch.as_tensor(np.asarray(nib.load(f).dataobj, np.float32)) for f in files])[:, None]
    if tuple(vols.shape[2:]) != tuple(size):
        vols = torch.nn.functional.interpolate(vols, size=size, mode="trilinear", align_corners=False)
    return vols.clamp(0.0, 1.0).contiguous()


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train one (bundle, variant, precision) and measure it; ``cfg`` is one row of the plan (see ``main``)."""
    import torch
    from monai.metrics import PSNRMetric

    from monai_galr.groups import random_rotation, rotate_image

    device = torch.device(cfg["device"])
    torch.manual_seed(cfg["seed"])
    bundle, size, variant = Path(cfg["bundle"]), tuple(cfg["size"]), cfg["variant"]
    net, loss_fn, opt, entries = build(bundle, "grid" if variant == "plain" else variant, size, str(device))
    batch = int(cfg["batch_size"] or entries["batch_size"])
    data = synthetic_volumes(bundle.name, size, cfg["train_volumes"] + cfg["test_volumes"], cfg["seed"]).to(device)
    train, test = data[: cfg["train_volumes"]], data[cfg["train_volumes"] :]
    gen = torch.Generator().manual_seed(cfg["seed"])
    amp = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": cfg["precision"] == "bf16"}

    def step(i: int) -> float:
        idx = torch.arange(i * batch, (i + 1) * batch) % train.shape[0]
        x = train[idx.to(device)]
        net.train()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            if variant == "plain":
                loss = torch.mean((net(x).float() - x) ** 2)
            else:
                r = random_rotation(batch, 3, generator=gen).to(device)
                target = rotate_image(x, r)
                out = net(x, r, target)
                loss = loss_fn.from_outputs(out, target)["loss"]
        loss.backward()
        opt.step()
        return float(loss.detach())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    losses = [step(i) for i in range(cfg["warmup"])]
    sync()
    t0 = time.perf_counter()
    losses += [step(i) for i in range(cfg["warmup"], cfg["steps"])]
    sync()
    seconds = time.perf_counter() - t0
    timed = cfg["steps"] - cfg["warmup"]
    peak = _peak_mb(device)

    psnr = PSNRMetric(max_val=1.0)
    eval_gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    rot, ident = [], []
    net.eval()
    with torch.no_grad(), torch.autocast(**amp):
        for j in range(test.shape[0]):
            x = test[j : j + 1]
            z = net.encode(x)
            ident.append(psnr(net.decode(z).float().clamp(0, 1), x).mean().item())
            for _ in range(cfg["eval_rotations"]):
                r = random_rotation(1, 3, generator=eval_gen).to(device)
                pred = net.decode(net.apply_action(z, r)).float().clamp(0, 1)
                rot.append(psnr(pred, rotate_image(x, r)).mean().item())
    return {
        "bundle": bundle.name,
        "size": "x".join(map(str, size)),
        "batch": batch,
        "variant": variant,
        "precision": cfg["precision"],
        "device": str(device),
        "vol_per_s": timed * batch / seconds if timed else float("nan"),
        "step_ms": 1000.0 * seconds / timed if timed else float("nan"),
        "peak_mb": peak,
        "peak_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "psnr_rotated": sum(rot) / len(rot) if rot else float("nan"),
        "psnr_identity": sum(ident) / len(ident) if ident else float("nan"),
        "varying_fraction": float(net.ald.varying_fraction()),
        "final_loss": losses[-1],
        "latent_numel_per_voxel": _latent_ratio(net, size),
        "params": sum(p.numel() for p in net.parameters()),
        "entries": entries,
    }


def _latent_ratio(net, size) -> float:
    import torch

    with torch.no_grad():
        z = net.encode(torch.zeros(1, 1, *size, device=next(net.parameters()).device))
    return z.numel() / float(size[0] * size[1] * size[2])


def _run_isolated(cfg: dict[str, Any], num_threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(num_threads)}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{cfg['bundle']} {cfg['variant']} {cfg['precision']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table; ``ratio`` is the step time over the ``plain`` step of the same bundle and precision."""
    plain = {(r["bundle"], r["precision"]): r["step_ms"] for r in rows if r["variant"] == "plain"}
    kind = rows[0]["peak_kind"] if rows else ""
    out = [
        f"| bundle | volume | batch | variant | precision | vol/s | ms/step | step ratio vs plain | peak MiB ({kind}) "
        "| rotated PSNR dB | identity PSNR dB | varying fraction | latent / image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = plain.get((r["bundle"], r["precision"]))
        ratio = f"{r['step_ms'] / ref:.2f}" if ref else "-"
        out.append(
            f"| {r['bundle']} | {r['size']} | {r['batch']} | {r['variant']} | {r['precision']} | {r['vol_per_s']:.2f} "
            f"| {r['step_ms']:.1f} | {ratio} | {r['peak_mb']:.0f} | {r['psnr_rotated']:.2f} | {r['psnr_identity']:.2f} "
            f"| {r['varying_fraction']:.2f} | {r['latent_numel_per_voxel']:.2f} |"
        )
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", nargs="+", default=list(FULL_SIZES), help="bundle names or folders")
    p.add_argument("--size", default=None, help="edge or HxWxD for every bundle (default: each bundle's full size)")
    p.add_argument("--actions", nargs="+", default=["grid", "harmonic"], choices=VARIANTS[1:], help="latent actions")
    p.add_argument("--no_plain", action="store_true", help="skip the plain autoencoder (then no step ratio)")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--steps", type=int, default=60, help="training steps per run (the first --warmup untimed)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=0, help="0: the bundle's train.yaml batch_size")
    p.add_argument("--train_volumes", type=int, default=4)
    p.add_argument("--test_volumes", type=int, default=2)
    p.add_argument("--eval_rotations", type=int, default=4, help="fixed seeded rotations per test volume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--isolate", default="auto", choices=("auto", "yes", "no"),
                   help="one process per run (auto: on the CPU, where peak RSS is per process)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def _check(args: argparse.Namespace) -> None:
    import torch

    for name in ("steps", "train_volumes", "test_volumes", "eval_rotations"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if not 0 <= args.warmup < args.steps:
        raise ValueError(f"--warmup must be in [0, --steps), got {args.warmup} with --steps {args.steps}.")
    if args.batch_size < 0 or args.num_threads < 1:
        raise ValueError(f"--batch_size must be >= 0 and --num_threads >= 1, got {args.batch_size}, {args.num_threads}.")
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cuda", "cpu"):
        raise ValueError(f"--device must be cuda[:N] or cpu, got {args.device!r}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch {torch.__version__} sees no CUDA device (use --device cpu).")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print("RESULT " + json.dumps(run_one(json.loads(args.child))), flush=True)
        return 0
    try:
        _check(args)
        bundles = [_bundle_dir(b) for b in args.bundles]
        size = parse_size(args.size) if args.size else None
    except ValueError as e:
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.num_threads)
    variants = ([] if args.no_plain else ["plain"]) + list(dict.fromkeys(args.actions))
    isolate = args.isolate == "yes" or (args.isolate == "auto" and torch.device(args.device).type == "cpu")
    rows = []
    for bundle in bundles:
        for precision in args.precisions:
            for variant in variants:
                cfg = {
                    "bundle": str(bundle), "size": list(size or FULL_SIZES[bundle.name]), "variant": variant,
                    "precision": precision, "device": args.device, "steps": args.steps, "warmup": args.warmup,
                    "batch_size": args.batch_size, "train_volumes": args.train_volumes,
                    "test_volumes": args.test_volumes, "eval_rotations": args.eval_rotations, "seed": args.seed,
                }
                row = _run_isolated(cfg, args.num_threads) if isolate else run_one(cfg)
                rows.append(row)
                print(f"done: {row['bundle']} {variant} {precision}: {row['vol_per_s']:.2f} vol/s", file=sys.stderr)
    table = format_table(rows)
    name = torch.cuda.get_device_name(torch.device(args.device)) if torch.device(args.device).type == "cuda" else "CPU"
    print(table)
    print(
        f"\n{name}, torch {torch.__version__}; {args.steps} training steps per run ({args.warmup} untimed), "
        f"{args.train_volumes} training / {args.test_volumes} test volumes x {args.eval_rotations} rotations; "
        f"networks from each bundle's train.yaml; {'one process per run' if isolate else 'one process'}."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
