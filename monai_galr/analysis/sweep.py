"""Threshold sweep and variant comparison, built from result JSONs that trainings already wrote.

Expected layout (that of ``benchmarks/run_variants.py``): ``<root>/<variant>/eval/metrics_<angles>.json``
(written by the ``evaluating`` runner, :class:`monai_galr.handlers.MetricsReport`) and, optionally,
``<root>/<variant>/eval/probes.json`` (the ``probe`` runner). Nothing is trained here.

    python -m monai_galr.analysis.sweep --root runs/mnist_variants --out runs/mnist_variants/analysis

A tau sweep is a set of variants trained with different ``--tau`` (each with its probe run: ``probes.json``
records tau); the figure plots the probe accuracy on ``z_v`` against tau, the accuracy on ``z`` dashed, and the
mask fraction.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from monai_galr.analysis.utils import write_outputs_atomic

__all__ = ["check_taus", "collect_variant_results", "run_sweep", "tau_sweep_figure", "variant_table"]


def _read(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"result file {path!r} is not valid JSON: {e}") from e


def collect_variant_results(
    root: str, angles: str = "uniform", probes_root: str | None = None
) -> list[dict[str, Any]]:
    """One row per ``<root>/<variant>/eval`` folder holding ``metrics_<angles>.json`` (else ``metrics.json``)
    and/or ``probes.json``.

    ``probes_root`` (default ``root``): where ``<variant>/eval/probes.json`` is looked up, for probes run into a
    separate folder.

    Returns:
        rows sorted by (tau, variant) with ``variant``, ``partition``, ``tau`` (from ``probes.json``, else None),
        ``mask_fraction``, ``psnr``, ``ssim``, ``rmse``, ``psnr_identity``, ``psnr_ratio``, ``probe_z``,
        ``probe_z_v``, ``probe_z_i`` (accuracies; None where missing) and ``protocol``.

    Raises:
        ValueError: ``root`` is not a folder, or no variant folder has results.
    """
    if not os.path.isdir(root):
        raise ValueError(f"root must be a folder of variant runs (<root>/<variant>/eval/*.json), got {root!r}.")
    if probes_root is not None and not os.path.isdir(probes_root):
        raise ValueError(f"probes_root must be a folder of <variant>/eval/probes.json, got {probes_root!r}.")
    proot = root if probes_root is None else probes_root
    names = {n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))}
    names |= {n for n in os.listdir(proot) if os.path.isdir(os.path.join(proot, n))}
    rows = []
    for name in sorted(names):
        metrics = _read(os.path.join(root, name, "eval", f"metrics_{angles}.json"))
        if metrics is None:  # bundles with one angle protocol (brain_mri_so3) write eval/metrics.json
            metrics = _read(os.path.join(root, name, "eval", "metrics.json"))
        probes = _read(os.path.join(proot, name, "eval", "probes.json"))
        if metrics is None and probes is None:
            continue
        m = (metrics or {}).get("metrics", {})
        p = (probes or {}).get("probes", {})
        mask_fraction = (metrics or {}).get("mask_fraction", (probes or {}).get("mask_fraction"))
        rows.append({
            "variant": name,
            "partition": (metrics or {}).get("partition", (probes or {}).get("partition")),
            "tau": (probes or {}).get("tau", (metrics or {}).get("tau")),
            "mask_fraction": mask_fraction,
            "psnr": m.get("test_psnr"), "ssim": m.get("test_ssim"), "rmse": m.get("test_rmse"),
            "psnr_identity": m.get("test_psnr_identity"), "psnr_ratio": (metrics or {}).get("psnr_ratio"),
            "probe_z": p.get("z", {}).get("accuracy"), "probe_z_v": p.get("z_v", {}).get("accuracy"),
            "probe_z_i": p.get("z_i", {}).get("accuracy"),
            "protocol": (metrics or {}).get("protocol", ""), "probe_protocol": (probes or {}).get("protocol", ""),
        })
    if not rows:
        raise ValueError(f"no <variant>/eval/metrics_{angles}.json or probes.json under {root!r}.")
    return sorted(rows, key=lambda r: (math.inf if r["tau"] is None else r["tau"], r["variant"]))


def _f(v: Any, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v * scale, fmt)


def variant_table(rows: Sequence[dict[str, Any]], angles: str = "uniform") -> str:
    """Markdown: one row per variant (image metrics, mask fraction, probe accuracies in %), protocol under it."""
    lines = ["| variant | tau | PSNR | SSIM | RMSE | identity PSNR | ratio | mask fraction | probe z | probe z_v | "
             "probe z_i |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {_f(r['tau'], '.2f')} | {_f(r['psnr'], '.2f')} | {_f(r['ssim'], '.4f')} | "
            f"{_f(r['rmse'], '.4f')} | {_f(r['psnr_identity'], '.2f')} | {_f(r['psnr_ratio'], '.3f')} | "
            f"{_f(r['mask_fraction'], '.3f')} | {_f(r['probe_z'], '.2f', 100)} | {_f(r['probe_z_v'], '.2f', 100)} | "
            f"{_f(r['probe_z_i'], '.2f', 100)} |"
        )
    protocol = next((r["protocol"] for r in rows if r["protocol"]), "")
    probe_protocol = next((r["probe_protocol"] for r in rows if r["probe_protocol"]), "")
    text = "\n".join(lines) + f"\n\nProtocol: image metrics with angles {angles}"
    text += f": {protocol}" if protocol else ""
    text += f". Probes: {probe_protocol}." if probe_protocol else ". Probes: n/a (no probes.json)."
    return text + "\n"


def tau_sweep_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """Probe accuracy on ``z_v`` (solid) and on ``z`` (dashed) against ``tau``, with the mask fraction.

    Every variant with a tau and a probe result is drawn: where the mask leaves no varying channel (a high tau),
    ``z_v`` is empty and has no point, while ``z`` and the mask fraction (0) still do.

    Raises:
        ValueError: no row with both ``tau`` and probe results.
    """
    pts = sorted((r for r in rows if r["tau"] is not None and (r["probe_z_v"] is not None or r["probe_z"] is not None)),
                 key=lambda r: r["tau"])
    if not pts:
        raise ValueError("no variant has both a tau and probe results (run the probe runner on each variant).")
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    v = [r for r in pts if r["probe_z_v"] is not None]
    z = [r for r in pts if r["probe_z"] is not None]
    ax.plot([r["tau"] for r in v], [100 * r["probe_z_v"] for r in v], "o-", color="C0", label="probe accuracy, z_v")
    ax.plot([r["tau"] for r in z], [100 * r["probe_z"] for r in z], "s--", color="C1", label="probe accuracy, z")
    ax.set_xlabel("ALD threshold tau")
    ax.set_ylabel("test accuracy (%)")
    ax2 = ax.twinx()
    m = [r for r in pts if r["mask_fraction"] is not None]
    ax2.plot([r["tau"] for r in m], [r["mask_fraction"] for r in m], "^:", color="C2", label="mask fraction")
    ax2.set_ylabel("mask fraction (varying channels)")
    ax2.set_ylim(-0.05, 1.05)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="outside lower center", ncols=3)
    ax.set_title("Threshold sweep: linear probes and mask fraction")
    return fig


def check_taus(taus: Any, name: str = "taus") -> list[float]:
    """``taus`` as a list of floats in (0, 1), or a ``ValueError`` naming ``name`` (an empty list included)."""
    if isinstance(taus, (str, bytes)) or not isinstance(taus, Sequence):
        raise ValueError(f"{name} must be a list of ALD thresholds in (0, 1), got {type(taus).__name__} {taus!r}.")
    if len(taus) == 0:
        raise ValueError(f"{name} is empty: give at least one ALD threshold in (0, 1), e.g. [0.1, 0.3, 0.5].")
    bad = [t for t in taus if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0]
    if bad:
        raise ValueError(f"every entry of {name} must be a number in (0, 1), got {bad} in {list(taus)}.")
    return [float(t) for t in taus]


def run_sweep(
    root: str,
    output_dir: str,
    angles: str = "uniform",
    probes_root: str | None = None,
    taus: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Write ``sweep.json``, ``variants_analysis.md`` and ``tau_sweep.png`` (when probes exist for 2+ taus).

    See :func:`collect_variant_results` for the expected files. Everything is computed first and written at the
    end (temporary files, then ``os.replace``; ``sweep.json`` last), so a failed run leaves no partial output.

    Args:
        root / probes_root / angles: see :func:`collect_variant_results`.
        output_dir: where the three files go.
        taus: keep only the variants trained at these thresholds (None: every variant); the taus without results
            are listed in ``sweep.json`` (``missing_taus``).

    Raises:
        ValueError: an empty or out-of-range ``taus``, no variant at any of ``taus``, or see
            :func:`collect_variant_results`.
    """
    wanted = None if taus is None else check_taus(taus)
    rows = collect_variant_results(root, angles, probes_root)
    out: dict[str, Any] = {"root": root, "probes_root": probes_root, "angles": angles, "figure": None}
    if wanted is not None:
        found = sorted({r["tau"] for r in rows if r["tau"] is not None})
        rows = [r for r in rows if r["tau"] is not None and any(math.isclose(r["tau"], t) for t in wanted)]
        if not rows:
            raise ValueError(
                f"taus {wanted}: no variant under {root!r} was trained at any of them (probes.json records the "
                f"taus {found})."
            )
        out["taus"] = wanted
        out["missing_taus"] = [t for t in wanted if not any(math.isclose(r["tau"], t) for r in rows)]
    out["rows"] = rows
    files: dict[str, Any] = {}
    swept = {r["tau"] for r in rows if r["tau"] is not None and (r["probe_z_v"] is not None or r["probe_z"] is not None)}
    if len(swept) >= 2:
        files["tau_sweep.png"] = tau_sweep_figure(rows)
        out["figure"] = "tau_sweep.png"
    else:
        out["note"] = f"no tau sweep figure: probe results for {len(swept)} distinct tau value(s), 2 needed"
    files["variants_analysis.md"] = variant_table(rows, angles)
    files["sweep.json"] = out
    write_outputs_atomic(output_dir, files)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder of <variant>/eval/*.json results")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--angles", default="uniform", help="which metrics_<angles>.json to read")
    p.add_argument("--probes_root", default=None, help="folder of <variant>/eval/probes.json (default: --root)")
    p.add_argument("--taus", default=None, help="comma-separated thresholds to keep (default: every variant)")
    args = p.parse_args(argv)
    taus = None if args.taus is None else [float(t) for t in args.taus.split(",") if t.strip()]
    run_sweep(args.root, args.out, args.angles, args.probes_root, taus=taus)
    with open(os.path.join(args.out, "variants_analysis.md")) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
