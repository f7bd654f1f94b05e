"""Training speed and peak memory of a 3D bundle's network: the full group-action step vs a plain autoencoder step.

For each volume size the script starts a fresh Python process (so peak memory belongs to that size alone) that
builds the network from the bundle's ``train.yaml`` entries (``channels``, ``strides``, ``latent_channels``,
``num_res_units``, ``norm``, ``partition``, ``batch_size``) and times, on random volumes:

- the **group-action step** of the bundle's trainer: ``T_R x`` (one batched ``grid_sample``), the network's
  training forward (encoder twice, the second without gradients; ALD split; latent rotation; decoder), the
  three-term loss, backward, Adam step;
- a **plain autoencoder step** of the same network: ``decode(encode(x))``, MSE, backward, Adam step.

It prints a Markdown table: volumes/s of each (per second of wall time, and per second of CPU time, which stays
meaningful on a shared machine), their cost ratio, and peak memory (CPU: peak resident set size of the
process from ``resource.getrusage`` and its increase over the state before the first step; CUDA:
``torch.cuda.max_memory_allocated``).

Example (from the repository root; on a shared CPU use ``nice`` and one thread)::

    nice -n 19 python benchmarks/bench_3d_speed.py --bundle bundles/adrenal_ct_so3 --sizes 28,64 --num_threads 1
    python benchmarks/bench_3d_speed.py --bundle bundles/brain_mri_so3 --sizes 80x96x112,160x192x224 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

__all__ = ["main"]


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _network_entries(bundle: str) -> dict:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "train.yaml"))
    keys = ("channels", "strides", "latent_channels", "num_res_units", "norm", "partition", "batch_size")
    return {k: parser[k] for k in keys}


def _child(args: argparse.Namespace) -> dict:
    """Run in a fresh process: time both steps at one size and return the numbers."""
    import torch

    from monai_galr.groups import random_rotation, rotate_image
    from monai_galr.losses import GroupActionLoss
    from monai_galr.networks import GroupActionAutoEncoder

    torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    cfg = json.loads(args.child_cfg)
    size = [int(s) for s in args.child.split("x")]
    size = size * 3 if len(size) == 1 else size
    batch = args.batch_size or int(cfg["batch_size"])
    gen = torch.Generator().manual_seed(0)

    def make():
        net = GroupActionAutoEncoder(
            3, 1, 1, channels=cfg["channels"], strides=cfg["strides"], latent_channels=cfg["latent_channels"],
            num_res_units=cfg["num_res_units"], norm=cfg["norm"], partition=cfg["partition"], alpha_init_std=0.01,
        ).to(device)
        return net, torch.optim.Adam(net.parameters(), 1e-3)

    net, opt = make()
    loss_fn = GroupActionLoss()
    x = torch.rand(batch, 1, *size, generator=gen).to(device)

    def group_step():
        r = random_rotation(batch, 3, generator=gen).to(device)
        target = rotate_image(x, r)
        out = net(x, r, target)
        loss = loss_fn.from_outputs(out, target)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def plain_step():
        loss = torch.mean((net(x) - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(step) -> tuple[float, float]:
        """Volumes per second of wall time and per second of this process's CPU time (all threads)."""
        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        n = args.steps * batch
        return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)

    rss_before = _current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    group, group_cpu = timed(group_step)
    peak = _rss_mb() if device.type == "cpu" else torch.cuda.max_memory_allocated() / 2**20
    plain, plain_cpu = timed(plain_step)
    return {
        "size": "x".join(map(str, size)),
        "latent": "x".join(str(s // net.downsampling) for s in size),
        "batch": batch,
        "group_vps": group,
        "plain_vps": plain,
        "group_cpu_vps": group_cpu,
        "plain_cpu_vps": plain_cpu,
        "peak_mb": peak,
        "before_mb": rss_before if device.type == "cpu" else 0.0,
        "params": sum(p.numel() for p in net.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="bundles/adrenal_ct_so3", help="bundle folder whose train.yaml defines the net")
    p.add_argument("--sizes", default="28,64", help="comma-separated cube edges or HxWxD sizes")
    p.add_argument("--batch_size", type=int, default=0, help="0: the bundle's batch_size")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child_cfg", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return 0
    cfg = _network_entries(args.bundle)
    rows = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", size, "--child_cfg", json.dumps(cfg),
               "--batch_size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--num_threads", str(args.num_threads), "--device", args.device]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"size {size} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    mem = "peak RSS MiB (increase)" if args.device == "cpu" else "peak CUDA MiB"
    lines = [
        f"| volume | latent | batch | group-action step vol/s (per CPU-s) | plain AE step vol/s (per CPU-s) | "
        f"ratio | {mem} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = f"{r['peak_mb']:.0f} (+{r['peak_mb'] - r['before_mb']:.0f})" if args.device == "cpu" else (
            f"{r['peak_mb']:.0f}")
        lines.append(
            f"| {r['size']} | {r['latent']} | {r['batch']} | {r['group_vps']:.2f} ({r['group_cpu_vps']:.2f}) | "
            f"{r['plain_vps']:.2f} ({r['plain_cpu_vps']:.2f}) | {r['plain_cpu_vps'] / r['group_cpu_vps']:.2f} | "
            f"{memory} |"
        )
    print("\n".join(lines))
    print(
        f"\nnetwork of {args.bundle}/configs/train.yaml: channels {cfg['channels']}, strides {cfg['strides']}, "
        f"latent_channels {cfg['latent_channels']}, num_res_units {cfg['num_res_units']}, partition "
        f"{cfg['partition']}; {rows[0]['params']} parameters; device {args.device}, {args.num_threads} thread(s), "
        f"{args.steps} timed steps after {args.warmup} warm-up. vol/s is per second of wall time; in brackets per "
        "second of the process's CPU time (all threads), which stays meaningful on a shared, busy machine; ratio = "
        "group-action / plain CPU time per volume."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
