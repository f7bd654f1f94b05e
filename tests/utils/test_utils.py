"""monai_galr.utils: unwrap, atomic writes (.pt temporaries), argument checks, compositing and mid-slices."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from monai_galr.utils import (
    atomic_output,
    check_fraction,
    check_items,
    check_max,
    check_positive_int,
    check_seed,
    check_shape,
    check_spatial_dims,
    composite,
    mid_slices,
    save_torch_atomic,
    unwrap,
    write_json_atomic,
)


def test_unwrap_nested_wrappers():
    net = torch.nn.Linear(2, 2)
    assert unwrap(torch.nn.DataParallel(torch.nn.DataParallel(net))) is net
    assert unwrap(net) is net


def test_save_torch_atomic_uses_a_pt_temporary_and_cleans_up(tmp_path, monkeypatch):
    seen = []
    real_save = torch.save

    def spy(obj, f, *args, **kwargs):
        seen.append(os.path.basename(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    save_torch_atomic({"w": torch.ones(2)}, tmp_path / "model.pt")
    assert seen[0].startswith(".partial-model.pt-") and seen[0].endswith(".pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True)["w"].sum() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert oct(os.stat(tmp_path / "model.pt").st_mode & 0o044) == oct(0o044)  # not mkstemp's private 0600


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic({"a": 1}, path)
    with pytest.raises(RuntimeError, match="boom"), atomic_output(path, suffix=".json") as tmp:
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("boom")
    assert path.read_text().strip().startswith("{") and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: check_spatial_dims(1), ValueError, "spatial_dims must be 2 or 3, got 1"),
        (lambda: check_spatial_dims(True), ValueError, "spatial_dims must be 2 or 3"),
        (lambda: check_fraction("a", "val_fraction"), TypeError, "val_fraction must be a float"),
        (lambda: check_fraction(1.0, "val_fraction"), ValueError, r"val_fraction must be in \[0, 1\)"),
        (lambda: check_max(-1, "max_val"), ValueError, "max_val must be None or a non-negative int"),
        (lambda: check_max(True, "max_val"), ValueError, "max_val"),
        (lambda: check_positive_int(0, "num_cases"), ValueError, "num_cases must be a positive int"),
        (lambda: check_seed(-2), ValueError, "seed must be a non-negative int"),
        (lambda: check_shape((1, 2), 3, "expected_shape"), ValueError, "expected_shape must be None or 3 positive"),
        (lambda: check_items({"image": 1}, "items"), TypeError, "items must be a list of data dicts"),
        (lambda: check_items([{}], "items", require=("image",)), ValueError, "items item 0 has no 'image'"),
    ],
)
def test_checks_name_the_parameter(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_checks_pass_values_through():
    assert check_spatial_dims(np.int64(3)) == 3 and check_max(None, "m") is None and check_max(4, "m") == 4
    assert check_shape(None, 3, "s") is None and check_shape([2, 3], 2, "s") == (2, 3)
    assert check_fraction(0, "f") == 0.0 and check_seed(np.int32(5)) == 5


def test_composite_and_mid_slices():
    fg, bg, m = torch.zeros(1, 1, 2, 2), np.ones((1, 1, 2, 2), np.float32), np.eye(2, dtype=np.float32)[None, None]
    out = composite(fg, bg, m)
    assert isinstance(out, torch.Tensor) and torch.equal(out[0, 0], torch.eye(2))
    vol = np.arange(24.0).reshape(2, 3, 4)
    assert [name for name, _ in mid_slices(vol)] == ["H=1 (W x D)", "W=1 (H x D)", "D=2 (H x W)"]
    assert mid_slices(vol[0])[0][0] == ""
