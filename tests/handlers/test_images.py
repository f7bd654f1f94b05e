"""GroupActionImageHandler: panels of input / target / prediction / error written to TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from monai_galr.handlers import GroupActionImageHandler, action_panel


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _output(batch: int, shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, *shape, generator=g)
    label = torch.rand(batch, 1, *shape, generator=g)
    return {"image": image, "label": label, "pred": label * 0.9, "loss": torch.tensor(0.1)}


def _engine(output) -> Engine:
    return Engine(lambda engine, batch: output)


def _decode(event) -> np.ndarray:
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
    if pixels.ndim == 3:  # TensorBoard stores a one-channel image as grey RGB
        assert (pixels == pixels[..., :1]).all()
        pixels = pixels[..., 0]
    return pixels


class TestPanel:
    def test_2d_layout_and_values(self):
        x = torch.rand(1, 6, 5, generator=torch.Generator().manual_seed(0))
        y = torch.rand(1, 6, 5, generator=torch.Generator().manual_seed(1))
        p = y.clone()
        p[0, 0, 0] = y[0, 0, 0] + 0.5
        panel = action_panel(x, y, p)
        assert panel.shape == (1, 4 * 6 + 3, 5) and panel.dtype == np.float32
        np.testing.assert_allclose(panel[0, 0:6], x[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(panel[0, 7:13], y[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(panel[0, 14:20], p[0].clamp(0, 1).numpy(), atol=1e-6)
        err = panel[0, 21:27]
        np.testing.assert_allclose(err, (y[0] - p[0].clamp(0, 1)).abs().numpy(), atol=1e-6)
        assert panel[0, 6].tolist() == [1.0] * 5  # separator rows

    def test_clipped_to_unit_range(self):
        x = torch.linspace(-2, 3, 16).reshape(1, 4, 4)
        panel = action_panel(x, -x, 2 * x)
        assert panel.min() >= 0.0 and panel.max() <= 1.0

    def test_3d_mid_slices(self):
        shape = (8, 10, 12)
        vol = torch.zeros(1, *shape)
        vol[0, 4, :, :] = 1.0  # the mid-slice across H
        panel = action_panel(vol, vol, torch.zeros_like(vol))
        th, tw = 10, 12  # largest slice: (W, D) = (10, 12)
        assert panel.shape == (1, 4 * th + 3, 3 * tw + 2)
        # input row, first column: slice H = 4 is all ones
        np.testing.assert_array_equal(panel[0, :10, :12], np.ones((10, 12)))
        # second column is the slice W = 5, (H, D) = (8, 12): only row H = 4 is on; zero padding below
        np.testing.assert_array_equal(panel[0, 4, 13:25], np.ones(12))
        assert panel[0, [0, 1, 2, 3, 5, 6, 7, 8, 9], 13:25].sum() == 0
        # error row equals |target - prediction| = the target
        np.testing.assert_array_equal(panel[0, 33:43, :12], np.ones((10, 12)))

    def test_shape_errors(self):
        with pytest.raises(ValueError, match="same shape"):
            action_panel(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
        with pytest.raises(ValueError, match=r"\(C, H, W\) or \(C, H, W, D\)"):
            action_panel(torch.zeros(4, 4), torch.zeros(4, 4), torch.zeros(4, 4))


def test_2d_images_written_every_interval(tmp_path):
    engine = _engine(_output(6, (16, 16)))
    handler = GroupActionImageHandler(log_dir=str(tmp_path), interval=2, max_images=4)
    handler.attach(engine)
    assert not any(tmp_path.iterdir())  # the writer is created lazily
    engine.run(range(2), max_epochs=4)
    handler.close()
    acc = _events(tmp_path)
    assert sorted(acc.Tags()["images"]) == [f"group_action/{i}" for i in range(4)]
    events = acc.Images("group_action/0")
    assert [e.step for e in events] == [2, 4]
    assert (events[0].height, events[0].width) == (4 * 16 + 3, 16)
    pixels = _decode(events[-1])
    expect = action_panel(*(engine.state.output[k][0] for k in ("image", "label", "pred")))[0]
    np.testing.assert_allclose(pixels / 255.0, expect, atol=1 / 255 + 1e-6)


def test_3d_volumes_iteration_level_and_custom_tag(tmp_path):
    engine = _engine(_output(2, (8, 10, 12)))
    handler = GroupActionImageHandler(log_dir=str(tmp_path), epoch_level=False, interval=3, tag="val")
    handler.attach(engine)
    engine.run(range(3), max_epochs=2)
    handler.close()
    acc = _events(tmp_path)
    assert sorted(acc.Tags()["images"]) == ["val/0", "val/1"]
    events = acc.Images("val/1")
    assert [e.step for e in events] == [3, 6]
    assert (events[0].height, events[0].width) == (4 * 10 + 3, 3 * 12 + 2)


def test_evaluator_keys_list_output_and_given_writer(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    out = _output(3, (12, 12))
    out["pred_identity"] = out["image"]
    decollated = [{k: v[i] for k, v in out.items() if k != "loss"} for i in range(3)]
    writer = SummaryWriter(log_dir=str(tmp_path))
    handler = GroupActionImageHandler(
        summary_writer=writer,
        output_keys=("image", "image", "pred_identity"),
        tag="identity",
        global_iter_transform=lambda step: step + 100,
    )
    engine = _engine(decollated)
    handler.attach(engine)
    engine.run(range(1), max_epochs=1)
    handler.close()  # a given writer stays open
    writer.add_scalar("still/open", 1.0, 0)
    writer.close()
    acc = _events(tmp_path)
    assert sorted(acc.Tags()["images"]) == ["identity/0", "identity/1", "identity/2"]
    assert "still/open" in acc.Tags()["scalars"]
    event = acc.Images("identity/2")[0]
    assert event.step == 101
    err_row = _decode(event)[3 * 13 :, :]  # identity reconstruction: zero error
    assert err_row.max() == 0


def test_missing_key(tmp_path):
    engine = _engine({"image": torch.zeros(1, 1, 4, 4), "label": torch.zeros(1, 1, 4, 4)})
    GroupActionImageHandler(log_dir=str(tmp_path)).attach(engine)
    with pytest.raises(ValueError, match=r"lacks the keys \['pred'\].*has \['image', 'label'\]"):
        engine.run(range(1), max_epochs=1)


def test_unbatched_output(tmp_path):
    engine = _engine({k: torch.zeros(1, 4, 4) for k in ("image", "label", "pred")})
    GroupActionImageHandler(log_dir=str(tmp_path)).attach(engine)
    with pytest.raises(ValueError, match=r"must be batch-first \(B, C, H, W\[, D\]\), got shape \(1, 4, 4\)"):
        engine.run(range(1), max_epochs=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"interval": 0}, ValueError, "interval must be a positive int, got 0"),
        ({"interval": 1.5}, ValueError, "interval must be a positive int"),
        ({"max_images": -1}, ValueError, "max_images must be a positive int, got -1"),
        ({"tag": 3}, TypeError, "tag must be a str, got int"),
        ({"output_keys": ("image", "pred")}, ValueError, "output_keys must be three keys"),
        ({"output_keys": "pred"}, ValueError, "output_keys must be three keys"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        GroupActionImageHandler(**kwargs)
