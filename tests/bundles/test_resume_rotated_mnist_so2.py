"""Trust features of rotated_mnist_so2's train.yaml: the NaN guard and exact resumption from periodic checkpoints.

Tiny in-process runs (32 training digits, batches of 16: two iterations per epoch) under ``tmp_path``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from monai.bundle import run

from monai_galr.losses import GroupActionLoss

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "rotated_mnist_so2" / "configs"
TRAIN, META = str(CONFIGS / "train.yaml"), str(CONFIGS / "metadata.json")
TINY = {"max_train": 32, "max_val": 16, "max_test": 16, "num_threads": 1, "batch_size": 16, "val_interval": 1}

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _train(bundle_root: Path, **override) -> None:
    run(run_id="training", config_file=TRAIN, meta_file=META, logging_file=False, bundle_root=str(bundle_root),
        **{**TINY, **override})


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_periodic_checkpoint_is_resumable(tmp_path):
    _train(tmp_path, max_epochs=2)
    models = tmp_path / "models"
    assert sorted(p.name for p in models.glob("checkpoint_*.pt")) == ["checkpoint_epoch=2.pt"]  # n_saved: 1
    ckpt = _checkpoint(models / "checkpoint_epoch=2.pt")
    assert set(ckpt) == {"model", "optimizer", "lr_scheduler", "trainer", "rng"}
    assert ckpt["trainer"]["iteration"] == 4 and ckpt["trainer"]["epoch_length"] == 2  # ignite keeps no epoch
    assert ckpt["lr_scheduler"]["last_epoch"] == 2


def test_resume_reproduces_uninterrupted_training(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    _train(full, max_epochs=2)
    # the interrupted run: one epoch of the same 2-epoch schedule (T_max as in the full run), then resumed
    _train(part, max_epochs=1, **{"lr_scheduler#T_max": 2})
    first = part / "models" / "checkpoint_epoch=1.pt"
    assert _checkpoint(first)["trainer"]["iteration"] == 2
    _train(part, max_epochs=2, resume_from=str(first))
    a = _checkpoint(full / "models" / "checkpoint_epoch=2.pt")
    b = _checkpoint(part / "models" / "checkpoint_epoch=2.pt")
    assert b["trainer"]["iteration"] == 4
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=0, msg=k)
    assert a["lr_scheduler"] == b["lr_scheduler"]
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=0, atol=0)


def test_resume_without_random_state_differs(tmp_path):
    """The test above can fail: restarting from the seed instead of the saved random state changes the weights."""
    full, part = tmp_path / "full", tmp_path / "part"
    _train(full, max_epochs=2)
    _train(part, max_epochs=1, **{"lr_scheduler#T_max": 2})
    first = part / "models" / "checkpoint_epoch=1.pt"
    resume = ("$monai_galr.handlers.GroupActionCheckpointLoader(load_path=@resume_from, "
              "load_dict={k: v for k, v in @checkpoint_dict.items() if k != 'rng'}, map_location=@device)")
    _train(part, max_epochs=2, resume_from=str(first), resume_loader=resume)
    a = _checkpoint(full / "models" / "checkpoint_epoch=2.pt")["model"]
    b = _checkpoint(part / "models" / "checkpoint_epoch=2.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_resume_from_missing_file_names_it(tmp_path):
    missing = tmp_path / "models" / "checkpoint_epoch=7.pt"
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI/ignite wrap the handler's error
        _train(tmp_path, max_epochs=1, resume_from=str(missing))
    err, text = info.value, []
    while err is not None:
        text.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    assert "FileNotFoundError" in "\n".join(text) and str(missing) in "\n".join(text)


def test_nan_loss_terminates_and_keeps_last_checkpoint(tmp_path, monkeypatch, caplog):
    original = GroupActionLoss.forward
    calls = {"n": 0}

    def nan_from_third_step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 3:  # the first step of epoch 2
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(GroupActionLoss, "forward", nan_from_third_step)
    with caplog.at_level(logging.WARNING):
        _train(tmp_path, max_epochs=3)
    assert calls["n"] == 3  # stopped at the first NaN step
    assert any("NaN or infinite" in r.getMessage() for r in caplog.records)
    models = tmp_path / "models"
    assert sorted(p.name for p in models.glob("checkpoint_*.pt")) == ["checkpoint_epoch=1.pt"]
    ckpt = _checkpoint(models / "checkpoint_epoch=1.pt")
    assert ckpt["trainer"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    best = _checkpoint(models / "model.pt")  # the validation saver's best model (epoch 1)
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())


@pytest.mark.slow
def test_sigkill_mid_training_then_resume(tmp_path):
    """Kill the training process (SIGKILL) once a periodic checkpoint exists; the file is whole and resuming from
    it ends with the weights of an uninterrupted run."""
    import os
    import subprocess
    import sys
    import time

    settings = {**TINY, "max_train": 64, "max_epochs": 3}
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN, "--meta_file", META,
           "--bundle_root", str(killed)] + [a for k, v in settings.items() for a in (f"--{k}", str(v))]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list((killed / "models").glob("checkpoint_epoch=*.pt")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no periodic checkpoint appeared"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    # killed between saving epoch N and removing epoch N - 1, both files exist: each must be whole
    files = sorted((killed / "models").glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
    for f in files:
        epoch = _checkpoint(f)["trainer"]["iteration"] // 4
        assert f.name == f"checkpoint_epoch={epoch}.pt"  # loads (weights only) and is the epoch it names
    last = files[-1]
    _train(killed, **{**settings, "resume_from": str(last)})
    full = tmp_path / "full"
    _train(full, **settings)
    a = _checkpoint(full / "models" / "checkpoint_epoch=3.pt")["model"]
    b = _checkpoint(killed / "models" / "checkpoint_epoch=3.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
