"""Shared plumbing: atomic figure / text files, mid-slices, network checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_galr.analysis.utils import (
    CollectOutputs,
    check_items,
    image_grid_figure,
    json_safe,
    mid_slices,
    prepare_network,
    run_study,
    save_figure_atomic,
    write_outputs_atomic,
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
    assert [t.shape for t in tiles] == [(3, 4), (2, 4), (2, 3)]
    assert names == ("H=1 (W x D)", "W=1 (H x D)", "D=2 (H x W)")
    np.testing.assert_array_equal(tiles[1], vol[:, 1])
    fig = image_grid_figure([[vol, vol]], ["a", "b"], ["case"], "t", colorbar_cols=(1,))
    assert len([ax for ax in fig.axes if ax.get_title() == "a"]) == 1
    assert len(fig.axes) == 3 * 2 + 3  # three mid-slice rows, two columns, three colour bars
    assert [ax.get_ylabel() for ax in fig.axes[:6:2]] == ["case\nslice H=1 (W x D)", "case\nslice W=1 (H x D)",
                                                        "case\nslice D=2 (H x W)"]
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
    with pytest.raises(TypeError, match="GroupActionAutoEncoder"):
        run_study(torch.nn.Linear(2, 2), [{"image": np.zeros((1, 4, 4))}], None, [], batch_size=1)


def test_run_study_collects_engine_outputs_in_order(make_net, blob_items):
    items = blob_items(5)
    collector = CollectOutputs(lambda engine: engine.state.output["pred"].shape[0])
    engine = run_study(make_net(), items, None, [collector], batch_size=2, outputs=("pred",))
    assert collector.results == [2, 2, 1] and engine.state.iteration == 3
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        run_study(make_net(), items, None, [], batch_size=0)


def test_write_outputs_atomic_all_or_nothing(tmp_path, monkeypatch):
    fig = image_grid_figure([[np.zeros((4, 4))]], ["a"], ["row"], "title")
    out = tmp_path / "eval"
    paths = write_outputs_atomic(str(out), {"f.png": fig, "t.md": "| a |\n", "r.json": {"x": float("nan"), "y": [1]}})
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["f.png", "t.md", "r.json"]
    assert (out / "f.png").read_bytes()[:4] == b"\x89PNG" and (out / "t.md").read_text() == "| a |\n"
    assert json.loads((out / "r.json").read_text()) == {"x": None, "y": [1]}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    # a failure while rendering: the earlier results stay as they were, no new file, no temporary file
    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs_atomic(str(out), {"r.json": {"x": 2}, "f.png": fig})
    assert sorted(p.name for p in out.iterdir()) == ["f.png", "r.json", "t.md"]
    assert json.loads((out / "r.json").read_text())["y"] == [1]
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs_atomic(str(tmp_path / "new"), {"f.png": fig})
    assert not (tmp_path / "new").exists()
    with pytest.raises(TypeError, match="'n.bin' must be a Figure"):
        write_outputs_atomic(str(out), {"ok.md": "x", "n.bin": 3})
    assert not (out / "ok.md").exists()
