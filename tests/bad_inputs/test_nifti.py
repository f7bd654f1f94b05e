"""Bad NIfTI volumes and datalists: the OASIS builder, data_prep/prepare_oasis.py and the inference input check.

A bad subject of an OASIS folder is reported (with its reason) and left out, never fatal: through
``oasis_splits(check_values=True)`` (what the brain bundle calls) and ``prepare_oasis.main`` (exit 0, the reason in
the report JSON).  The same files handed to an inference config (``check_image_files``) stop it with one error
that lists every bad file.  ``tests/data/test_oasis.py`` covers ``check_volume`` / ``build_oasis_datalist`` on
corrupt, 4D, empty, all-NaN and wrong-shape files, a missing datalist file, invalid JSON and a datalist pointing
at missing files; those are not repeated here.
"""

from __future__ import annotations

import gzip
import json
import logging

import nibabel as nib
import numpy as np
import pytest

from monai_galr.data import check_image_files, oasis_splits

SHAPE = (6, 7, 8)


def _save(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4)), str(path))


def _good(path, seed: int = 0) -> None:
    _save(path, np.random.default_rng(seed).random(SHAPE) + 0.1)


def _truncated(path) -> None:
    _good(path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:400]))  # a valid header, most voxels missing


def _with(value, count: int):
    def write(path):
        data = np.ones(SHAPE, np.float32)
        data.reshape(-1)[:count] = value
        _save(path, data)

    return write


# case id -> (writer of the bad file, the reason that must be reported)
BAD_VOLUMES = {
    "corrupt_gzip": (lambda p: p.write_bytes(b"\x1f\x8b\x08garbage"), "cannot be read by nibabel"),
    "text_not_nifti": (lambda p: p.write_text("subject notes, not an image"), "cannot be read by nibabel"),
    "truncated_payload": (_truncated, "cannot be read by nibabel"),
    "zero_size_file": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "volume_4d": (lambda p: _save(p, np.ones(SHAPE + (2,))), "4D image of shape (6, 7, 8, 2), expected a 3D volume"),
    "image_2d": (lambda p: _save(p, np.ones((6, 7))), "2D image of shape (6, 7), expected a 3D volume"),
    "all_nan": (lambda p: _save(p, np.full(SHAPE, np.nan)), "no finite value (all NaN/inf)"),
    "some_nan": (_with(np.nan, 1), "1 non-finite (NaN/inf) voxel(s) of 336"),
    "some_inf": (_with(np.inf, 2), "2 non-finite (NaN/inf) voxel(s) of 336"),
    "all_zero": (lambda p: _save(p, np.zeros(SHAPE)), "all voxels are zero"),
}
BAD_SUBJECT = "OASIS_OAS1_0004_MR1"


def _root(tmp_path, case: str):
    """Three good subjects and one bad one (``BAD_SUBJECT``)."""
    root = tmp_path / "oasis"
    for i in (1, 2, 3):
        _good(root / f"OASIS_OAS1_{i:04d}_MR1" / "aligned_norm.nii.gz", seed=i)
    bad = root / BAD_SUBJECT / "aligned_norm.nii.gz"
    bad.parent.mkdir(parents=True)
    BAD_VOLUMES[case][0](bad)
    return root, bad


@pytest.mark.parametrize("case", sorted(BAD_VOLUMES))
def test_oasis_builder_skips_and_reports(tmp_path, case, caplog):
    root, bad = _root(tmp_path, case)
    with caplog.at_level(logging.WARNING, logger="monai_galr.data"):
        splits = oasis_splits(dataset_dir=root, val_fraction=0.0, test_fraction=0.0, check_values=True)
    assert [d["subject"] for d in splits["train"]] == [f"OASIS_OAS1_{i:04d}_MR1" for i in (1, 2, 3)]
    line = next(t for t in caplog.text.splitlines() if f"EXCLUDED {BAD_SUBJECT}" in t)
    assert BAD_VOLUMES[case][1] in line and str(bad) in line


@pytest.mark.parametrize("case", sorted(BAD_VOLUMES))
def test_prepare_oasis_skips_and_reports(tmp_path, case, scripts, capsys):
    root, bad = _root(tmp_path, case)
    out = tmp_path / "lists" / "oasis.json"
    args = ["--root", str(root), "--out", str(out), "--any_shape", "--val_fraction", "0", "--test_fraction", "0"]
    assert scripts.prepare_oasis.main(args) == 0
    assert f"EXCLUDED {BAD_SUBJECT} (train): {BAD_VOLUMES[case][1]}" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["training"]) == 3
    report = json.loads((out.parent / "oasis_report.json").read_text())
    assert [(e["subject"], e["image"]) for e in report["excluded"]] == [(BAD_SUBJECT, str(bad))]
    assert BAD_VOLUMES[case][1] in report["excluded"][0]["reason"]
    assert scripts.prepare_oasis.main(args + ["--strict"]) == 3  # --strict flags the exclusion


