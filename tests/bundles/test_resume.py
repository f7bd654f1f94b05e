"""Trust features of every bundle's train.yaml: exact resumption from the periodic checkpoints, the NaN guard, and
checkpoints that are whole after a kill, refused when they do not match or would run code.

Tiny in-process runs (two iterations per epoch, see conftest.py) under ``tmp_path``, on the CPU; the kill test runs
the bundle in a subprocess.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import run

from monai_galr.bundle_checks import BundleError
from monai_galr.losses import GroupActionLoss

BUNDLES = ("rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3")
CPU = {"device": "$torch.device('cpu')"}  # bitwise comparisons: no GPU kernels

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _train(bundle, root: Path, **override) -> None:
    run(run_id="training", config_file=bundle.train, meta_file=bundle.meta, logging_file=False,
        bundle_root=str(root), **{**bundle.overrides, **CPU, **override})


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _periodic(root: Path) -> list[str]:
    files = (root / "models").glob("checkpoint_epoch=*.pt")
    return [p.name for p in sorted(files, key=lambda p: int(p.stem.split("=")[1]))]


def _error_text(err: BaseException | None) -> str:
    """The messages of an exception and of everything it was raised from (MONAI and ignite wrap handler errors)."""
    text = []
    while err is not None:
        text.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(text)


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"{what}: {k}")


@pytest.fixture
def loss_calls(monkeypatch):
    """Counts GroupActionLoss calls (one per training iteration); set ``calls["nan_from"]`` to make the loss NaN from
    that call on, and ``calls["on_nan"]`` to a function run at the first NaN call."""
    original = GroupActionLoss.forward
    calls = {"n": 0, "nan_from": None, "on_nan": None}

    def counted(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["nan_from"] is not None and calls["n"] >= calls["nan_from"]:
            if calls["n"] == calls["nan_from"] and calls["on_nan"] is not None:
                calls["on_nan"]()
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(GroupActionLoss, "forward", counted)
    return calls


@pytest.mark.parametrize("name", BUNDLES)
def test_resume_reproduces_uninterrupted_training(name, tiny_bundle, tmp_path, loss_calls):
    bundle = tiny_bundle(name)
    steps = bundle.steps_per_epoch
    full, part = tmp_path / "full", tmp_path / "part"
    _train(bundle, full, max_epochs=3)
    # the newest two periodic checkpoints are kept, written atomically (no temporary file is left behind)
    assert _periodic(full) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]
    assert sorted(os.listdir(full / "models")) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt", "model.pt"]
    a = _load(full / "models" / "checkpoint_epoch=3.pt")
    assert set(a) == {"model", "optimizer", "lr_scheduler", "trainer", "rng", "best_model"}
    assert a["trainer"]["iteration"] == 3 * steps and a["trainer"]["epoch_length"] == steps
    assert a["lr_scheduler"]["last_epoch"] == 3
    assert [f for _, f in a["best_model"]["_saved"]] == ["model.pt"]
    assert _load(full / "models" / "model.pt").keys() == a["model"].keys()  # the best weights, no "module." prefix

    # the interrupted run: one epoch of the same 3-epoch schedule (T_max as in the full run), then resumed
    _train(bundle, part, max_epochs=1, **{"lr_scheduler#T_max": 3})
    first = part / "models" / "checkpoint_epoch=1.pt"
    assert _load(first)["trainer"]["iteration"] == steps
    loss_calls["n"] = 0
    _train(bundle, part, max_epochs=3, resume_from=str(first))
    assert loss_calls["n"] == 2 * steps  # resumed after epoch 1: two epochs trained, not three
    b = _load(part / "models" / "checkpoint_epoch=3.pt")
    assert b["trainer"] == a["trainer"] and b["lr_scheduler"] == a["lr_scheduler"]
    _assert_same(a["model"], b["model"], "model")
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=0, atol=0)
    assert b["best_model"] == a["best_model"]  # the best score survived the interruption
    _assert_same(_load(full / "models" / "model.pt"), _load(part / "models" / "model.pt"), "model.pt")


def test_resume_without_random_state_differs(tiny_bundle, tmp_path):
    """The test above can fail: restarting from the seed instead of the saved random state changes the weights."""
    bundle = tiny_bundle("rotated_mnist_so2")
    full, part = tmp_path / "full", tmp_path / "part"
    _train(bundle, full, max_epochs=2)
    _train(bundle, part, max_epochs=1, **{"lr_scheduler#T_max": 2})
    _train(bundle, part, max_epochs=2, resume_from=str(part / "models" / "checkpoint_epoch=1.pt"),
           **{"checkpointing#resume_skip": ["rng"]})
    a = _load(full / "models" / "checkpoint_epoch=2.pt")["model"]
    b = _load(part / "models" / "checkpoint_epoch=2.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", BUNDLES)
def test_resume_from_missing_file_names_it(name, tiny_bundle, tmp_path):
    missing = tmp_path / "models" / "checkpoint_epoch=7.pt"
    with pytest.raises(BundleError) as info:  # check_training_start: before any data is read
        _train(tiny_bundle(name), tmp_path, max_epochs=1, resume_from=str(missing))
    assert f"resume_from {str(missing)!r} does not exist" in str(info.value)
    assert not list(tmp_path.glob("logs/events.*"))  # stopped before the summary writer was built


@pytest.mark.parametrize("name", BUNDLES)
def test_nan_loss_stops_training_and_keeps_checkpoints(name, tiny_bundle, tmp_path, loss_calls, caplog):
    bundle = tiny_bundle(name)
    models = tmp_path / "models"
    saved = {}

    def snapshot():  # the files as they are when the first NaN appears (first step of epoch 2)
        saved.update({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models.glob("*.pt")})

    loss_calls.update(nan_from=bundle.steps_per_epoch + 1, on_nan=snapshot)
    with caplog.at_level(logging.WARNING), pytest.raises(BundleError) as stopped:  # a stopped run is no success
        _train(bundle, tmp_path, max_epochs=3)
    assert loss_calls["n"] == bundle.steps_per_epoch + 1  # stopped at the first NaN step
    messages = [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(messages) == 1 and "epoch 2" in messages[0] and "resume_from" in messages[0], messages
    # the inputs were finite: the message blames the optimisation, and the exit message repeats it
    assert "The input batch is finite" in messages[0] and messages[0] in str(stopped.value)
    assert "the run did not succeed" in str(stopped.value)
    assert sorted(saved) == ["checkpoint_epoch=1.pt", "model.pt"]
    now = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models.glob("*.pt")}
    assert now == saved  # nothing written after the NaN, the earlier files byte-identical
    ckpt = _load(models / "checkpoint_epoch=1.pt")
    assert ckpt["trainer"]["iteration"] == bundle.steps_per_epoch
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class _Payload:
    """Unpickling this object creates ``marker`` (stands in for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_mismatched_or_code_carrying_checkpoint_is_refused(tiny_bundle, tmp_path):
    bundle = tiny_bundle("brain_mri_so3")
    other = tmp_path / "latent8"
    _train(bundle, other, max_epochs=1, latent_channels=8)
    ckpt = other / "models" / "checkpoint_epoch=1.pt"
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI/ignite wrap the handler's error
        # (in the checkpoint's own folder: resuming elsewhere is refused before, see test_careless_use.py)
        _train(bundle, tmp_path / "a", max_epochs=2, resume_from=str(ckpt), ckpt_dir=str(other / "models"))
    text = _error_text(info.value)
    assert str(ckpt) in text and "does not match the network" in text and "ald.alpha" in text, text

    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model": _Payload(str(marker))}, evil)
    with pytest.raises(BaseException) as info:  # noqa: PT011 - BundleError from check_training_start
        _train(bundle, tmp_path / "b", max_epochs=1, resume_from=str(evil))
    text = _error_text(info.value)
    assert str(evil) in text and "not a weights-only checkpoint" in text, text
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rotated_mnist_so2", "brain_mri_so3"])
def test_sigkill_mid_training_then_resume(name, tiny_bundle, tmp_path):
    """Kill the training process (SIGKILL) once a periodic checkpoint exists: every checkpoint file is whole, and
    resuming from the newest ends with the weights of an uninterrupted run."""
    bundle = tiny_bundle(name)
    epochs = 4
    killed, full = tmp_path / "killed", tmp_path / "full"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", bundle.train,
           "--meta_file", bundle.meta, "--bundle_root", str(killed), *bundle.cli(max_epochs=epochs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=bundle.configs.parents[2], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not _periodic(killed) and proc.poll() is None:
            assert time.monotonic() < deadline, "no periodic checkpoint appeared"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed: {log.read_text()[-3000:]}"
    files = _periodic(killed)
    assert files and files[-1] != f"checkpoint_epoch={epochs}.pt", files
    for f in files:  # each loads (weights only) and holds the epoch it names
        epoch = _load(killed / "models" / f)["trainer"]["iteration"] // bundle.steps_per_epoch
        assert f == f"checkpoint_epoch={epoch}.pt"
    _train(bundle, killed, max_epochs=epochs, resume_from=str(killed / "models" / files[-1]))
    _train(bundle, full, max_epochs=epochs)
    a = _load(full / "models" / f"checkpoint_epoch={epochs}.pt")["model"]
    b = _load(killed / "models" / f"checkpoint_epoch={epochs}.pt")["model"]
    _assert_same(a, b, "model")
