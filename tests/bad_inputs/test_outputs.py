"""Outputs that cannot be written, and failures half-way through a write.

Every data_prep script must exit with code 2 and a message naming ``--out`` when its output cannot be written
(a path below a regular file fails for every user, root included; a read-only folder is tried where permissions
apply), and an output written earlier must survive, byte for byte, a later run that fails part-way.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

import monai_galr.data.adrenal_synthetic as adrenal_synthetic
from monai_galr.data import atomic_output, ensure_writable_dir, make_synthetic_adrenal


def _mnist_src(folder) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        folder / "mnist.npz",
        x_train=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        y_train=np.arange(4) % 10,
        x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        y_test=np.arange(2) % 10,
    )


def _adrenal_src(path, counts=(3, 2, 2)):
    rng = np.random.default_rng(sum(counts))
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 8, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def _oasis_root(folder, n: int = 3):
    import nibabel as nib

    for i in range(1, n + 1):
        d = folder / f"OASIS_OAS1_{i:04d}_MR1"
        d.mkdir(parents=True)
        data = np.random.default_rng(i).random((6, 7, 8)).astype(np.float32) + 0.1
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(d / "aligned_norm.nii.gz"))
    return folder


def _snapshot(folder) -> dict:
    """Every file below ``folder`` (relative path -> bytes)."""
    return {
        os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(folder)
        for f in files
    }


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _error_line(stderr: str) -> str:
    """The one ``error: ...`` line of a script's stderr (it must exist)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


# ---- ensure_writable_dir / atomic_output ------------------------------------------------------------------------
def test_ensure_writable_dir_below_a_file(under_a_file):
    with pytest.raises(ValueError) as err:
        ensure_writable_dir(under_a_file, name="ckpt_dir")
    msg = str(err.value)
    assert msg.startswith(f"ckpt_dir {str(under_a_file)!r} is not a writable folder")
    assert f"{str(under_a_file.parent)!r} is a file, not a folder" in msg and "expected a writable folder" in msg


def test_ensure_writable_dir_read_only(read_only_dir):
    with pytest.raises(ValueError, match=r"output_dir '.*read_only/sub' is not a writable folder \(PermissionError"):
        ensure_writable_dir(read_only_dir / "sub", name="output_dir")


def test_ensure_writable_dir_ok(tmp_path):
    assert ensure_writable_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert os.listdir(tmp_path / "a" / "b") == []  # the probe file is gone
    with pytest.raises(TypeError, match="output_dir must be a folder path"):
        ensure_writable_dir(None)


def test_atomic_output_keeps_old_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_output(target, suffix=".json") as tmp:
            with open(tmp, "w") as f:
                f.write("partial")
            raise RuntimeError("failure half-way")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]


# ---- data_prep: an output path that cannot be written -----------------------------------------------------------
def _cli_cases(tmp_path, out):
    src = tmp_path / "src"
    src.mkdir()
    _mnist_src(src)
    adrenal = _adrenal_src(tmp_path / "adrenalmnist3d_8.npz")
    root = _oasis_root(tmp_path / "oasis")
    return {
        "prepare_mnist": ["--src", str(src), "--out", str(out / "mnist.npz")],
        "prepare_adrenal": ["--src", str(adrenal), "--out", str(out)],
        "prepare_oasis": ["--root", str(root), "--out", str(out / "dl.json"), "--any_shape"],
        "make_synthetic_adrenal": ["--out", str(out), "--size", "8", "--n_train", "1", "--n_val", "1", "--n_test", "1"],
        "prepare_demo_brain": ["--out", str(out), "--n_subjects", "1", "--shape", "8", "8", "8"],
    }


