"""OASIS-1 (the neurite / HyperMorph release): find the skull-stripped volumes, check them, split, write datalists.

The release's root folder holds ``subjects.txt``, ``seg35_labels.txt``, ... and one folder per subject,
``OASIS_OAS1_XXXX_MR1/``, with ``aligned_norm.nii.gz`` (skull-stripped, bias-corrected, ``160x192x224``, intensities
in [0, 1]) beside ``aligned_orig`` / ``aligned_seg4`` / ``aligned_seg35`` and 2D ``slice_*`` files.

- :func:`find_oasis_subjects` lists the ``OASIS_OAS1_*_MR1/aligned_norm.nii.gz`` files;
- :func:`check_volume` opens one file with nibabel and says what is wrong with it (unreadable, not 3D, empty,
  wrong shape, non-finite or all-zero values) without raising;
- :func:`split_subjects` cuts the sorted subject list into train / val / test with a fixed seed;
- :func:`build_oasis_datalist` does all three and returns a MONAI datalist (``training`` / ``validation`` /
  ``test`` lists of ``{"image": path, "subject": id}``) and a report of the subjects left out;
- :func:`write_datalist` writes it atomically, :func:`load_oasis_datalist` reads it back and checks that every
  file exists; :func:`oasis_splits` is what the bundle calls.

The embedded default (a demo folder in the same layout, made from nilearn's MNI152 template) lives in
:mod:`monai_galr.data.oasis_demo`; :func:`make_demo_oasis` is re-exported here.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_galr.data.io import check_image_file
from monai_galr.data.oasis_demo import DEMO_NOTE, ensure_demo_oasis, make_demo_oasis
from monai_galr.utils import check_fraction, check_max, check_seed, check_shape, write_json_atomic

__all__ = [
    "DATALIST_KEYS",
    "OASIS_IMAGE",
    "OASIS_SHAPE",
    "OASIS_SUBJECT_GLOB",
    "build_oasis_datalist",
    "check_volume",
    "ensure_demo_oasis",
    "find_oasis_subjects",
    "format_report",
    "load_oasis_datalist",
    "make_demo_oasis",
    "oasis_splits",
    "report_path_for",
    "split_subjects",
    "write_datalist",
]

logger = logging.getLogger("monai_galr.data")

OASIS_SUBJECT_GLOB = "OASIS_OAS1_*_MR1"
OASIS_IMAGE = "aligned_norm.nii.gz"
OASIS_SHAPE = (160, 192, 224)
#: split name in :func:`oasis_splits` -> key of the MONAI datalist JSON
DATALIST_KEYS = {"train": "training", "val": "validation", "test": "test"}
_SUBJECT_RE = re.compile(r"^OASIS_OAS1_\d+_MR1$")


def _check_dir(root: str | os.PathLike, name: str) -> str:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str), got {type(root).__name__}.")
    folder = os.path.abspath(os.fspath(root))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"{name} {os.fspath(root)!r} {what} (resolved path: {folder!r}).")
    return folder


def find_oasis_subjects(root: str | os.PathLike, image_name: str = OASIS_IMAGE) -> list[tuple[str, str]]:
    """List the subjects of an OASIS folder that hold ``image_name``.

    Args:
        root: the release's root folder (holding ``OASIS_OAS1_XXXX_MR1/`` folders).
        image_name: the volume to use in each subject folder, default ``aligned_norm.nii.gz``.

    Returns:
        ``[(subject_id, absolute_path), ...]`` sorted by subject id.  Subject folders without ``image_name`` are
        logged (warning) and skipped.

    Raises:
        ValueError: ``root`` is not a folder, or it holds no subject with ``image_name``.
    """
    folder = _check_dir(root, "root")
    dirs = sorted(d for d in glob.glob(os.path.join(folder, OASIS_SUBJECT_GLOB)) if os.path.isdir(d))
    found, missing = [], []
    for d in dirs:
        sid = os.path.basename(d)
        if not _SUBJECT_RE.match(sid):
            continue
        path = os.path.join(d, image_name)
        (found if os.path.isfile(path) else missing).append((sid, path))
    if missing:
        logger.warning(
            "%d OASIS subject folder(s) in %s have no %s and are skipped: %s",
            len(missing),
            folder,
            image_name,
            ", ".join(s for s, _ in missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    if not found:
        raise ValueError(
            f"no OASIS subject found in {folder!r}: expected folders {OASIS_SUBJECT_GLOB}/ holding {image_name!r} "
            f"(the neurite OASIS-1 layout); found {len(dirs)} subject folder(s)"
            + (f", none with {image_name!r}." if dirs else ".")
        )
    return found


def check_volume(
    path: str | os.PathLike, expected_shape: Sequence[int] | None = None, check_values: bool = True
) -> str | None:
    """What is wrong with one volume file, or None when it is usable.

    Never raises for a bad file: the problem is returned as a sentence, so one bad subject never stops a run
    (see :func:`monai_galr.data.io.check_image_file`, of which this is the 3D case).

    Args:
        path: a NIfTI file (``.nii`` / ``.nii.gz``).
        expected_shape: the required ``(H, W, D)``; None accepts any 3D shape.
        check_values: also read the voxels and require finite values that are not all zero (slower: the whole
            file is decompressed); False checks the header only.

    Returns:
        None, or a description such as ``"4D image of shape (160, 192, 224, 2), expected a 3D volume"``.
    """
    return check_image_file(path, 3, check_shape(expected_shape, 3, "expected_shape"), check_values=check_values)


def split_subjects(
    subjects: Sequence[str], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, list[str]]:
    """Cut subject ids into train / val / test with a fixed seed.

    The ids are sorted, shuffled with ``np.random.default_rng(seed)``; the first ``round(N * test_fraction)``
    go to test, the next ``round(N * val_fraction)`` to val, the rest to train (each split sorted).  The split of
    a subject depends on the full id list only, so checking files afterwards never moves anyone.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more, a negative seed, duplicate ids, or nothing
            left to train on.
    """
    val_fraction = check_fraction(val_fraction, "val_fraction")
    test_fraction = check_fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}."
        )
    seed = check_seed(seed)
    ids = sorted(subjects)
    if len(set(ids)) != len(ids):
        raise ValueError("subjects must be unique ids.")
    n = len(ids)
    # not monai.data.partition_dataset: it shuffles with np.random.RandomState(seed), another permutation than
    # default_rng(seed), so the same seed would move subjects between train / val / test and the shipped brain
    # weights' documented test metrics would no longer be on the same test subjects
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    if n - n_test - n_val < 1:
        raise ValueError(
            f"{n} subject(s) with val_fraction={val_fraction} and test_fraction={test_fraction} leave nothing to "
            "train on."
        )
    pick = lambda idx: sorted(ids[i] for i in idx)  # noqa: E731
    return {
        "train": pick(perm[n_test + n_val :]),
        "val": pick(perm[n_test : n_test + n_val]),
        "test": pick(perm[:n_test]),
    }


def build_oasis_datalist(
    root: str | os.PathLike, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
    expected_shape: Sequence[int] | None = OASIS_SHAPE, image_name: str = OASIS_IMAGE, check_values: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Find, split and check the OASIS volumes of ``root``.

    Subjects are split first (:func:`split_subjects` over every subject found), then each file is checked with
    :func:`check_volume`; a bad subject is left out of its split and listed in the report.

    Returns:
        ``(datalist, report)``: ``datalist`` has ``"training"``, ``"validation"``, ``"test"`` lists of
        ``{"image": absolute path, "subject": id}`` plus the settings that made it; ``report`` has ``"excluded"``
        (``[{"subject", "image", "split", "reason"}]``) and counts.

    Raises:
        ValueError: ``root`` holds no subject (see :func:`find_oasis_subjects`), bad fractions / seed / shape.
    """
    shape = check_shape(expected_shape, 3, "expected_shape")
    found = dict(find_oasis_subjects(root, image_name))
    split = split_subjects(list(found), val_fraction, test_fraction, seed)
    datalist: dict[str, Any] = {
        "description": "OASIS-1 (neurite release) skull-stripped volumes",
        "root": os.path.abspath(os.fspath(root)),
        "image_name": image_name,
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "expected_shape": list(shape) if shape else None,
    }
    excluded = []
    for name, key in DATALIST_KEYS.items():
        datalist[key] = []
        for sid in split[name]:
            reason = check_volume(found[sid], shape, check_values=check_values)
            if reason is None:
                datalist[key].append({"image": found[sid], "subject": sid})
            else:
                excluded.append({"subject": sid, "image": found[sid], "split": name, "reason": reason})
    report = {
        "root": datalist["root"],
        "found": len(found),
        "kept": {name: len(datalist[key]) for name, key in DATALIST_KEYS.items()},
        "excluded": sorted(excluded, key=lambda e: e["subject"]),
    }
    return datalist, report


