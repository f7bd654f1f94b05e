"""Check MNIST (IDX files or an ``mnist.npz``) and write the normalized ``mnist.npz`` the bundles read.

Usage::

    python data_prep/prepare_mnist.py --src DIR --out DIR/mnist.npz   # report, then write
    python data_prep/prepare_mnist.py --src DIR --check              # report only

``DIR`` holds ``mnist.npz`` (keys ``x_train, y_train, x_test, y_test``) or the four IDX files of the original
release (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``).  The output holds ``x_train``/``x_test`` ``uint8 (N, 28, 28)``
and ``y_train``/``y_test`` ``int64 (N,)``; it is written to a temporary file in the same folder and then moved
into place, so an interrupted or failed run never leaves a half-written ``mnist.npz`` (an existing one is kept).
Exit code 2 on bad input (a malformed source, an unwritable ``--out``), with a message naming the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

import numpy as np

if importlib.util.find_spec("monai_galr") is None:  # a source checkout without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from monai_galr.data import atomic_output, load_mnist_arrays

__all__ = ["main", "report", "write_npz"]


def report(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """A human-readable summary: per split counts, shapes, dtype, value range and label counts."""
    lines = []
    for split, (x, y) in arrays.items():
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        counts = np.bincount(y, minlength=10)
        lines.append(
            f"{split}: {len(y)} images, shape {tuple(x.shape)}, dtype {x.dtype}, values [{lo}, {hi}]; "
            f"labels {y.dtype} {tuple(y.shape)}, counts per class {dict(enumerate(counts.tolist()))}"
        )
    return "\n".join(lines)


def write_npz(arrays: dict[str, tuple[np.ndarray, np.ndarray]], out: str) -> None:
    """Write ``x_train, y_train, x_test, y_test`` to ``out`` atomically (temporary file + ``os.replace``)."""
    with atomic_output(out, prefix=".mnist-", suffix=".npz.tmp") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            x_train=arrays["train"][0].astype(np.uint8),
            y_train=arrays["train"][1].astype(np.int64),
            x_test=arrays["test"][0].astype(np.uint8),
            y_test=arrays["test"][1].astype(np.int64),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad input or unwritable output)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="folder with mnist.npz or the four IDX files (optionally .gz)")
    parser.add_argument("--out", help="output npz path, e.g. DATA/mnist.npz (required unless --check)")
    parser.add_argument("--check", action="store_true", help="only validate the input and print the report")
    args = parser.parse_args(argv)
    if not args.check and not args.out:
        parser.error("--out is required unless --check is given")
    try:
        arrays = load_mnist_arrays(args.src)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(arrays))
    if args.check:
        print("check passed")
        return 0
    try:
        write_npz(arrays, args.out)
    except OSError as e:
        print(
            f"error: --out {args.out!r}: cannot write the npz ({type(e).__name__}: {e}); expected a writable file "
            "path; an existing file there is left unchanged.",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
