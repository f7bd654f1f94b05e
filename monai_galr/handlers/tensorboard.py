"""The TensorBoard writer handling shared by the package's handlers: MONAI's ``TensorBoardHandler``, made lazy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monai.handlers import TensorBoardHandler

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["LazyTensorBoardHandler"]


class LazyTensorBoardHandler(TensorBoardHandler):
    """``monai.handlers.TensorBoardHandler`` whose default writer is created at the first write, in ``log_dir``.

    MONAI's base class opens its ``SummaryWriter`` in ``__init__``; a bundle config builds its handlers on every
    rank and in runs that never write (a failed check, ``--dryrun``), so here the writer (and its events file) only
    appears once something is written.  A writer that is given is used as it is and never closed here.

    Args:
        summary_writer: a TensorBoard ``SummaryWriter``, or None for one created lazily in ``log_dir``.
        log_dir: directory of the default writer.
    """

    def __init__(self, summary_writer: SummaryWriter | None = None, log_dir: str = "./runs") -> None:
        # not TensorBoardHandler.__init__: it would create the writer now
        self._writer = summary_writer
        self.internal_writer = summary_writer is None
        self.log_dir = log_dir

    @property
    def writer(self) -> Any:
        """The summary writer, created in ``log_dir`` on first use when none was given."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def close(self) -> None:
        """Close the summary writer if this handler created it."""
        if self.internal_writer and self._writer is not None:
            self._writer.close()
            self._writer = None