def format_report(report: Mapping[str, Any]) -> str:
    """A human-readable summary of :func:`build_oasis_datalist`'s report."""
    kept = report["kept"]
    lines = [
        f"OASIS root {report['root']}: {report['found']} subject(s) found; kept train {kept['train']}, "
        f"val {kept['val']}, test {kept['test']}; excluded {len(report['excluded'])}."
    ]
    for e in report["excluded"]:
        lines.append(f"  EXCLUDED {e['subject']} ({e['split']}): {e['reason']} [{e['image']}]")
    return "\n".join(lines)


def report_path_for(datalist_path: str | os.PathLike) -> str:
    """Where the exclusion report of ``datalist_path`` goes: ``<name>_report.json`` beside it."""
    stem, _ = os.path.splitext(os.fspath(datalist_path))
    return stem + "_report.json"


def write_datalist(datalist: Mapping[str, Any], path: str | os.PathLike, report: Mapping | None = None) -> None:
    """Write ``datalist`` (and ``report`` beside it, see :func:`report_path_for`) atomically.

    Each file goes through a temporary file in the same folder and ``os.replace``, so an interrupted run never
    leaves a half-written JSON.
    """
    if report is not None:
        write_json_atomic(dict(report), report_path_for(path))
    write_json_atomic(dict(datalist), os.fspath(path))


