"""Atomic file output: every file is written to a temporary file beside its target and moved in with ``os.replace``.

A failed or interrupted write never replaces an existing file with partial data, and never leaves a half-written
one under the final name.  Temporary files keep the target's extension (``suffix``): writers that pick the format
from the name (nibabel's ``.nii.gz``, ``torch.save`` readers that look for ``.pt``, matplotlib's ``.png``) see the
right one, and a leftover is recognisable by its leading dot and prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "atomic_output",
    "json_safe",
    "save_figure_atomic",
    "save_torch_atomic",
    "write_json_atomic",
    "write_outputs_atomic",
    "write_text_atomic",
]


def _readable(tmp: str) -> None:
    """Give ``tmp`` the mode a plain ``open`` would (``mkstemp`` makes it private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _temporary(path: str, prefix: str, suffix: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    return tmp


def _discard(tmp: str) -> None:
    if os.path.exists(tmp):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, prefix: str = ".tmp-", suffix: str = "") -> Iterator[str]:
    """Yield a temporary file path in ``path``'s folder; move it onto ``path`` when the block succeeds.

    On any error (or an interrupt) the temporary file is deleted and ``path`` is left as it was, so an existing
    output is never replaced with partial data.  The folder is created; the file gets the usual mode (``mkstemp``
    makes it private).  Choose ``suffix`` so that writers which pick the format from the name (nibabel: ``.nii.gz``)
    see the right one.

    Raises:
        OSError: the folder cannot be created or written (raised before the block runs), or the final move fails.

    Example::

        >>> with atomic_output("out/result.txt", suffix=".txt") as tmp, open(tmp, "w") as f:   # doctest: +SKIP
        ...     f.write("done")
    """
    path = os.fspath(path)
    tmp = _temporary(path, prefix, suffix)
    try:
        yield tmp
        _readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    with atomic_output(path, prefix=".tmp_", suffix=os.path.splitext(os.fspath(path))[1] or ".txt") as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON (indented, keys sorted) to ``path`` atomically."""
    with atomic_output(path, prefix=".tmp_", suffix=".json") as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Render a matplotlib ``fig`` with the Agg backend to a temporary PNG next to ``path``, then move it in."""
    with atomic_output(path, prefix=".tmp_", suffix=".png") as tmp:
        _save_png(fig, tmp, dpi)


def save_torch_atomic(obj: Any, path: str | os.PathLike, prefix: str | None = None) -> None:
    """``torch.save(obj, path)`` atomically; the temporary file ends in ``.pt`` like the target.

    Args:
        obj: what ``torch.save`` accepts (a state dict, a checkpoint dict).
        path: the target file.
        prefix: of the temporary name (default ``.partial-<name>-``, which
            :func:`monai_galr.bundle_checks.leftover_temporary_files` recognises).
    """
    import torch

    name = os.path.basename(os.fspath(path))
    with atomic_output(path, prefix=prefix or f".partial-{name}-", suffix=".pt") as tmp:
        torch.save(obj, tmp)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN / inf floats replaced by None (strict JSON), numpy scalars as Python numbers."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _save_png(fig: Any, tmp: str, dpi: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(tmp, format="png", dpi=dpi)


def write_outputs_atomic(output_dir: str, outputs: Mapping[str, Any], dpi: int = 120) -> list[str]:
    """Write every output of a study at once, at the end: nothing is left half-written or stale-looking.

    All files are first rendered to temporary files in ``output_dir`` (a failure there removes every temporary
    file and leaves the folder as it was, so old results are never mixed with new ones); then each is moved into
    place with ``os.replace``, in the order given (put the JSON, which records the whole result, last).

    Args:
        output_dir: the folder (created when needed).
        outputs: ``{file name: content}``; a matplotlib ``Figure`` is saved as PNG, a ``str`` as text, a dict or
            list as strict JSON (NaN / inf become null; keys sorted, indented).
        dpi: resolution of the PNG figures.

    Returns:
        the paths written, in order.

    Raises:
        TypeError: a content of another type (nothing is written).
    """
    from matplotlib.figure import Figure

    for name, content in outputs.items():
        if not isinstance(content, (Figure, str, Mapping, list, tuple)):
            raise TypeError(f"output {name!r} must be a Figure, str, dict or list, got {type(content).__name__}.")
    created = not os.path.isdir(output_dir)
    pending: list[tuple[str, str]] = []
    try:
        for name, content in outputs.items():
            path = os.path.join(output_dir, name)
            pending.append((_temporary(path, ".tmp_", os.path.splitext(name)[1] or ".tmp"), path))
            if isinstance(content, Figure):
                _save_png(content, pending[-1][0], dpi)
                continue
            text = content if isinstance(content, str) else json.dumps(
                json_safe(content), indent=2, sort_keys=True, allow_nan=False
            )
            with open(pending[-1][0], "w") as f:
                f.write(text)
    except BaseException:
        for tmp, _ in pending:
            _discard(tmp)
        if created and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)
        raise
    for tmp, path in pending:
        _readable(tmp)
        os.replace(tmp, path)
    return [path for _, path in pending]
