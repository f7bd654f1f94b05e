"""LazyTensorBoardHandler: MONAI's TensorBoardHandler whose default writer appears at the first write."""

from __future__ import annotations

from monai.handlers import TensorBoardHandler

from monai_galr.handlers import GroupActionImageHandler
from monai_galr.handlers.tensorboard import LazyTensorBoardHandler


def test_writer_is_created_at_first_use_and_closed(tmp_path):
    handler = GroupActionImageHandler(log_dir=str(tmp_path / "tb"))
    assert isinstance(handler, (TensorBoardHandler, LazyTensorBoardHandler))
    assert not (tmp_path / "tb").exists()  # nothing written yet: no events file
    handler.writer.add_scalar("x", 1.0, 0)
    handler.close()
    assert any((tmp_path / "tb").glob("events.out.tfevents.*")) and handler._writer is None


def test_given_writer_is_not_closed():
    class Writer:
        closed = False

        def close(self):
            self.closed = True

    w = Writer()
    handler = LazyTensorBoardHandler(summary_writer=w)
    handler.close()
    assert handler.writer is w and not w.closed
