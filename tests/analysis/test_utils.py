"""Shared plumbing: atomic figure / text files, mid-slices, network checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_galr.analysis.utils import (
    check_items,
    image_grid_figure,
    json_safe,
    mid_slices,
    prepare_network,
    save_figure_atomic,
    write_text_atomic,
)


def test_save_figure_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    fig = image_grid_figure([[np.zeros((4, 4))]], ["a"], ["row"], "title")
    save_figure_atomic(fig, str(tmp_path / "ok.png"))
    assert (tmp_path / "ok.png").read_bytes()[:4] == b"\x89PNG"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure_atomic(fig, str(tmp_path / "bad.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]
    write_text_atomic("hello\n", str(tmp_path / "sub" / "t.md"))
    assert (tmp_path / "sub" / "t.md").read_text() == "hello\n"


def test_mid_slices_and_grid_3d():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    names, tiles = zip(*mid_slices(vol))
    assert [t.shape for t in tiles] == [(3, 4), (2, 4), (2, 3)] and names == ("H=1", "W=1", "D=2")
    fig = image_grid_figure([[vol, vol]], ["a", "b"], ["case"], "t", colorbar_cols=(1,))
    assert len([ax for ax in fig.axes if ax.get_title() == "a"]) == 1
    assert len(fig.axes) == 3 * 2 + 3  # three mid-slice rows, two columns, three colour bars
    with pytest.raises(ValueError, match="2D"):
        mid_slices(np.zeros((2, 2, 2, 2)))


def test_check_items_and_json_safe():
    with pytest.raises(TypeError, match="my_items"):
        check_items({"image": 1}, "my_items")
    with pytest.raises(ValueError, match="my_items item 1 has no 'label'"):
        check_items([{"image": 1, "label": 0}, {"image": 2}], "my_items", require=("image", "label"))
    assert json_safe({"a": [float("nan"), np.float32(1.5)], "b": float("inf")}) == {"a": [None, 1.5], "b": None}


def test_prepare_network_rejects_other_modules():
    with pytest.raises(TypeError, match="GroupActionAutoEncoder"):
        prepare_network(torch.nn.Linear(2, 2))
