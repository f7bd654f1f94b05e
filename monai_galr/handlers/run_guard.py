"""Checkpoint writing that fails clearly, stops every process together, and keeps ``n_saved`` across resumes.

- :class:`SafeDiskSaver`: ignite's atomic ``DiskSaver`` whose temporary file is ``.partial-<name>-XXXX`` beside the
  target (recognised and removed at the next start by :func:`monai_galr.bundle_checks.check_training_start`), and
  whose write error (a full disk, a lost mount, ...) becomes one message naming the file and ``ckpt_dir``;
- :class:`RunGuard`: attached last at the trainer's ``EPOCH_COMPLETED``; under ``torch.distributed`` it shares a
  failed save of rank 0 with every rank, so all of them stop at the same point with the message (instead of the
  others waiting in the next collective until the process group times out);
- :class:`KeepNSaved`: at the start of a resumed run, hands the ``checkpoint_epoch=N.pt`` files already in
  ``ckpt_dir`` (up to the resumed epoch) to the periodic saver, so that it keeps ``n_saved`` files across resumes;
- :func:`any_rank` / :func:`gather_messages`: the two collectives these and ``TerminateOnNan`` use (no-ops in a
  single process).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from monai_galr.utils import atomic_output

__all__ = ["KeepNSaved", "RunGuard", "SafeDiskSaver", "any_rank", "distributed", "gather_messages"]

logger = logging.getLogger("monai_galr.handlers")

#: failed saves of this process not yet reported (distributed runs report them at the end of the epoch, together)
_PENDING: list[str] = []


def distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group of more than one process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and (
        torch.distributed.get_world_size() > 1)


def _flag_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """``flag`` of any process (an ``all_reduce`` MAX of one number); ``flag`` itself in a single process."""
    if not distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_flag_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def gather_messages(message: str | None) -> list[tuple[int, str]]:
    """``[(rank, message), ...]`` of every process that has one (``all_gather_object``); every rank must call it."""
    if not distributed():
        return [(0, message)] if message else []
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, message)
    return [(r, m) for r, m in enumerate(out) if m]


def _raise(message: str) -> None:
    from monai_galr.bundle_checks import BundleError

    raise BundleError(message)


class SafeDiskSaver(DiskSaver):
    """ignite's ``DiskSaver`` (always atomic) with a recognisable temporary file and one clear error on failure.

    The checkpoint is written to ``<dirname>/.partial-<filename>-XXXX`` and renamed onto ``<dirname>/<filename>``; on
    an error the temporary file is removed and the existing checkpoints are untouched.  A write error raises
    :class:`monai_galr.bundle_checks.BundleError` naming the file and ``dirname`` (``ckpt_dir``); under
    ``torch.distributed`` it is recorded instead and raised on every rank by :class:`RunGuard` at the end of the epoch.
    ``remove`` of a file that is already gone logs a warning instead of failing.

    Args:
        dirname: the folder (``ckpt_dir``).
        name: the config entry holding ``dirname`` (used in the message).
        kwargs: passed to ``DiskSaver`` (``create_dir``, ``require_empty``, ``save_on_rank``, ...).
    """

    def __init__(self, dirname: str | Path, name: str = "ckpt_dir", **kwargs: Any) -> None:
        kwargs.setdefault("require_empty", False)
        kwargs["atomic"] = True
        super().__init__(dirname, **kwargs)
        self.name = name

    def _save_func(self, checkpoint: Any, path: Path, func: Callable) -> None:
        try:
            # the temporary keeps the target's extension (.pt): readers that look at the name see a checkpoint
            with atomic_output(path, prefix=f".partial-{path.name}-", suffix=path.suffix) as tmp, open(tmp, "wb") as f:
                func(checkpoint, f, **self.kwargs)
        except BaseException as e:
            if not isinstance(e, Exception):
                raise
            message = (
                f"cannot write checkpoint {str(path)!r} in {self.name} {str(self.dirname)!r}: {type(e).__name__}: "
                f"{' '.join(str(e).split())}. The files already in {self.name} are intact; free space (or fix the "
                f"folder), or choose another --{self.name}, then continue with --resume_from <the newest "
                "checkpoint_epoch=N.pt>."
            )
            logger.error(message)
            if distributed():
                _PENDING.append(message)
                return
            _raise(message)

    def remove(self, filename: str) -> None:
        try:
            super().remove(filename)
        except FileNotFoundError:
            logger.warning("checkpoint %s was already gone from %s.", filename, self.dirname)


class RunGuard:
    """At the end of each epoch (attach it last), stop every process when a save failed on any of them.

    In a single process :class:`SafeDiskSaver` raises at once and this does nothing; under ``torch.distributed`` one
    ``all_reduce`` per epoch tells every rank, and each raises :class:`~monai_galr.bundle_checks.BundleError` with the
    message of the rank that failed.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        mine = _PENDING[0] if _PENDING else None
        _PENDING.clear()
        if not any_rank(mine is not None):
            return
        messages = gather_messages(mine)
        rank, message = messages[0] if messages else (0, "a checkpoint save failed")
        where = f" (rank {rank})" if distributed() else ""
        _raise(f"training stopped at epoch {engine.state.epoch}: {message}{where}")


class KeepNSaved:
    """Give a resumed run's periodic saver the ``checkpoint_epoch=N.pt`` files it wrote before the interruption.

    A ``Checkpoint`` knows only the files it saved itself, so after a resume it would keep ``n_saved`` *new* files and
    never delete the older ones.  At ``STARTED`` (attach it after the resume loader) the files of ``saver``'s folder
    whose epoch is at most the resumed epoch become its saved list; a fresh run (epoch 0) is left alone.

    Args:
        saver: the periodic ``Checkpoint`` (``None`` on ranks that do not save: nothing to do).
        pattern: regular expression of the file names, with the epoch as group 1.
    """

    def __init__(self, saver: Checkpoint | None, pattern: str = r"checkpoint_epoch=(\d+)\.pt") -> None:
        self.saver = saver
        self.pattern = re.compile(pattern)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.saver is None or engine.state.epoch == 0 or not isinstance(self.saver.save_handler, DiskSaver):
            return
        folder = self.saver.save_handler.dirname
        found = sorted(
            (int(m.group(1)), f) for f in os.listdir(folder) for m in [self.pattern.fullmatch(f)]
            if m and int(m.group(1)) <= engine.state.epoch
        )
        n = self.saver.n_saved
        while n is not None and len(found) > n:  # the oldest beyond n_saved: what the uninterrupted run deleted
            _, name = found.pop(0)
            self.saver.save_handler.remove(name)
            logger.info("removed %s from %s (checkpoint_n_saved=%d).", name, folder, n)
        self.saver.load_state_dict({"_saved": found})
