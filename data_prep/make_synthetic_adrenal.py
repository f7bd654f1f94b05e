"""Write a synthetic AdrenalMNIST3D-format npz of adrenal-like shapes (the embedded default of adrenal_ct_so3).

Usage::

    python data_prep/make_synthetic_adrenal.py --out DIR                      # DIR/adrenalmnist3d_64.npz
    python data_prep/make_synthetic_adrenal.py --out DIR --size 28 --n_train 100 --n_val 20 --n_test 40

The file has the keys, shapes and dtypes of MedMNIST's ``adrenalmnist3d_64.npz`` (``adrenalmnist3d.npz`` for
``--size 28``, ``adrenalmnist3d_S.npz`` otherwise), so ``--dataset_dir DIR`` of the bundle reads it like the real
data.  The shapes are SYNTHETIC (thin bent Y/V/lambda plates, class 1 with a rounded mass), not patient data.
Written atomically (temporary file, then rename).  Exit code 2 on bad arguments or an unwritable
``--out`` (checked before any volume is drawn).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

if importlib.util.find_spec("monai_galr") is None:  # a source checkout without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from monai_galr.data import adrenal_file_name, make_synthetic_adrenal

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad arguments or unwritable output)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--size", type=int, default=64, help="cube edge in voxels (field of view 64 mm); default 64")
    parser.add_argument("--n_train", type=int, default=1188)
    parser.add_argument("--n_val", type=int, default=98)
    parser.add_argument("--n_test", type=int, default=298)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mass_fraction", type=float, default=0.5, help="probability of class 1 (mass)")
    args = parser.parse_args(argv)
    try:
        path = os.path.join(args.out, adrenal_file_name(args.size))
        make_synthetic_adrenal(
            path, args.n_train, args.n_val, args.n_test, size=args.size, seed=args.seed,
            mass_fraction=args.mass_fraction,
        )
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"error: --out {args.out!r}: cannot write {os.path.basename(path)} ({type(e).__name__}: {e}); expected a "
            "writable folder; an existing file there is left unchanged.",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {path} (SYNTHETIC adrenal-like shapes: {args.n_train}/{args.n_val}/{args.n_test}, {args.size}^3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
