"""Train and evaluate variants of one bundle with the same budget and seed, and print one table.

Three studies, each a set of variants (config overrides) trained with the bundle's own ``training`` runner into
``<out>/<variant>/models`` and scored by the ``evaluating`` runner of ``evaluate.yaml`` on the held-out test split
with the fixed protocol (uniform angles and, for 2D, the C4 subset):

- ``variants`` (the paper's Table 1 rows we can run): ``learned`` (ALD), ``manual`` (GALR-style fixed split),
  ``all`` (EquivNR-style whole-latent rotation);
- ``ablation`` (Table 2): ``both`` latent terms (the bundle's lambdas), ``inv_only`` (``lambda_v = 0``: L_inv
  only), ``const_only`` (``lambda_i = 0``: L_const only);
- ``tau`` (Fig. 3): the learned partition at each ALD threshold of ``--taus`` or, by default, of the config list
  ``sweep_taus`` (``evaluate.yaml``); the ``probe`` runner runs on every variant and
  ``monai_galr.analysis.sweep`` draws probe accuracy on ``z_v`` (and ``z``, dashed) and the mask fraction
  against tau.

``--probe`` runs the ``probe`` runner on every variant (always on for ``tau``); the study ends with
``<out>/variants.md`` (image metrics) and ``<out>/analysis/`` (``variants_analysis.md``, ``sweep.json``,
``tau_sweep.png``).  Finished steps are skipped, so an interrupted run resumes where it stopped.

Example (from the repository root)::

    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --out runs/mnist_variants
    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --overlay blocked.yaml \
        --out runs/mnist_blocked_variants
    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --study ablation --out runs/mnist_ablation
    python benchmarks/run_variants.py --bundle bundles/rotated_mnist_so2 --study tau --out runs/mnist_tau \
        --set max_epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from monai_galr.analysis.sweep import run_sweep
from monai_galr.utils import write_json_atomic, write_text_atomic

STUDIES = {
    "variants": {
        "learned": ["--partition", "learned"],
        "manual": ["--partition", "manual"],
        "all": ["--partition", "all"],
    },
    "ablation": {
        "both": ["--partition", "learned"],
        "inv_only": ["--partition", "learned", "--lambda_v", "0.0"],
        "const_only": ["--partition", "learned", "--lambda_i", "0.0"],
    },
}
VARIANTS = STUDIES["variants"]  # backward-compatible name


def tau_variants(taus: list[float]) -> dict[str, list[str]]:
    """``{"tau0.1": ["--partition", "learned", "--tau", "0.1"], ...}``.

    Raises:
        ValueError: an empty list, or a tau outside (0, 1).
    """
    if not taus:
        raise ValueError("the tau list is empty: give --taus 0.1,0.3,... or a non-empty sweep_taus in evaluate.yaml.")
    bad = [t for t in taus if not 0.0 < float(t) < 1.0]
    if bad:
        raise ValueError(f"every tau must be in (0, 1), got {bad}.")
    return {f"tau{float(t):g}": ["--partition", "learned", "--tau", f"{float(t):g}"] for t in taus}


def config_taus(bundle: str, overlays: list[str]) -> list[float]:
    """The ``sweep_taus`` list of the bundle's train.yaml + overlays + evaluate.yaml."""
    from monai.bundle import ConfigParser

    files = [os.path.join(bundle, "configs", n) for n in ["train.yaml", *overlays, "evaluate.yaml"]]
    parser = ConfigParser()
    parser.read_config(files)
    if "sweep_taus" not in parser:
        raise ValueError(f"no sweep_taus list in {files}; give --taus 0.1,0.3,...")
    taus = parser["sweep_taus"]
    if not isinstance(taus, (list, tuple)):
        raise ValueError(f"sweep_taus in {files[-1]} must be a list of thresholds, got {taus!r}.")
    return [float(t) for t in taus]


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
    p.add_argument("--study", default="variants", choices=[*STUDIES, "tau"],
                   help="variants: learned/manual/all; ablation: both/inv_only/const_only; tau: the threshold sweep")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of the study's variant names (default: all of them)")
    p.add_argument("--taus", default=None, help="tau study: comma-separated thresholds (default: sweep_taus of the config)")
    p.add_argument("--probe", action="store_true", help="also run the probe runner on every variant (on for --study tau)")
    p.add_argument("--no_probe", action="store_true",
                   help="--study tau without probes (a data set without labels): the table still has tau, PSNR, mask")
    p.add_argument("--angles", default="uniform,c4", help="evaluation angle sets (2D: uniform,c4; 3D: uniform)")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a config override applied to every variant, e.g. --set max_epochs 30")
    args = p.parse_args(argv)

    if not os.path.isdir(args.bundle):
        p.error(f"--bundle {args.bundle!r} is not a folder")
    try:
        if args.study == "tau":
            taus = [float(t) for t in args.taus.split(",") if t.strip()] if args.taus is not None else None
            study = tau_variants(taus if taus is not None else config_taus(args.bundle, args.overlay))
        else:
            study = STUDIES[args.study]
    except ValueError as e:
        p.error(str(e))
    probe = (args.probe or args.study == "tau") and not args.no_probe
    names = list(study) if args.variants is None else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in study]
    if unknown or not names:
        p.error(f"unknown or no variant(s) {unknown or names}; choose from {list(study)}")
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
            # --overwrite True: this variant's folder holds no finished run (no model.pt or no timing): retrain it
            seconds = _run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", train_cfg,
                            *dirs, "--overwrite", "True", *study[name], *common], log_path)
            if not os.path.isfile(os.path.join(vdir, "models", "model.pt")):
                raise SystemExit(f"training of {name!r} wrote no {os.path.join(vdir, 'models', 'model.pt')} (no "
                                 f"validation ran? check val_interval <= max_epochs), see {log_path}")
            write_json_atomic({"seconds": seconds}, timing_path)
        seconds = json.load(open(timing_path))["seconds"]
        for angles in [a.strip() for a in args.angles.split(",") if a.strip()]:
            # metrics_<angles>.json, or metrics.json for a bundle with one angle set (brain_mri_so3)
            candidates = [os.path.join(vdir, "eval", f"metrics_{angles}.json"), os.path.join(vdir, "eval", "metrics.json")]
            if not any(os.path.isfile(c) for c in candidates):
                _run([sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", eval_cfg, *dirs,
                      *study[name], *common, "--eval_angles", angles], log_path)
            metrics_path = next((c for c in candidates if os.path.isfile(c)), None)
            if metrics_path is None:
                raise SystemExit(f"evaluating {name!r} wrote none of {candidates}, see {log_path}")
            with open(metrics_path) as f:
                res = json.load(f)
            m = res["metrics"]
            rows.append((name, angles, m.get("test_psnr"), m.get("test_ssim"), m.get("test_rmse"),
                         m.get("test_psnr_identity"), res.get("psnr_ratio"), res.get("mask_fraction"), seconds,
                         res.get("protocol", "")))
        if probe and not os.path.isfile(os.path.join(vdir, "eval", "probes.json")):
            _run([sys.executable, "-m", "monai.bundle", "run", "probe", "--config_file", eval_cfg, *dirs,
                  *study[name], *common], log_path)
    lines = ["| variant | angles | PSNR | SSIM | RMSE | identity PSNR | ratio | mask fraction | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| {} | {} | {:.2f} | {:.4f} | {:.4f} | {:.2f} | {:.3f} | {:.3f} | {:.0f} |".format(*r[:9]))
    table = "\n".join(lines)
    if rows:
        table += f"\n\nProtocol: {rows[0][9]}; overlays: {args.overlay or 'none'}; overrides: {common or 'none'}."
    write_text_atomic(table + "\n", os.path.join(args.out, "variants.md"))
    print(table)
    if probe or args.study == "tau":
        run_sweep(args.out, os.path.join(args.out, "analysis"), angles="uniform")
        with open(os.path.join(args.out, "analysis", "variants_analysis.md")) as f:
            print("\n" + f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
