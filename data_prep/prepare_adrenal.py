"""Check a downloaded AdrenalMNIST3D npz and, optionally, write it as NIfTI volumes plus a MONAI datalist JSON.

Usage::

    python data_prep/prepare_adrenal.py --src DIR_OR_NPZ --check          # validate and report only
    python data_prep/prepare_adrenal.py --src DIR_OR_NPZ --out OUT         # also write OUT/{train,val,test}/*.nii.gz
                                                                          # and OUT/datalist.json

``--src`` is MedMNIST's ``adrenalmnist3d_64.npz`` / ``adrenalmnist3d.npz`` (https://medmnist.com, CC BY 4.0)
or the folder holding it (``--size 64|28`` picks one; default: 64 if present).  Checked: the keys
``train_images, train_labels, val_images, val_labels, test_images, test_labels``, volumes ``(N, S, S, S)``
``uint8`` 0..255, labels ``(N, 1)`` in {0 normal, 1 mass}, one per volume; split sizes other than the official
1188 / 98 / 298 give a warning, not an error.  Exit code 2, with a message naming the file, on bad input (and on
an unwritable ``--out``).

The NIfTI files are ``uint8`` with an isotropic voxel size of ``64 / S`` mm (MedMNIST volumes have no physical
spacing; the field of view is nominal).  ``datalist.json`` holds ``{"training": [...], "validation": [...],
"test": [...]}`` items ``{"image": "train/adrenal_train_0000.nii.gz", "label": 0}`` (paths relative to OUT, as
``monai.data.load_decathlon_datalist`` expects).  Everything is written to a temporary folder first and moved
into place; the datalist is written last.  When a step fails, the previous split folders and datalist are kept
(or put back), so an earlier output is never replaced with partial data.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

if importlib.util.find_spec("monai_galr") is None:  # a source checkout without the package installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from monai_galr.data import ADRENAL_SPLIT_SIZES, FIELD_OF_VIEW_MM, load_adrenal_arrays, load_adrenal_npz
from monai_galr.handlers import write_json_atomic

__all__ = ["DATALIST_KEYS", "load", "main", "report", "size_warnings", "write_nifti"]

#: split -> key of the datalist JSON (MONAI / Decathlon style)
DATALIST_KEYS = {"train": "training", "val": "validation", "test": "test"}


def load(src: str, size: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load and check ``src`` (an npz file or a folder holding one); see ``monai_galr.data.load_adrenal_npz``."""
    if os.path.isdir(src):
        return load_adrenal_arrays(src, size=size)
    return load_adrenal_npz(src, size=size)


def report(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """A human-readable summary: per split count, shape, dtype, value range and label counts."""
    lines = []
    for split, (x, y) in arrays.items():
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        counts = np.bincount(y, minlength=2)
        lines.append(
            f"{split}: {len(y)} volumes, shape {tuple(x.shape)}, dtype {x.dtype}, values [{lo}, {hi}]; "
            f"labels normal {int(counts[0])}, mass {int(counts[1])}"
        )
    return "\n".join(lines)


def size_warnings(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """One line per split whose size differs from the official AdrenalMNIST3D split."""
    return [
        f"warning: split {split!r} has {len(arrays[split][1])} volumes, the official AdrenalMNIST3D split has {n} "
        "(a subset or another file?)"
        for split, n in ADRENAL_SPLIT_SIZES.items()
        if len(arrays[split][1]) != n
    ]


def _swap_in(tmp: str, out: str, splits: Sequence[str], datalist: dict, path: str) -> None:
    """Move ``tmp/<split>`` folders to ``out/<split>``, then write ``path``; on any failure, restore the old state.

    The previous split folders are first moved aside (into ``tmp/.previous``, a rename), so a failure while moving
    the new ones in or writing the datalist puts them back: the old datalist keeps pointing at the old files.
    """
    aside = os.path.join(tmp, ".previous")
    os.makedirs(aside)
    moved_aside = []
    try:
        for split in splits:
            final = os.path.join(out, split)
            if os.path.lexists(final):
                os.replace(final, os.path.join(aside, split))
                moved_aside.append(split)
            os.replace(os.path.join(tmp, split), final)
        write_json_atomic(datalist, path)
    except BaseException:
        for split in splits:
            final = os.path.join(out, split)
            if not os.path.exists(os.path.join(tmp, split)) and os.path.isdir(final):
                shutil.rmtree(final, ignore_errors=True)  # the new folder had gone in: take it out
            if split in moved_aside:
                os.replace(os.path.join(aside, split), final)
        raise


def write_nifti(arrays: dict[str, tuple[np.ndarray, np.ndarray]], out: str) -> str:
    """Write ``out/{train,val,test}/adrenal_{split}_{i:04d}.nii.gz`` and ``out/datalist.json``; return its path.

    Every volume is written into a temporary folder inside ``out`` first; only then are the split folders moved
    into place and the datalist written (last, atomically).  If anything fails, the previous folders and datalist
    are left (or put back) as they were and the temporary folder is removed.

    Raises:
        OSError: ``out`` cannot be created or written, or a write fails (disk full ...).
    """
    import nibabel as nib

    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".adrenal-nifti-", dir=out)
    datalist: dict[str, list[dict]] = {}
    path = os.path.join(out, "datalist.json")
    try:
        for split, (x, y) in arrays.items():
            os.makedirs(os.path.join(tmp, split))
            affine = np.diag([FIELD_OF_VIEW_MM / x.shape[1]] * 3 + [1.0])
            items = []
            for i, (vol, label) in enumerate(zip(x, y)):
                rel = f"{split}/adrenal_{split}_{i:04d}.nii.gz"
                nib.save(nib.Nifti1Image(np.ascontiguousarray(vol, dtype=np.uint8), affine), os.path.join(tmp, rel))
                items.append({"image": rel, "label": int(label)})
            datalist[DATALIST_KEYS[split]] = items
        _swap_in(tmp, out, list(arrays), datalist, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad input or unwritable output)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="adrenalmnist3d_64.npz / adrenalmnist3d.npz, or its folder")
    parser.add_argument("--size", type=int, default=None, help="cube edge to read from a folder (64 or 28)")
    parser.add_argument("--out", help="output folder for NIfTI files and datalist.json (required unless --check)")
    parser.add_argument("--check", action="store_true", help="only validate the input and print the report")
    args = parser.parse_args(argv)
    if not args.check and not args.out:
        parser.error("--out is required unless --check is given")
    try:
        arrays = load(args.src, args.size)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(arrays))
    for line in size_warnings(arrays):
        print(line, file=sys.stderr)
    if args.check:
        print("check passed")
        return 0
    try:
        path = write_nifti(arrays, args.out)
    except OSError as e:
        print(
            f"error: --out {args.out!r}: cannot write the NIfTI files ({type(e).__name__}: {e}); expected a writable "
            "folder; the previous datalist.json and split folders there are left unchanged.",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {sum(len(y) for _, y in arrays.values())} NIfTI volumes and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
