"""What a bundle checks before it spends time, and how it reports a problem: in the last line of the output.

MONAI's config parser wraps every error of an expression or a component in ``RuntimeError("Failed to evaluate
...")`` / ``("Failed to instantiate ...")``, and ignite and MONAI's ``StatsHandler`` log a handler's error before it
propagates, so a clear ``ValueError`` ends up 20-200 lines above the end of the output.  This module gives the
bundles two ways out:

- :class:`BundleError`, a ``SystemExit`` carrying the message: it is a ``BaseException``, so MONAI's ``except
  Exception`` wrappers let it through unwrapped, and Python prints the message alone, last, with exit status 1.
  It is raised by the checks below, which run in a bundle's ``initialize`` / first runner step, before any data
  is read;
- :func:`install_error_report` (first item of every bundle's ``initialize``): for any other uncaught error, print
  the traceback of the real error only (not MONAI's wrappers around it) and end the output with one line
  ``ERROR: <type>: <message>``; MONAI's ``StatsHandler`` then logs an engine's error without its traceback (it is
  printed once, at the end).  Called with ``overlay=`` / ``base=`` (an overlay config such as ``inference.yaml``), a
  reference that the overlay leaves to its base config and that is missing (the overlay run alone) ends the output
  with the fix instead: the ``--config_file`` list with the base first (:func:`overlay_fix`).

The checks:

- :func:`check_entries` validates the hyperparameters of a config against :data:`HYPERPARAMETERS` (one table:
  entry name -> what it must be), naming the entry, the expected range and what arrived;
- :func:`check_training_start` runs first in every ``training`` runner: the resume checkpoint is a resumable one and
  can continue in ``ckpt_dir``; a fresh run never replaces an existing ``model.pt`` (the shipped pretrained weights)
  unless ``overwrite`` is set; leftovers of an interrupted save are removed;
- :func:`check_run_completed` runs after ``trainer.run()``: a run that stopped early (NaN guard, ...) exits
  non-zero with the reason.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "HYPERPARAMETERS",
    "BundleError",
    "check_entries",
    "check_run_completed",
    "check_training_start",
    "install_error_report",
    "leftover_temporary_files",
    "overlay_fix",
    "root_error",
    "validate_entries",
]

logger = logging.getLogger("monai_galr.bundle")


class BundleError(SystemExit):
    """A problem with a bundle's settings, inputs or run, reported as the last line of the output (exit status 1).

    A ``SystemExit`` subclass, so ``except Exception`` wrappers (MONAI's config parser, ignite's engine) let it
    through and Python prints ``message`` alone at exit.  Catch it as ``BundleError`` (or ``SystemExit``) in code
    that calls a bundle in-process.
    """

    def __init__(self, message: str) -> None:
        # Python prints ``code`` at exit; the leading newline ends a progress bar's unfinished line first
        super().__init__(f"\nERROR: {message}")
        self.message = message

    def __str__(self) -> str:
        return f"ERROR: {self.message}"


# ---- one table of hyperparameters ----------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)


def _int(low: int, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    ok = lambda v: (optional and v is None) or (_is_int(v) and v >= low)  # noqa: E731
    return ok, ("null or " if optional else "") + f"an integer >= {low}"


def _real(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False):
    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = True if high is None else (v < high if high_open else v <= high)
        return above and below

    if high is None:
        what = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return ok, what


def _path(optional: bool = True):
    ok = lambda v: (optional and v is None) or (isinstance(v, (str, os.PathLike)) and len(os.fspath(v)) > 0)  # noqa: E731
    return ok, ("null or " if optional else "") + "a file path (a non-empty string)"


def _sizes():
    ok = lambda v: isinstance(v, (list, tuple)) and len(v) in (2, 3) and all(_is_int(s) and s >= 1 for s in v)  # noqa: E731
    return ok, "a list of 2 or 3 integers >= 1"


def _bool():
    return (lambda v: isinstance(v, (bool, np.bool_))), "True or False (a bool; on the command line True, not true)"


def _choice(*options: str):
    return (lambda v: v in options), "one of " + ", ".join(repr(o) for o in options)


#: entry name -> (test, what it must be).  Every bundle's ``initialize`` calls :func:`check_entries` with the entries
#: of this table that its config has; add an entry here when a config gains a hyperparameter.
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    # optimisation and schedule
    "max_epochs": _int(1),
    "val_interval": _int(1),
    "learning_rate": _real(0.0, low_open=True),
    "mask_learning_rate": _real(0.0),
    "log_interval": _int(1),
    "checkpoint_interval": _int(1),
    "checkpoint_n_saved": _int(1),
    "amp": _bool(),
    # loss and latent split
    "lambda_r": _real(0.0),
    "lambda_i": _real(0.0),
    "lambda_v": _real(0.0),
    "tau": _real(0.0, 1.0, low_open=True, high_open=True),
    "varying_fraction": _real(0.0, 1.0),
    # data
    "batch_size": _int(1),
    "val_batch_size": _int(1),
    "eval_batch_size": _int(1),
    "num_workers": _int(0),
    "cache_num_workers": _int(0),
    "num_threads": _int(1),
    "val_fraction": _real(0.0, 1.0, high_open=True),
    "test_fraction": _real(0.0, 1.0, high_open=True),
    "max_train": _int(1, optional=True),
    "max_val": _int(0, optional=True),
    "max_test": _int(0, optional=True),
    "eval_repeats": _int(1),
    "num_images": _int(1),
    "spatial_size": _sizes(),
    "seed": _int(0),
    "split_seed": _int(0),
    "eval_seed": _int(0),
    "train_angles": _choice("uniform", "c4"),
    "eval_angles": _choice("uniform", "c4"),
    "check_values": _bool(),
    # files
    "resume_from": _path(),
    "init_from": _path(),
    "overwrite": _bool(),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return (text if len(text) <= 80 else text[:77] + "...") + f" ({type(value).__name__})"


def validate_entries(**entries: Any) -> list[str]:
    """The problems of ``entries`` (config entry name -> value) against :data:`HYPERPARAMETERS`, one sentence each.

    Also checks that ``val_fraction + test_fraction < 1`` when both are given.

    Raises:
        TypeError: a name that :data:`HYPERPARAMETERS` does not know (a mistake in the config, not in a value).
    """
    unknown = sorted(set(entries) - set(HYPERPARAMETERS))
    if unknown:
        raise TypeError(f"check_entries: unknown entries {unknown}; known: {sorted(HYPERPARAMETERS)}.")
    problems = []
    for name, value in entries.items():
        ok, what = HYPERPARAMETERS[name]
        if not ok(value):
            problems.append(f"config entry '{name}' (--{name}): expected {what}, got {_shown(value)}.")
    v, t = entries.get("val_fraction"), entries.get("test_fraction")
    if _is_number(v) and _is_number(t) and not problems and v + t >= 1.0:
        problems.append(
            f"config entries 'val_fraction' + 'test_fraction': expected a sum < 1 (something left to train on), "
            f"got {v} + {t}."
        )
    return problems


def check_entries(**entries: Any) -> bool:
    """Validate a bundle's hyperparameters before anything is built; raise :class:`BundleError` listing every problem.

    Example (a bundle's ``initialize``)::

        - "$monai_galr.bundle_checks.check_entries(max_epochs=@max_epochs, val_interval=@val_interval)"

    Returns:
        True (so the config item has a value).

    Raises:
        BundleError: one line per bad entry (its name, the expected range, the value received); the last line of
            the output names the last bad entry.
    """
    problems = validate_entries(**entries)
    if problems:
        raise BundleError(problems[0] if len(problems) == 1 else "\n".join(
            [f"{len(problems)} config entries are invalid:"] + [f"  {p}" for p in problems]))
    return True


# ---- the error report --------------------------------------------------------------------------------------------
_WRAPPERS = ("Failed to evaluate", "Failed to instantiate", "applying transform")
_COMPONENT = re.compile(r"Failed to instantiate component '([^']+)'")


def _chain(err: BaseException) -> list[BaseException]:
    out, seen = [err], {id(err)}
    while True:
        e = out[-1]
        nxt = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
        if nxt is None or id(nxt) in seen:
            return out
        seen.add(id(nxt))
        out.append(nxt)


def _is_wrapper(err: BaseException) -> bool:
    return type(err) is RuntimeError and str(err).startswith(_WRAPPERS)


def root_error(err: BaseException) -> tuple[BaseException, list[str]]:
    """The error that matters in ``err``'s chain, and the components being built around it.

    Walks ``err``, its ``__cause__`` (or ``__context__``), ... and skips MONAI's wrappers (``RuntimeError`` "Failed to
    evaluate / instantiate ..." and "applying transform ..."); the first other error is returned (a clear error
    raised ``from`` a library's error is kept, not the library's).

    Returns:
        ``(error, components)``: ``components`` are the class paths MONAI was instantiating, outermost first.
    """
    chain = _chain(err)
    components = [m.group(1) for e in chain if _is_wrapper(e) for m in [_COMPONENT.match(str(e))] if m]
    for e in chain:
        if not _is_wrapper(e):
            return e, components
    return chain[-1], components


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or "(no message)"
    return f"{type(err).__name__}: {text}"


class _NoEngineTraceback(logging.Filter):
    """Drop the traceback from MONAI's ``StatsHandler`` "Exception: ..." records: the report prints it once, last."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Exception:"):
            record.exc_info, record.exc_text = None, None
        return True