@pytest.mark.parametrize("case", sorted(BAD_VOLUMES))
def test_inference_inputs_rejected(tmp_path, case):
    good, bad = tmp_path / "good.nii.gz", tmp_path / "in" / "bad.nii.gz"
    _good(good)
    bad.parent.mkdir()
    BAD_VOLUMES[case][0](bad)
    with pytest.raises(ValueError) as err:
        check_image_files([str(good), str(bad)])
    msg = str(err.value)
    assert msg.startswith("input_files: 1 of 2 file(s) unusable (expected a 3D volume each)")
    assert f"input_files[1] {bad}: {BAD_VOLUMES[case][1]}" in msg and "input_files[0]" not in msg


# ---- inference inputs: the list itself ---------------------------------------------------------------------------
def test_inference_inputs_ok_and_missing(tmp_path):
    good = tmp_path / "good.nii.gz"
    _good(good)
    assert check_image_files([str(good)]) == [{"image": str(good)}]
    with pytest.raises(FileNotFoundError) as err:
        check_image_files([str(good), str(tmp_path / "nope.nii.gz"), str(tmp_path)])
    msg = str(err.value)
    assert "2 of 3 file(s) unusable" in msg
    assert f"input_files[1] {tmp_path / 'nope.nii.gz'}: file does not exist" in msg
    assert f"input_files[2] {tmp_path}: is not a file" in msg


@pytest.mark.parametrize(
    "files, error, match",
    [
        ("brain.nii.gz", TypeError, r"input_files must be a list of file paths, got a single str 'brain\.nii\.gz'; "
                                    r"write it as a list: \['brain\.nii\.gz'\]"),
        ([], ValueError, r"input_files is empty; expected at least one image file"),
        ([3], TypeError, r"input_files\[0\] must be a file path \(str\), got int 3"),
        ({"image": "a.nii.gz"}, TypeError, r"input_files must be a list of file paths, got dict"),
    ],
    ids=["single_string", "empty_list", "non_path_item", "dict"],
)
def test_inference_inputs_bad_list(files, error, match):
    with pytest.raises(error, match=match):
        check_image_files(files)


def test_inference_inputs_2d(tmp_path):
    flat, vol, png = tmp_path / "digit.nii.gz", tmp_path / "vol.nii.gz", tmp_path / "digit.png"
    _save(flat, np.ones((28, 28)))
    _save(vol, np.ones((28, 28, 3)))
    png.write_bytes(b"")
    assert check_image_files([str(flat)], spatial_dims=2) == [{"image": str(flat)}]
    with pytest.raises(ValueError) as err:
        check_image_files([str(flat), str(vol), str(png)], spatial_dims=2)
    msg = str(err.value)
    assert "(expected a 2D image each)" in msg
    assert f"input_files[1] {vol}: 3D image of shape (28, 28, 3), expected a 2D image" in msg
    assert f"input_files[2] {png}: empty file (0 bytes)" in msg


# ---- datalists ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, error, match",
    [
        ("", ValueError, r"oasis\.json'? is not valid JSON \(an empty file\): JSONDecodeError"),
        ("[]", ValueError, r"must be a JSON object with a 'training' list .*got a JSON list"),
        ('{"validation": []}', ValueError, r"'training' list .*got an object with keys \['validation'\]"),
        ('{"training": [{"label": 0}]}', ValueError, r"training\[0\] must be an object with an 'image' path, "
                                                     r"got \{'label': 0\}"),
        ('{"training": []}', ValueError, r"oasis\.json'? has no usable training subject \(its 'training' list is "
                                         r"empty\); expected at least one"),
    ],
    ids=["empty_file", "top_level_list", "no_training_key", "item_without_image", "empty_training_list"],
)
def test_bad_datalist(tmp_path, content, error, match):
    path = tmp_path / "oasis.json"
    path.write_text(content)
    with pytest.raises(error, match=match) as err:
        oasis_splits(datalist=path)
    assert str(path) in str(err.value)


def test_datalist_is_a_folder(tmp_path):
    with pytest.raises(ValueError, match=r"datalist '.*' is a folder; expected a JSON file"):
        oasis_splits(datalist=tmp_path)


# ---- no usable volume at all -------------------------------------------------------------------------------------
def test_oasis_no_volume_found(tmp_path):
    (tmp_path / "OASIS_OAS1_0001_MR1").mkdir()
    (tmp_path / "OASIS_OAS1_0002_MR1").mkdir()
    with pytest.raises(ValueError, match=r"no OASIS subject found in '.*': expected folders OASIS_OAS1_\*_MR1/ "
                                         r"holding 'aligned_norm\.nii\.gz' .*found 2 subject folder\(s\), none with"):
        oasis_splits(dataset_dir=tmp_path)


def test_oasis_every_subject_excluded(tmp_path):
    for i in (1, 2, 3):
        _save(tmp_path / f"OASIS_OAS1_{i:04d}_MR1" / "aligned_norm.nii.gz", np.full(SHAPE, np.nan))
    with pytest.raises(ValueError, match=r"OASIS folder '.*' has no usable training subject \(3 subject\(s\) found, "
                                         r"3 excluded as unusable"):
        oasis_splits(dataset_dir=tmp_path, val_fraction=0.0, test_fraction=0.0, check_values=True)
