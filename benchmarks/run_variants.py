"""Train and evaluate the variants of one bundle with the same budget and seed, and print one table.

Each variant is a set of config overrides (default: the paper's rows we can run: learned ALD partition,
manual GALR-style partition, whole-latent EquivNR-style rotation).  For each variant the bundle's own
``training`` runner trains into ``<out>/<variant>/models`` and the ``evaluating`` runner of
``evaluate.yaml`` scores the held-out test split with the fixed protocol (uniform angles and, for 2D, the
C4 subset).  Finished variants are skipped, so an interrupted run resumes where it stopped.

Example (from the repository root)::

    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --out runs/mnist_variants
    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --overlay blocked.yaml \
        --out runs/mnist_blocked_variants
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {
    "learned": ["--partition", "learned"],
    "manual": ["--partition", "manual"],
    "all": ["--partition", "all"],
}


def _configs(bundle: str, names: list[str]) -> str:
    return "[" + ",".join(repr(os.path.join(bundle, "configs", n)) for n in names) + "]"


def _run(cmd: list[str], log_path: str) -> float:
    t0 = time.time()
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"command failed (exit {proc.returncode}), see {log_path}: {' '.join(cmd)}")
    return time.time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/rotated_mnist_so2")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per variant)")
    p.add_argument("--overlay", action="append", default=[], help="extra config file(s) of the bundle, e.g. blocked.yaml")
    p.add_argument("--variants", default="learned,manual,all", help="comma-separated names from: " + ", ".join(VARIANTS))
    p.add_argument("--angles", default="uniform,c4", help="evaluation angle sets (2D: uniform,c4; 3D: uniform)")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a config override applied to every variant, e.g. --set max_epochs 30")
    args = p.parse_args(argv)

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    if not os.path.isdir(args.bundle):
        p.error(f"--bundle {args.bundle!r} is not a folder")
    os.makedirs(args.out, exist_ok=True)
    common = [x for kv in args.set for x in (f"--{kv[0]}", kv[1])]
    train_cfg = _configs(args.bundle, ["train.yaml", *args.overlay])
    eval_cfg = _configs(args.bundle, ["train.yaml", *args.overlay, "evaluate.yaml"])
    rows = []
    for name in names:
        vdir = os.path.join(args.out, name)
        os.makedirs(vdir, exist_ok=True)
        dirs = ["--ckpt_dir", os.path.join(vdir, "models"), "--log_dir", os.path.join(vdir, "logs"),
                "--output_dir", os.path.join(vdir, "eval")]
        log_path = os.path.join(vdir, "log.txt")
        timing_path = os.path.join(vdir, "train_seconds.json")
        if not os.path.isfile(os.path.join(vdir, "models", "model.pt")) or not os.path.isfile(timing_path):
            seconds = _run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", train_cfg,
                            *dirs, *VARIANTS[name], *common], log_path)
            with open(timing_path, "w") as f:
                json.dump({"seconds": seconds}, f)
        seconds = json.load(open(timing_path))["seconds"]
        for angles in [a.strip() for a in args.angles.split(",") if a.strip()]:
            metrics_path = os.path.join(vdir, "eval", f"metrics_{angles}.json")
            if not os.path.isfile(metrics_path):
                _run([sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", eval_cfg, *dirs,
                      *VARIANTS[name], *common, "--eval_angles", angles], log_path)
            res = json.load(open(metrics_path))
            m = res["metrics"]
            rows.append((name, angles, m.get("test_psnr"), m.get("test_ssim"), m.get("test_rmse"),
                         m.get("test_psnr_identity"), res.get("psnr_ratio"), res.get("mask_fraction"), seconds,
                         res.get("protocol", "")))
    lines = ["| variant | angles | PSNR | SSIM | RMSE | identity PSNR | ratio | mask fraction | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| {} | {} | {:.2f} | {:.4f} | {:.4f} | {:.2f} | {:.3f} | {:.3f} | {:.0f} |".format(*r[:9]))
    table = "\n".join(lines)
    if rows:
        table += f"\n\nProtocol: {rows[0][9]}; overlays: {args.overlay or 'none'}; overrides: {common or 'none'}."
    with open(os.path.join(args.out, "variants.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
