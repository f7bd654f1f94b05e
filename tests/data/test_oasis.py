"""Tests for monai_galr.data.oasis: discovery, split determinism, bad subjects reported and skipped, datalists."""

from __future__ import annotations

import gzip
import json
import os

import nibabel as nib
import numpy as np
import pytest

from monai_galr.data import oasis

SHAPE = (10, 12, 14)


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4)), str(path))


def _subject(root, i, data=None):
    path = os.path.join(root, f"OASIS_OAS1_{i:04d}_MR1", "aligned_norm.nii.gz")
    if data is None:
        data = np.random.default_rng(i).random(SHAPE)
    _write(path, data)
    return path


@pytest.fixture()
def root(tmp_path):
    for i in range(1, 11):
        _subject(tmp_path, i)
    (tmp_path / "subjects.txt").write_text("\n".join(f"OASIS_OAS1_{i:04d}_MR1" for i in range(1, 11)))
    os.makedirs(tmp_path / "OASIS_OAS1_0099_MR1")  # a subject folder without the volume: skipped, logged
    os.makedirs(tmp_path / "not_a_subject")
    return tmp_path


def test_find_subjects(root, caplog):
    found = oasis.find_oasis_subjects(root)
    assert [s for s, _ in found] == [f"OASIS_OAS1_{i:04d}_MR1" for i in range(1, 11)]
    assert all(os.path.isabs(p) and p.endswith("aligned_norm.nii.gz") for _, p in found)
    assert "OASIS_OAS1_0099_MR1" in caplog.text


def test_find_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        oasis.find_oasis_subjects(tmp_path / "nope")
    with pytest.raises(ValueError, match="no OASIS subject"):
        oasis.find_oasis_subjects(tmp_path)
    with pytest.raises(TypeError, match="root must be a path"):
        oasis.find_oasis_subjects(3)


