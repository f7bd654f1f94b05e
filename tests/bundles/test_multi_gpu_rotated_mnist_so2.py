"""multi_gpu_train.yaml of rotated_mnist_so2, launched with torchrun as 2 CPU processes (gloo) on tiny data.

Checks that both ranks end with identical weights (DistributedDataParallel all-reduces the gradients, ALD logits
included, and broadcasts the BatchNorm buffers) and that only rank 0 has savers and loggers.  A test-only overlay
adds a ``finalize`` step that dumps each rank's weights and handler list under the bundle root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "rotated_mnist_so2" / "configs"

_SUMMARY = (
    "{'model': @network.module.state_dict(), "
    "'is_ddp': isinstance(@network, torch.nn.parallel.DistributedDataParallel), "
    "'train_handlers': [type(h).__name__ for h in @train#handlers], "
    "'val_handlers': [type(h).__name__ for h in @validate#handlers], "
    "'periodic_saver': @checkpoint_saver is not None, "
    "'sampler': type(@train#dataloader.sampler).__name__}"
)
DUMP = (
    "finalize:\n"
    f"  - \"$torch.save({_SUMMARY}, os.path.join(@bundle_root, 'rank{{}}.pt'.format(torch.distributed.get_rank())))\"\n"
    "  - \"$torch.distributed.is_initialized() and torch.distributed.destroy_process_group()\"\n"
)


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    overlay = tmp_path / "dump.yaml"
    overlay.write_text(DUMP)
    configs = [str(CONFIGS / "train.yaml"), str(CONFIGS / "multi_gpu_train.yaml"), str(overlay)]
    root = tmp_path / "bundle"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "monai.bundle", "run", "training", "--config_file", repr(configs), "--bundle_root", str(root),
           "--max_train", "16", "--max_val", "8", "--max_test", "8", "--max_epochs", "1", "--val_interval", "1",
           "--batch_size", "4", "--num_threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["is_ddp"] and r["sampler"] == "DistributedSampler" for r in ranks)
    for key, value in ranks[0]["model"].items():
        torch.testing.assert_close(ranks[1]["model"][key], value, rtol=0, atol=0, msg=key)
    # rank 0 logs and saves; rank 1 keeps only what every rank needs
    assert {"CheckpointSaver", "StatsHandler", "TensorBoardStatsHandler"} <= set(ranks[0]["val_handlers"])
    assert ranks[1]["val_handlers"] == []
    assert ranks[1]["train_handlers"] == ["TerminateOnNan", "LrScheduleHandler", "ValidationHandler"]
    assert ranks[0]["periodic_saver"] and not ranks[1]["periodic_saver"]
    assert len(list((root / "logs").glob("events.out.tfevents.*"))) == 1
    saved = torch.load(root / "models" / "model.pt", weights_only=True)
    assert saved.keys() == ranks[0]["model"].keys()  # saved without DDP's "module." prefix
    periodic = torch.load(root / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    for key, value in ranks[0]["model"].items():
        torch.testing.assert_close(periodic["model"][key], value, rtol=0, atol=0, msg=key)