SCRIPTS = ["prepare_mnist", "prepare_adrenal", "prepare_oasis", "make_synthetic_adrenal", "prepare_demo_brain"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_cli_out_below_a_file(tmp_path, under_a_file, script, scripts, capsys, monkeypatch):
    # nothing may be computed before the output is found unwritable: drawing a volume fails the test
    monkeypatch.setattr(adrenal_synthetic, "synthetic_adrenal_volume", lambda *a, **k: pytest.fail("drew a volume"))
    argv = _cli_cases(tmp_path, under_a_file)[script]
    assert getattr(scripts, script).main(argv) == 2
    err = _error_line(capsys.readouterr().err)  # prepare_adrenal warns about split sizes first
    assert str(under_a_file.parent) in err, err
    assert "--out" in err and ("Not a directory" in err or "File exists" in err or "is a file" in err), err
    assert "expected a writable" in err, err


@pytest.mark.parametrize("script", SCRIPTS)
def test_cli_out_read_only(tmp_path, read_only_dir, script, scripts, capsys):
    argv = _cli_cases(tmp_path, read_only_dir / "out")[script]
    assert getattr(scripts, script).main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert "--out" in err and str(read_only_dir) in err, err
    assert "Permission denied" in err or "PermissionError" in err, err


def test_prepare_oasis_out_is_a_folder(tmp_path, scripts, capsys):
    root = _oasis_root(tmp_path / "oasis")
    assert scripts.prepare_oasis.main(["--root", str(root), "--out", str(tmp_path), "--any_shape"]) == 2
    assert f"--out {str(tmp_path)!r} is a folder; expected the path of the datalist JSON" in capsys.readouterr().err
    assert not (tmp_path.parent / f"{tmp_path.name}_report.json").exists()


# ---- an earlier output survives a later failure -------------------------------------------------------------------
def test_prepare_mnist_keeps_old_npz(tmp_path, scripts, monkeypatch, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _mnist_src(src)
    out = tmp_path / "out" / "mnist.npz"
    assert scripts.prepare_mnist.main(["--src", str(src), "--out", str(out)]) == 0
    before = out.read_bytes()
    monkeypatch.setattr(scripts.prepare_mnist.np, "savez_compressed", _disk_full)
    assert scripts.prepare_mnist.main(["--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r}: cannot write the npz (OSError: [Errno {errno.ENOSPC}] No space left" in err
    assert "an existing file there is left unchanged" in err
    assert out.read_bytes() == before and os.listdir(out.parent) == ["mnist.npz"]


def test_prepare_adrenal_keeps_old_output_when_a_volume_fails(tmp_path, scripts, monkeypatch, capsys):
    import nibabel as nib

    out = tmp_path / "out"
    assert scripts.prepare_adrenal.main(["--src", str(_adrenal_src(tmp_path / "a.npz")), "--out", str(out)]) == 0
    before = _snapshot(out)
    real_save, calls = nib.save, []

    def flaky_save(img, path):  # the 5th volume of the new run hits a full disk
        calls.append(path)
        if len(calls) == 5:
            _disk_full()
        real_save(img, path)

    monkeypatch.setattr(nib, "save", flaky_save)
    new_src = _adrenal_src(tmp_path / "b.npz", counts=(4, 1, 1))
    assert scripts.prepare_adrenal.main(["--src", str(new_src), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _snapshot(out) == before  # datalist and volumes untouched, no temporary folder left


def test_prepare_adrenal_rolls_back_when_the_datalist_fails(tmp_path, scripts, monkeypatch, capsys):
    out = tmp_path / "out"
    assert scripts.prepare_adrenal.main(["--src", str(_adrenal_src(tmp_path / "a.npz")), "--out", str(out)]) == 0
    before = _snapshot(out)
    monkeypatch.setattr(scripts.prepare_adrenal, "write_json_atomic", _disk_full)
    new_src = _adrenal_src(tmp_path / "b.npz", counts=(4, 1, 1))  # new split folders go in, then the JSON fails
    assert scripts.prepare_adrenal.main(["--src", str(new_src), "--out", str(out)]) == 2
    assert "previous datalist.json and split folders there are left unchanged" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert len(json.loads((out / "datalist.json").read_text())["training"]) == 3


def test_prepare_oasis_keeps_old_datalist_when_nothing_is_usable(tmp_path, scripts, capsys):
    root = _oasis_root(tmp_path / "oasis")
    out = tmp_path / "dl.json"
    assert scripts.prepare_oasis.main(["--root", str(root), "--out", str(out), "--any_shape"]) == 0
    before = _snapshot(tmp_path)
    for p in root.rglob("aligned_norm.nii.gz"):
        p.write_bytes(b"")  # every subject now unusable
    assert scripts.prepare_oasis.main(["--root", str(root), "--out", str(out), "--any_shape"]) == 2
    assert "no usable training subject" in capsys.readouterr().err
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k.startswith("dl")} == {
        k: v for k, v in before.items() if k.startswith("dl")
    }


def test_make_synthetic_adrenal_keeps_old_npz(tmp_path, monkeypatch):
    path = make_synthetic_adrenal(tmp_path / "adrenalmnist3d_8.npz", 1, 1, 1, size=8, seed=0)
    before = open(path, "rb").read()
    real, calls = adrenal_synthetic.synthetic_adrenal_volume, []

    def interrupted(*args, **kwargs):  # the run is interrupted at the second volume
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(adrenal_synthetic, "synthetic_adrenal_volume", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_adrenal(path, 2, 1, 1, size=8, seed=1)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["adrenalmnist3d_8.npz"]
