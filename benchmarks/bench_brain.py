"""Benchmark of bundles/brain_mri_so3: quality of the three latent partitions and training speed / peak memory.

Usage (from the repository root)::

    # quality: train learned / manual / all with the same budget through the bundle, evaluate on the test split
    python benchmarks/bench_brain.py quality --max_epochs 60 --num_threads 1 --out runs/bench_brain
    # speed: training throughput (volumes/s) and peak memory at the default and at full resolution
    python benchmarks/bench_brain.py speed --sizes 40,48,56 160,192,224 --iters 3 --num_threads 1
    # print the tables of finished runs again
    python benchmarks/bench_brain.py table --out runs/bench_brain

Quality runs are ``python -m monai.bundle run training`` then ``run evaluating`` subprocesses (the bundle's own
configs and protocol: fixed, seeded Haar-uniform SO(3) rotations per test volume, intensities in [0, 1]); each
partition gets its own ``bundle_root`` under ``--out`` and shares the demo cache (``--demo_dir``).  Speed runs time
``GroupActionTrainer`` iterations on one real (demo) volume resized to each size, beside a plain autoencoder step
(identity reconstruction + MSE) of the same network; each size runs in its own subprocess so that its peak memory
(``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` on a GPU) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "bundles", "brain_mri_so3", "configs")
TRAIN = os.path.join(CONFIGS, "train.yaml")
EVALUATE = os.path.join(CONFIGS, "evaluate.yaml")
PARTITIONS = ("learned", "manual", "all")

__all__ = ["main"]


def _bundle_cmd(run_id: str, configs: list[str], overrides: dict) -> list[str]:
    cfg = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", cfg]
    for k, v in overrides.items():
        cmd += [f"--{k}", json.dumps(v) if not isinstance(v, str) else v]
    return cmd


def quality(args: argparse.Namespace) -> None:
    demo_dir = os.path.abspath(args.demo_dir)
    for partition in args.partitions:
        root = os.path.abspath(os.path.join(args.out, partition))
        overrides = {
            "bundle_root": root,
            "demo_dir": demo_dir,
            "partition": partition,
            "max_epochs": args.max_epochs,
            "val_interval": args.val_interval,
            "num_threads": args.num_threads,
            **dict(kv.split("=", 1) for kv in args.set),
        }
        log = os.path.join(root, "bench.log")
        os.makedirs(root, exist_ok=True)
        t0 = time.time()
        with open(log, "w") as f:
            subprocess.run(_bundle_cmd("training", [TRAIN], overrides), check=True, stdout=f, stderr=subprocess.STDOUT)
            train_s = time.time() - t0
            subprocess.run(
                _bundle_cmd("evaluating", [TRAIN, EVALUATE], overrides), check=True, stdout=f, stderr=subprocess.STDOUT
            )
        with open(os.path.join(root, "bench_run.json"), "w") as f:
            json.dump({"train_seconds": train_s, "overrides": overrides}, f, indent=2)
        print(f"{partition}: trained in {train_s:.0f} s; log {log}", flush=True)
    table(args)


def table(args: argparse.Namespace) -> None:
    rows = []
    for partition in PARTITIONS:
        root = os.path.join(args.out, partition)
        path = os.path.join(root, "eval", "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            rep = json.load(f)
        run = {}
        if os.path.isfile(os.path.join(root, "bench_run.json")):
            with open(os.path.join(root, "bench_run.json")) as f:
                run = json.load(f)
        m = rep["metrics"]
        rows.append(
            f"| {partition} | {m['test_psnr']:.2f} | {m['test_ssim']:.4f} | {m['test_rmse']:.4f} | "
            f"{m['test_psnr_identity']:.2f} | {m['test_ssim_identity']:.4f} | {rep.get('psnr_ratio', 0):.3f} | "
            f"{rep.get('mask_fraction', float('nan')):.3f} | {run.get('train_seconds', float('nan')):.0f} |"
        )
        protocol = rep.get("protocol", "")
    if not rows:
        print(f"no finished run under {args.out}")
        return
    print("| partition | PSNR rot | SSIM rot | RMSE rot | PSNR id | SSIM id | PSNR ratio | mask fraction | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"protocol: {protocol}")


def _speed_one(size: list[int], args: argparse.Namespace) -> dict:
    """Time training iterations at one size (runs inside its own subprocess)."""
    import torch
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from monai_galr.engines import GroupActionTrainer
    from monai_galr.groups import random_rotation

    torch.set_num_threads(args.num_threads)
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"spatial_size": size, "bundle_root": os.path.abspath(args.scratch), "demo_dir": args.demo_dir})
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            parser[k] = json.loads(v)
        except ValueError:
            parser[k] = v  # a plain string such as "none"
    if args.amp:
        parser["amp"] = True
    device = parser.get_parsed_content("device")
    splits = parser.get_parsed_content("splits")
    load = Compose(parser.get_parsed_content("load_transforms"))
    vol = torch.as_tensor(load(dict(splits["train"][0]))["image"]).float()
    bs = int(args.batch_size or parser["batch_size"])
    x = vol[None].repeat(bs, 1, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    batches = [{"image": x, "rotation": random_rotation(bs, 3, generator=g)} for _ in range(args.iters + 1)]
    network = parser.get_parsed_content("network")
    optimizer = parser.get_parsed_content("optimizer")
    trainer = GroupActionTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches,
        network=network,
        optimizer=optimizer,
        loss_function=parser.get_parsed_content("loss"),
        amp=bool(parser["amp"]),
    )
    cuda = device.type == "cuda"
    stamps: list[float] = []

    def _sync():
        if cuda:
            torch.cuda.synchronize()

    from ignite.engine import Events

    @trainer.on(Events.ITERATION_COMPLETED)
    def _stamp(_):
        _sync()
        stamps.append(time.perf_counter())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    galr = (stamps[-1] - stamps[0]) / args.iters  # the first iteration is a warm-up
    # plain autoencoder step of the same network: identity reconstruction + MSE
    times = []
    for b in batches:
        xb = b["image"].to(device)
        _sync()
        t0 = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast(device.type, enabled=bool(parser["amp"])):
            loss = torch.mean((network(xb).float() - xb) ** 2)
        loss.backward()
        optimizer.step()
        _sync()
        times.append(time.perf_counter() - t0)
    plain = sum(times[1:]) / args.iters
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {
        "size": size,
        "device": str(device),
        "threads": args.num_threads,
        "batch_size": bs,
        "amp": bool(parser["amp"]),
        "galr_s_per_iter": galr,
        "plain_s_per_iter": plain,
        "volumes_per_s": bs / galr,
        "ratio": galr / plain,
        "peak_gib": peak,
        "peak_kind": "GPU max_memory_allocated" if cuda else "process peak RSS (data + model + activations)",
    }


def speed(args: argparse.Namespace) -> None:
    results = []
    for size in args.sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "_speed_one", "--size", size, "--iters", str(args.iters),
               "--num_threads", str(args.num_threads), "--demo_dir", args.demo_dir, "--scratch", args.scratch]
        cmd += ["--batch_size", str(args.batch_size)] if args.batch_size else []
        cmd += ["--amp"] if args.amp else []
        for kv in args.set:
            cmd += ["--set", kv]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"size {size}: failed\n{r.stderr[-3000:]}", file=sys.stderr)
            continue
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("| size | device | threads | batch | AMP | s/iter GALR | s/iter plain AE | ratio | volumes/s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {'x'.join(map(str, r['size']))} | {r['device']} | {r['threads']} | {r['batch_size']} | {r['amp']} | "
            f"{r['galr_s_per_iter']:.3f} | {r['plain_s_per_iter']:.3f} | {r['ratio']:.2f} | {r['volumes_per_s']:.3f} | "
            f"{r['peak_gib']:.2f} |"
        )
    if results:
        print(f"peak memory: {results[0]['peak_kind']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--num_threads", type=int, default=1)
    common.add_argument("--demo_dir", default=os.path.join(ROOT, "bundles", "brain_mri_so3", "data", "demo_oasis"))
    common.add_argument("--set", action="append", default=[], help="extra bundle override NAME=VALUE (repeatable)")
    common.add_argument("--out", default="runs/bench_brain")
    q = sub.add_parser("quality", parents=[common])
    q.add_argument("--partitions", nargs="+", default=list(PARTITIONS), choices=PARTITIONS)
    q.add_argument("--max_epochs", type=int, default=60)
    q.add_argument("--val_interval", type=int, default=10)
    sub.add_parser("table", parents=[common])
    for name in ("speed", "_speed_one"):
        s = sub.add_parser(name, parents=[common])
        s.add_argument("--iters", type=int, default=3)
        s.add_argument("--batch_size", type=int, default=0, help="0: the config's batch_size")
        s.add_argument("--amp", action="store_true")
        s.add_argument("--scratch", default="runs/bench_brain_speed")
        if name == "speed":
            s.add_argument("--sizes", nargs="+", default=["40,48,56", "160,192,224"])
        else:
            s.add_argument("--size", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "quality":
        quality(args)
    elif args.cmd == "table":
        table(args)
    elif args.cmd == "speed":
        speed(args)
    else:
        print(json.dumps(_speed_one([int(v) for v in args.size.split(",")], args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