#: MONAI's error for a reference that no config file defines
_MISSING_REFERENCE = re.compile(r"the referring item `@([^`]+)` is not defined in the config content")
#: the overlay config of the running bundle and its base (set by install_error_report)
_OVERLAY: dict[str, str] = {}


def _config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config_file`` value(s) of a ``python -m monai.bundle ...`` command line (empty without one)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--config_file" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--config_file=") else None)
        if value is not None:
            value = value.strip()
            if value.startswith("["):
                return [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            return [value]
    return []


def overlay_fix(missing: str, overlay: str, base: str, argv: Sequence[str] | None = None) -> str:
    """The message for the overlay config ``overlay`` run without its ``base``: what is missing, and the fix.

    Args:
        missing: the id that ``overlay`` takes from ``base`` (MONAI's missing reference, without ``@``).
        overlay: the overlay's file name, e.g. ``"inference.yaml"``.
        base: the base config's file name, e.g. ``"train.yaml"``.
        argv: the command line (default ``sys.argv``); its ``--config_file`` gives the folder of the fixed list.

    Returns:
        One line, ending with the ``--config_file`` list (base first) to use; with the overlay's path on the command
        line, the list holds its folder, else ``<bundle>/configs``.

    Example::

        overlay_fix("spatial_size", "inference.yaml", "train.yaml", ["--config_file", "b/configs/inference.yaml"])
        # inference.yaml is an overlay on train.yaml (`@spatial_size` is defined there): list train.yaml first,
        # --config_file "['b/configs/train.yaml','b/configs/inference.yaml']"
    """
    files = _config_files(sys.argv if argv is None else argv)
    given = [f for f in files if os.path.basename(f) == overlay]
    folder = os.path.dirname(given[0]) if given else os.path.join("<bundle>", "configs")
    pair = ",".join(f"'{os.path.join(folder, f)}'" for f in (base, overlay))
    return (f"{overlay} is an overlay on {base} (`@{missing}` is defined there): list {base} first, "
            f'--config_file "[{pair}]"')


def _report(etype, value, tb, previous) -> None:
    if os.environ.get("MONAI_GALR_TRACEBACK", "").lower() == "full" or not isinstance(value, BaseException):
        previous(etype, value, tb)
    else:
        root, components = root_error(value)
        missing = _MISSING_REFERENCE.match(str(root)) if isinstance(root, ValueError) else None
        if missing and _OVERLAY:
            print(f"\nERROR: {overlay_fix(missing.group(1), **_OVERLAY)}", file=sys.stderr)
            sys.stderr.flush()
            return
        hidden = len(_chain(value)) - len(_chain(root))
        traceback.print_exception(type(root), root, root.__traceback__, chain=False, file=sys.stderr)
        where = f" while building {components[-1]}" if components else ""
        if hidden:
            print(f"\n[{hidden} MONAI wrapper exception(s){where} not shown; MONAI_GALR_TRACEBACK=full shows them]",
                  file=sys.stderr)
        print(f"ERROR: {_one_line(root)}", file=sys.stderr)
    sys.stderr.flush()


def install_error_report(overlay: str | None = None, base: str | None = None) -> bool:
    """Make an uncaught error end the output with one line naming the real error (call once, first in ``initialize``).

    Replaces ``sys.excepthook`` (once per process): the traceback of the first error of the chain that is not a
    MONAI wrapper is printed, then ``ERROR: <type>: <message>`` as the last line.  ``MONAI_GALR_TRACEBACK=full``
    restores Python's full report.  MONAI's ``StatsHandler`` loggers stop printing an engine error's traceback (the
    report prints it once).  :class:`BundleError` needs none of this (Python prints its message alone).

    Args:
        overlay: the file name of the overlay config calling this (e.g. ``"inference.yaml"``), with ``base``.
        base: the file name of the config the overlay is listed after (e.g. ``"train.yaml"``).  With both, an entry
            of ``base`` that is missing (the overlay run alone) ends the output with :func:`overlay_fix` (the
            ``--config_file`` list that fixes it), without a traceback.

    Example (first item of an overlay's ``initialize``)::

        - "$monai_galr.bundle_checks.install_error_report(overlay='inference.yaml', base='train.yaml')"

    Returns:
        True.

    Raises:
        ValueError: only one of ``overlay`` and ``base``.
    """
    if (overlay is None) != (base is None):
        raise ValueError(f"install_error_report: give overlay and base together, got overlay={overlay!r}, "
                         f"base={base!r}.")
    _OVERLAY.clear()
    if overlay is not None:
        _OVERLAY.update(overlay=overlay, base=base)
    if not getattr(sys.excepthook, "_monai_galr_report", False):
        previous = sys.excepthook

        def hook(etype, value, tb):
            _report(etype, value, tb, previous)

        hook._monai_galr_report = True  # type: ignore[attr-defined]
        sys.excepthook = hook
    flt = _NoEngineTraceback()
    for name in ("monai.handlers.StatsHandler", "StatsHandler"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _NoEngineTraceback) for f in log.filters):
            log.addFilter(flt)
    return True


