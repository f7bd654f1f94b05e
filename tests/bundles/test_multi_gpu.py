"""Every bundle's multi_gpu_train.yaml, launched with torchrun as 2 CPU processes (gloo) on tiny data.

Checks that both ranks end with identical weights (DistributedDataParallel all-reduces the gradients, ALD logits
included), that every rank runs the handlers all ranks need while only rank 0 builds loggers and checkpoint savers,
and that the files on disk come from rank 0 alone (one TensorBoard event file, the checkpoints hold rank 0's weights,
no leftovers).  A test-only overlay replaces ``finalize`` with a step that dumps each rank's weights and handler lists
under the bundle root, then closes the process group as the bundles do (a barrier first).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

BUNDLES = ("rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3")

_SUMMARY = (
    "{'model': @network.module.state_dict(), "
    "'is_ddp': isinstance(@network, torch.nn.parallel.DistributedDataParallel), "
    "'world_size': torch.distributed.get_world_size(), "
    "'train_handlers': [type(h).__name__ for h in @train#handlers], "
    "'rank0_handlers': [type(h).__name__ for h in @train#rank0_handlers], "
    "'val_handlers': [type(h).__name__ for h in monai_galr.bundle.handler_list(@validate#handlers)], "
    "'summary_writer': @summary_writer is not None, "
    "'savers': [@checkpointing.best_model_saver is not None, @checkpointing.checkpoint_saver is not None], "
    "'sampler': type(@train#dataloader.sampler).__name__}"
)
DUMP = (
    "finalize:\n"
    f"  - \"$torch.save({_SUMMARY}, os.path.join(@bundle_root, 'rank{{}}.pt'.format(torch.distributed.get_rank())))\"\n"
    "  - \"$monai_galr.bundle.close_distributed()\"\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_two_process_gloo_training(name, tiny_bundle, tmp_path):
    bundle = tiny_bundle(name)
    overlay = tmp_path / "dump.yaml"
    overlay.write_text(DUMP)
    configs = [bundle.train, str(bundle.configs / "multi_gpu_train.yaml"), str(overlay)]
    root = tmp_path / "bundle"
    # --standalone: a local rendezvous on a free port (no fixed master port to collide with)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "--max_restarts", "0", "-m", "monai.bundle", "run", "training", "--config_file", repr(configs),
           "--meta_file", bundle.meta, "--bundle_root", str(root), *bundle.cli(max_epochs=1)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=bundle.configs.parents[2], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:  # the whole tails, not pytest's shortened repr of them
        pytest.fail(f"torchrun exited {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n"
                    f"--- stdout ---\n{proc.stdout[-2000:]}", pytrace=False)

    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["is_ddp"] and r["world_size"] == 2 and r["sampler"] == "DistributedSampler" for r in ranks)
    for key, value in ranks[0]["model"].items():
        torch.testing.assert_close(ranks[1]["model"][key], value, rtol=0, atol=0, msg=key)
    # every rank: NaN guard, LR schedule, validation; rank 0 alone: logging and checkpoint writing
    assert ranks[0]["train_handlers"] == ranks[1]["train_handlers"] == [
        "TerminateOnNan", "LrScheduleHandler", "ValidationHandler"]
    assert ranks[0]["rank0_handlers"] == ["MaskStatsHandler", "StatsHandler", "TensorBoardStatsHandler", "ProgressBar"]
    assert ranks[0]["val_handlers"] == ["StatsHandler", "TensorBoardStatsHandler", "GroupActionImageHandler"]
    assert ranks[0]["summary_writer"] and ranks[0]["savers"] == [True, True]
    assert ranks[1]["rank0_handlers"] == [] and ranks[1]["val_handlers"] == []
    assert not ranks[1]["summary_writer"] and ranks[1]["savers"] == [False, False]

    assert len(list((root / "logs").glob("events.out.tfevents.*"))) == 1
    assert sorted(os.listdir(root / "models")) == ["checkpoint_epoch=1.pt", "model.pt"]  # no temporary files
    periodic = torch.load(root / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    best = torch.load(root / "models" / "model.pt", weights_only=True)
    assert best.keys() == ranks[0]["model"].keys()  # saved without DDP's "module." prefix
    for key, value in ranks[0]["model"].items():
        torch.testing.assert_close(periodic["model"][key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(best[key], value, rtol=0, atol=0, msg=key)  # one epoch: the best is the last
    if name == "adrenal_ct_so3":  # the test evaluation after training: every rank loads model.pt, rank 0 reports
        assert proc.stdout.count("final test metrics") == 1
        assert (root / "eval" / "metrics_uniform.json").is_file()