def load_oasis_datalist(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> dict[str, list[dict]]:
    """Read a datalist JSON (as written by ``data_prep/prepare_oasis.py``) and check that every file exists.

    Args:
        path: the JSON file with ``"training"``, ``"validation"`` and ``"test"`` lists of ``{"image": path}``.
        base_dir: folder that relative image paths are relative to (default: the JSON's folder).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` with absolute ``"image"`` paths.

    Raises:
        FileNotFoundError: the JSON does not exist, or it points at missing files (all of them are listed).
        ValueError: the JSON is malformed (not JSON, no ``"training"`` list, items without ``"image"``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise ValueError(f"datalist {path!r} is a folder; expected a JSON file (see data_prep/prepare_oasis.py).")
        raise FileNotFoundError(f"datalist {path!r} does not exist (write it with data_prep/prepare_oasis.py).")
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        empty = " (an empty file)" if os.path.getsize(path) == 0 else ""
        raise ValueError(f"datalist {path!r} is not valid JSON{empty}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("training"), list):
        got = f"an object with keys {sorted(obj)[:10]}" if isinstance(obj, dict) else f"a JSON {type(obj).__name__}"
        raise ValueError(
            f"datalist {path!r} must be a JSON object with a 'training' list (MONAI datalist format: 'training', "
            f"'validation', 'test' lists of {{\"image\": path}}), got {got}."
        )
    # not monai.data.load_decathlon_datalist: it joins *every* value that names an existing path under base_dir
    # (a "subject" id such as OASIS_OAS1_0001_MR1 becomes a folder path when the datalist sits in the OASIS root),
    # needs a "validation" / "test" key, and does not list the missing files
    base = os.path.abspath(os.fspath(base_dir)) if base_dir is not None else os.path.dirname(os.path.abspath(path))
    out, missing = {}, []
    for name, key in DATALIST_KEYS.items():
        items = obj.get(key, [])
        if not isinstance(items, list):
            raise ValueError(f"datalist {path!r}: {key!r} must be a list, got {type(items).__name__}.")
        out[name] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                raise ValueError(f"datalist {path!r}: {key}[{i}] must be an object with an 'image' path, got {item!r}.")
            image = item["image"] if os.path.isabs(item["image"]) else os.path.join(base, item["image"])
            if not os.path.isfile(image):
                missing.append(f"{key}[{i}]: {image}")
            out[name].append({**item, "image": image})
    if missing:
        shown = "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
        raise FileNotFoundError(
            f"datalist {path!r} points at {len(missing)} missing file(s) (moved data? rerun "
            f"data_prep/prepare_oasis.py):\n  {shown}"
        )
    return out


def _cap(items: list[dict], value: int | None, name: str) -> list[dict]:
    value = check_max(value, name)
    return items if value is None else items[:value]


def oasis_splits(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    expected_shape: Sequence[int] | None = None,
    image_name: str = OASIS_IMAGE,
    check_values: bool = False,
    demo_dir: str | os.PathLike | None = None,
    demo_subjects: int = 8,
    demo_seed: int = 0,
    demo_shape: Sequence[int] = OASIS_SHAPE,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
) -> dict[str, list[dict]]:
    """The bundle's data: train / val / test lists of ``{"image": path, "subject": id}``.

    Sources, first match wins:

    - ``datalist``: a JSON written by ``data_prep/prepare_oasis.py`` (files must exist);
    - ``dataset_dir``: an OASIS root, discovered, split and checked here (header-only checks by default: the
      bad subjects are logged and left out);
    - neither: the demo folder made from nilearn's MNI152 template in ``demo_dir`` (built once, see
      :func:`ensure_demo_oasis`), with a loud warning.

    Raises:
        ValueError / FileNotFoundError: see :func:`load_oasis_datalist`, :func:`build_oasis_datalist`; also when
            every subject of a split needed for training is excluded.
    """
    if datalist is not None:
        out = load_oasis_datalist(datalist)
        origin = f"datalist {os.fspath(datalist)!r}"
    else:
        if dataset_dir is None:
            if demo_dir is None:
                raise ValueError("give dataset_dir (an OASIS root), datalist (a JSON) or demo_dir (demo cache).")
            root = ensure_demo_oasis(demo_dir, n_subjects=demo_subjects, seed=demo_seed, shape=demo_shape)
            logger.warning("%s Folder: %s", DEMO_NOTE, root)
            origin = f"DEMO folder {root!r}"
        else:
            root = dataset_dir
            origin = f"OASIS folder {os.fspath(root)!r}"
        dl, report = build_oasis_datalist(
            root, val_fraction, test_fraction, seed, expected_shape, image_name, check_values=check_values
        )
        if report["excluded"]:
            logger.warning(format_report(report))
        out = {name: dl[key] for name, key in DATALIST_KEYS.items()}
    if not out["train"]:
        if datalist is not None:
            detail = "its 'training' list is empty"
        else:
            detail = (
                f"{report['found']} subject(s) found, {len(report['excluded'])} excluded as unusable (see the warning "
                f"above; expected_shape={expected_shape}), val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
        raise ValueError(f"{origin} has no usable training subject ({detail}); expected at least one.")
    out = {
        "train": _cap(out["train"], max_train, "max_train"),
        "val": _cap(out["val"], max_val, "max_val"),
        "test": _cap(out["test"], max_test, "max_test"),
    }
    if not out["train"]:
        raise ValueError(f"max_train={max_train} leaves no training subject; expected None or a positive int.")
    logger.info(
        "OASIS splits from %s: train %d, val %d, test %d.", origin, len(out["train"]), len(out["val"]), len(out["test"])
    )
    return out
