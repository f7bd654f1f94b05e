"""Write a small OASIS-style demo folder from the skull-stripped MNI152 brain template shipped inside nilearn.

Usage::

    python data_prep/prepare_demo_brain.py --out DATA/demo_oasis [--n_subjects 8 --seed 0 --shape 160 192 224]

Each "subject" is the template under a small random smooth deformation and intensity change, written as
``OASIS_OAS1_000X_MR1/aligned_norm.nii.gz`` with a ``subjects.txt``, so ``data_prep/prepare_oasis.py`` and the
brain bundle (``--dataset_dir DATA/demo_oasis``) run on it as on OASIS-1.  NOT OASIS data: one brain, deformed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

if importlib.util.find_spec("monai_galr") is None:  # a source checkout without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from monai_galr.data.oasis import make_demo_oasis

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad arguments or unwritable output)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n_subjects", type=int, default=8, help="number of subjects (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=[160, 192, 224], metavar=("H", "W", "D"),
        help="volume grid (default 160 192 224, the OASIS grid at 1 mm)",
    )
    parser.add_argument("--deform_mm", type=float, default=2.0, help="displacement standard deviation in mm")
    args = parser.parse_args(argv)
    try:
        paths = make_demo_oasis(args.out, args.n_subjects, args.seed, tuple(args.shape), args.deform_mm)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"error: --out {args.out!r}: cannot write the demo folder ({type(e).__name__}: {e}); expected a writable "
            "folder.",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {len(paths)} demo subjects (MNI152-derived, not OASIS data) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
