"""Check an OASIS-1 folder (the neurite / HyperMorph release) and write the MONAI datalist the brain bundle reads.

Usage::

    python data_prep/prepare_oasis.py --root OASIS_ROOT --out DATA/oasis_datalist.json
    python data_prep/prepare_oasis.py --root OASIS_ROOT --out DATA/oasis_datalist.json \
        --seed 0 --val_fraction 0.1 --test_fraction 0.2 --expected_shape 160 192 224

``OASIS_ROOT`` holds ``OASIS_OAS1_XXXX_MR1/aligned_norm.nii.gz`` (160x192x224, skull-stripped, [0, 1]).  Subjects
are split into train / val / test with a fixed seed; every file is opened with nibabel and its shape and values are
checked (``--header_only`` skips reading the voxels).  Unusable subjects (unreadable or corrupt, not 3D, empty, all
NaN, wrong shape) are printed, listed in ``<out stem>_report.json`` beside the datalist and left out; one bad subject
never stops the run.  Both files are written atomically (temporary file + ``os.replace``).

Exit codes: 0 written (possibly with excluded subjects), 2 bad input (no subject found, no usable training subject
left, bad arguments, an unwritable ``--out``; nothing is written then), 3 with ``--strict`` when any subject was
excluded (the files are still written).
Data use: OASIS data use agreement; cite Marcus et al. 2007 and Hoopes et al. (HyperMorph).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

if importlib.util.find_spec("monai_galr") is None:  # a source checkout without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from monai_galr.data.oasis import (
    OASIS_IMAGE,
    OASIS_SHAPE,
    build_oasis_datalist,
    format_report,
    report_path_for,
    write_datalist,
)
from monai_galr.data.io import ensure_writable_dir

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="OASIS-1 root folder (OASIS_OAS1_*_MR1/ subfolders)")
    parser.add_argument("--out", required=True, help="datalist JSON to write, e.g. DATA/oasis_datalist.json")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="validation share of the subjects")
    parser.add_argument("--test_fraction", type=float, default=0.2, help="test share of the subjects")
    parser.add_argument(
        "--expected_shape", type=int, nargs=3, default=list(OASIS_SHAPE), metavar=("H", "W", "D"),
        help=f"required volume shape (default {OASIS_SHAPE[0]} {OASIS_SHAPE[1]} {OASIS_SHAPE[2]})",
    )
    parser.add_argument("--any_shape", action="store_true", help="accept any 3D shape")
    parser.add_argument(
        "--image_name", default=OASIS_IMAGE, help=f"volume file in each subject (default {OASIS_IMAGE})"
    )
    parser.add_argument("--header_only", action="store_true", help="check headers only (no finite/empty value check)")
    parser.add_argument("--strict", action="store_true", help="exit with code 3 when a subject is excluded")
    args = parser.parse_args(argv)
    shape = None if args.any_shape else tuple(args.expected_shape)
    try:  # check the output before reading hundreds of volumes
        if os.path.isdir(args.out):
            raise ValueError(f"--out {args.out!r} is a folder; expected the path of the datalist JSON file to write.")
        ensure_writable_dir(os.path.dirname(os.path.abspath(args.out)), name="the folder of --out")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        datalist, report = build_oasis_datalist(
            args.root,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            expected_shape=shape,
            image_name=args.image_name,
            check_values=not args.header_only,
        )
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if not datalist["training"]:
        print(
            f"error: no usable training subject in {args.root!r}: {report['found']} found, "
            f"{len(report['excluded'])} excluded (reasons above), expected at least one in the train split; "
            f"nothing written to {args.out!r} (an existing datalist is kept).",
            file=sys.stderr,
        )
        return 2
    try:
        write_datalist(datalist, args.out, report)
    except OSError as e:
        print(
            f"error: --out {args.out!r}: cannot write the datalist ({type(e).__name__}: {e}); expected a writable "
            "file path; an existing datalist there is left unchanged.",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {args.out} and {report_path_for(args.out)}")
    return 3 if args.strict and report["excluded"] else 0


if __name__ == "__main__":
    sys.exit(main())