# ---- training start and end ----------------------------------------------------------------------------------------
#: names of leftovers of an interrupted atomic save: ignite's DiskSaver (``tmpXXXXXXXX``) and
#: :class:`monai_galr.handlers.run_guard.SafeDiskSaver` (``.partial-<name>-XXXX``)
_LEFTOVER = re.compile(r"^(tmp[a-z0-9_]{8}|\.partial-.+)$")


def leftover_temporary_files(folder: str | os.PathLike) -> list[str]:
    """The leftovers of interrupted atomic checkpoint saves in ``folder`` (absolute paths, sorted)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if _LEFTOVER.match(f) and os.path.isfile(os.path.join(folder, f)))


_RESUMABLE = ("model", "optimizer", "trainer")


def _load_resume(path: str) -> Mapping:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported with the file named
        raise BundleError(
            f"resume_from {path!r} was refused: it is not a weights-only checkpoint (loading it could run code) or "
            f"not a checkpoint at all ({_one_line(e)}); expected a checkpoint_epoch=N.pt file written by this "
            "bundle's training."
        ) from None
    if not isinstance(obj, Mapping) or not all(k in obj for k in _RESUMABLE):
        best = isinstance(obj, Mapping) and len(obj) > 0 and all(hasattr(v, "shape") for v in obj.values())
        if best:
            found = (f"network weights only ({len(obj)} tensors: the best-weights model.pt?); resume from a "
                     f"checkpoint_epoch=N.pt file of the same folder, or fine-tune from these weights with --init_from "
                     f"{path!r}")
        else:
            found = f"{sorted(obj)[:6]}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise BundleError(
            f"resume_from {path!r} is not a resumable checkpoint: expected the entries {list(_RESUMABLE)} (a "
            f"checkpoint_epoch=N.pt file), found {found}."
        )
    return obj


def check_training_start(
    ckpt_dir: str | os.PathLike,
    resume_from: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    overwrite: bool = False,
    is_rank0: bool = True,
    best_name: str = "model.pt",
) -> bool:
    """Fail before any data is read when a training run cannot succeed or would destroy weights; tidy ``ckpt_dir``.

    - ``resume_from`` must exist and be a resumable checkpoint (``model``, ``optimizer``, ``trainer`` ...), not the
      best-weights ``model.pt``; the best model it records (``best_model``) must be in ``ckpt_dir`` (a resumed run
      replaces that file when it finds a better model: resuming into another folder would fail at the first
      validation);
    - ``resume_from`` and ``init_from`` exclude each other; ``init_from`` must exist;
    - a fresh run (no ``resume_from``) into a ``ckpt_dir`` that already holds ``best_name`` (the shipped pretrained
      weights, or an earlier run's best model) or ``checkpoint_epoch=N.pt`` files stops, unless ``overwrite``;
    - leftovers of interrupted atomic saves in ``ckpt_dir`` are deleted (rank 0), and logged.

    Returns:
        True.

    Raises:
        BundleError: the message names the entry (``resume_from``, ``init_from``, ``ckpt_dir``) and the file.
    """
    folder = os.path.abspath(os.fspath(ckpt_dir))
    shown = os.fspath(ckpt_dir)
    if resume_from is not None and init_from is not None:
        raise BundleError(
            f"resume_from {os.fspath(resume_from)!r} and init_from {os.fspath(init_from)!r} exclude each other: "
            "resume_from continues a run (its weights, optimizer and schedule), init_from starts a new run from "
            "weights. Give one of them."
        )
    if init_from is not None and not os.path.isfile(init_from):
        raise BundleError(f"init_from {os.fspath(init_from)!r} does not exist; expected a model.pt weights file.")
    if resume_from is not None:
        path = os.fspath(resume_from)
        if not os.path.isfile(path):
            raise BundleError(f"resume_from {path!r} does not exist; expected a checkpoint_epoch=N.pt file.")
        state = _load_resume(path)
        saved = [f for _, f in (state.get("best_model") or {}).get("_saved", [])]
        missing = [f for f in saved if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            source = os.path.dirname(os.path.abspath(path))
            raise BundleError(
                f"resume_from {path!r} continues a run whose best model {missing[0]!r} is not in ckpt_dir "
                f"{folder!r}: the resumed run replaces that file when it finds a better model and would fail at the "
                f"first validation. Resume with --ckpt_dir {source!r} (the checkpoint's folder), or copy "
                f"{os.path.join(source, missing[0])!r} into ckpt_dir first."
            )
    elif not overwrite:
        existing = sorted(f for f in (os.listdir(folder) if os.path.isdir(folder) else [])
                          if f == best_name or re.fullmatch(r"checkpoint_epoch=\d+\.pt", f))
        if existing:
            run = os.path.join(os.path.dirname(os.path.normpath(shown)), "runs", "my_run", "models")
            raise BundleError(
                f"ckpt_dir {shown!r} already holds {existing[:3]} (the shipped pretrained weights or an earlier run) "
                f"and a new training run would replace them: train into a run folder (--ckpt_dir {run!r}), "
                f"fine-tune with --init_from {os.path.join(shown, best_name)!r} and such a --ckpt_dir, continue a "
                "run with --resume_from, or replace them with --overwrite True."
            )
    if is_rank0:
        for f in leftover_temporary_files(folder):
            os.remove(f)
            logger.warning("removed %s, left by an interrupted checkpoint save.", f)
    return True


def check_run_completed(trainer: Any) -> bool:
    """After ``trainer.run()``: raise :class:`BundleError` when the run stopped before ``max_epochs``.

    The reason is the one recorded by the handler that stopped it (``trainer.state.stop_reason``, set by
    :class:`monai_galr.handlers.TerminateOnNan`), or a generic one.  Under ``torch.distributed`` every rank calls this
    and raises.

    Returns:
        True when the run reached ``max_epochs``.
    """
    state = trainer.state
    reason = getattr(state, "stop_reason", None)
    done = state.max_epochs is not None and state.epoch >= state.max_epochs and reason is None
    if done:
        return True
    raise BundleError(
        (reason or f"training stopped at epoch {state.epoch} of {state.max_epochs} (iteration {state.iteration}) "
         "before max_epochs") + " Nothing after the last periodic checkpoint was saved; the run did not succeed."
    )

