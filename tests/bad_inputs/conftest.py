"""Shared fixtures of the bad-input suite: the data_prep scripts as modules, and output paths that cannot be written."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("prepare_mnist", "prepare_adrenal", "prepare_oasis", "make_synthetic_adrenal", "prepare_demo_brain")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{name}", ROOT / "data_prep" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def scripts() -> SimpleNamespace:
    """``scripts.prepare_mnist.main(argv)`` ...: each data_prep script loaded as a module (what the CLI runs)."""
    return SimpleNamespace(**{name: _load(name) for name in SCRIPTS})


@pytest.fixture()
def under_a_file(tmp_path) -> Path:
    """A folder path below a regular file: ``os.makedirs`` fails on it for every user, root included."""
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("not a folder")
    return blocker / "out"


def _blocks_writes(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def _immutable(folder: Path, on: bool) -> bool:
    """``chattr +i`` / ``-i``: blocks writes for root too, where the file system and capabilities allow it."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(folder)], capture_output=True).returncode == 0


@pytest.fixture()
def read_only_dir(tmp_path) -> Path:
    """A folder that cannot be written: ``chmod 0500``, or for root (which ignores permissions) ``chattr +i``.

    Skipped where neither blocks writes.
    """
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    immutable = False
    if not _blocks_writes(folder):
        folder.chmod(stat.S_IRWXU)
        immutable = _immutable(folder, True)
        if not (immutable and _blocks_writes(folder)):
            if immutable:
                _immutable(folder, False)
            pytest.skip(f"neither chmod 0500 nor chattr +i blocks writes here (uid {os.geteuid()})")
    try:
        yield folder
    finally:  # let pytest clean tmp_path up
        if immutable:
            _immutable(folder, False)
        folder.chmod(stat.S_IRWXU)