def test_split_deterministic_and_disjoint():
    ids = [f"s{i:03d}" for i in range(50)]
    a = oasis.split_subjects(ids, 0.1, 0.2, seed=0)
    assert a == oasis.split_subjects(list(reversed(ids)), 0.1, 0.2, seed=0)  # order of the input does not matter
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (35, 5, 10)
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert a != oasis.split_subjects(ids, 0.1, 0.2, seed=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
        ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\)"),
        ({"seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        oasis.split_subjects(["a", "b", "c"], **kwargs)
    with pytest.raises(ValueError, match="leave nothing to train on"):
        oasis.split_subjects(["a"], 0.0, 0.6)


def test_check_volume_cases(tmp_path):
    good = tmp_path / "good.nii.gz"
    _write(good, np.ones(SHAPE))
    assert oasis.check_volume(good, SHAPE) is None
    assert "shape (10, 12, 14), expected (9, 12, 14)" in oasis.check_volume(good, (9, 12, 14))
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(b"\x1f\x8bnot really gzip")
    assert "cannot be read" in oasis.check_volume(bad)
    raw = gzip.decompress(good.read_bytes())
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(gzip.compress(raw[:400]))  # header fine, voxels missing
    assert "cannot be read" in oasis.check_volume(trunc, check_values=True)
    assert oasis.check_volume(trunc, check_values=False) is None  # a header-only check cannot see it
    four = tmp_path / "four.nii.gz"
    _write(four, np.ones(SHAPE + (2,)))
    assert "4D image" in oasis.check_volume(four)
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    assert "empty file" in oasis.check_volume(empty)
    nan = tmp_path / "nan.nii.gz"
    _write(nan, np.full(SHAPE, np.nan))
    assert "all NaN" in oasis.check_volume(nan)
    zero = tmp_path / "zero.nii.gz"
    _write(zero, np.zeros(SHAPE))
    assert "all voxels are zero" in oasis.check_volume(zero)
    assert oasis.check_volume(tmp_path / "missing.nii.gz") == "file does not exist"


def test_bad_subjects_reported_and_skipped(root):
    ref, _ = oasis.build_oasis_datalist(root, 0.2, 0.2, seed=0, expected_shape=SHAPE)
    split_of = {d["subject"]: k for k in ("training", "validation", "test") for d in ref[k]}
    p = os.path.join(root, "OASIS_OAS1_0002_MR1", "aligned_norm.nii.gz")
    with open(p, "wb") as f:
        f.write(b"\x1f\x8b\x08garbage")  # corrupt gz
    _subject(root, 3, np.ones(SHAPE + (2,)))  # 4D
    open(os.path.join(root, "OASIS_OAS1_0004_MR1", "aligned_norm.nii.gz"), "wb").close()  # empty
    _subject(root, 5, np.full(SHAPE, np.nan))  # all NaN
    _subject(root, 6, np.ones((8, 12, 14)))  # wrong shape
    datalist, report = oasis.build_oasis_datalist(root, 0.2, 0.2, seed=0, expected_shape=SHAPE)
    excluded = {e["subject"]: e for e in report["excluded"]}
    assert sorted(excluded) == [f"OASIS_OAS1_{i:04d}_MR1" for i in (2, 3, 4, 5, 6)]
    assert "cannot be read" in excluded["OASIS_OAS1_0002_MR1"]["reason"]
    assert "4D" in excluded["OASIS_OAS1_0003_MR1"]["reason"]
    assert "empty" in excluded["OASIS_OAS1_0004_MR1"]["reason"]
    assert "NaN" in excluded["OASIS_OAS1_0005_MR1"]["reason"]
    assert "expected (10, 12, 14)" in excluded["OASIS_OAS1_0006_MR1"]["reason"]
    kept = {d["subject"]: k for k in ("training", "validation", "test") for d in datalist[k]}
    assert len(kept) == 5 and not set(kept) & set(excluded)
    assert all(split_of[s] == k for s, k in kept.items())  # bad subjects do not move the others
    assert report["found"] == 10 and sum(report["kept"].values()) == 5
    text = oasis.format_report(report)
    assert text.count("EXCLUDED") == 5 and "OASIS_OAS1_0003_MR1" in text


def test_write_and_load_datalist(root, tmp_path):
    datalist, report = oasis.build_oasis_datalist(root, 0.2, 0.2, seed=0, expected_shape=SHAPE)
    out = tmp_path / "lists" / "oasis.json"
    oasis.write_datalist(datalist, out, report)
    assert sorted(os.listdir(out.parent)) == ["oasis.json", "oasis_report.json"]  # no temporary file left
    assert json.loads((out.parent / "oasis_report.json").read_text())["found"] == 10
    splits = oasis.load_oasis_datalist(out)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    os.remove(splits["test"][0]["image"])
    with pytest.raises(FileNotFoundError, match="points at 1 missing file") as e:
        oasis.load_oasis_datalist(out)
    assert splits["test"][0]["image"] in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        oasis.load_oasis_datalist(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        oasis.load_oasis_datalist(bad)
    bad.write_text(json.dumps({"validation": []}))
    with pytest.raises(ValueError, match="'training' list"):
        oasis.load_oasis_datalist(bad)


def test_relative_datalist_paths(root):
    rel = {"training": [{"image": "OASIS_OAS1_0001_MR1/aligned_norm.nii.gz"}], "validation": [], "test": []}
    path = root / "rel.json"
    path.write_text(json.dumps(rel))
    assert oasis.load_oasis_datalist(path)["train"][0]["image"] == os.path.join(
        str(root), "OASIS_OAS1_0001_MR1/aligned_norm.nii.gz"
    )


def test_oasis_splits_sources_and_caps(root, tmp_path, caplog):
    s = oasis.oasis_splits(dataset_dir=root, val_fraction=0.2, test_fraction=0.2, max_train=2)
    assert [len(s[k]) for k in ("train", "val", "test")] == [2, 2, 2]
    datalist, _ = oasis.build_oasis_datalist(root, 0.2, 0.2, seed=0, expected_shape=None)
    path = tmp_path / "dl.json"
    oasis.write_datalist(datalist, path)
    assert oasis.oasis_splits(datalist=path)["test"] == oasis.oasis_splits(
        dataset_dir=root, val_fraction=0.2, test_fraction=0.2
    )["test"]
    with pytest.raises(ValueError, match="give dataset_dir"):
        oasis.oasis_splits()
    with pytest.raises(ValueError, match="max_val must be None or a non-negative int"):
        oasis.oasis_splits(dataset_dir=root, max_val=-1)


def test_demo_cache_built_once(tmp_path, caplog):
    cache = tmp_path / "cache" / "demo"
    s = oasis.oasis_splits(
        demo_dir=cache, demo_subjects=5, demo_shape=(16, 16, 16), val_fraction=0.2, test_fraction=0.2
    )
    assert "DEMO BRAIN SET" in caplog.text and "MNI152" in caplog.text
    assert [len(s[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    stamp = os.path.getmtime(s["train"][0]["image"])
    oasis.ensure_demo_oasis(cache, n_subjects=5, shape=(16, 16, 16))  # reused, not rebuilt
    assert os.path.getmtime(s["train"][0]["image"]) == stamp
    assert [p for p in os.listdir(cache.parent) if p.startswith(".")] == []  # no temporary folder left
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(ValueError, match="not touching it"):
        oasis.ensure_demo_oasis(other, n_subjects=2, shape=(16, 16, 16))


def test_make_demo_oasis(tmp_path):
    paths = oasis.make_demo_oasis(tmp_path, n_subjects=2, seed=3, shape=(16, 18, 20))
    assert (tmp_path / "subjects.txt").read_text().split() == ["OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"]
    a, b = (np.asarray(nib.load(p).get_fdata()) for p in paths)
    assert a.shape == (16, 18, 20) and 0.0 <= a.min() and a.max() == pytest.approx(1.0)
    assert np.mean(a > 0.05) > 0.2 and not np.allclose(a, b)
    assert nib.aff2axcodes(nib.load(paths[0]).affine) == ("R", "A", "S")
    again = oasis.make_demo_oasis(tmp_path / "again", n_subjects=1, seed=3, shape=(16, 18, 20))
    np.testing.assert_array_equal(np.asarray(nib.load(again[0]).get_fdata()), a)
    with pytest.raises(ValueError, match="shape must be 3 ints >= 8"):
        oasis.make_demo_oasis(tmp_path, shape=(4, 4, 4))
    with pytest.raises(ValueError, match="n_subjects must be a positive int"):
        oasis.make_demo_oasis(tmp_path, n_subjects=0)
