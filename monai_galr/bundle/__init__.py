"""What every bundle config shares, as factories the configs call (``_target_`` / ``$`` expressions).

The bundle configs (``bundles/<name>/configs/*.yaml``) hold what differs between bundles: data, network
hyperparameters, paths.  Everything they all wire the same way lives here once: the metric dicts of the fixed
evaluation protocol, the logging handlers, checkpointing and resume, the test evaluation, the distributed set-up
(``multi_gpu_train.yaml``) and the output transforms that read the trainer's output.
"""

from __future__ import annotations

from monai_galr.bundle.factories import (
    INFERENCE_CONFIGS,
    Checkpointing,
    additional_metrics,
    check_setup,
    close_distributed,
    evaluator,
    export_rotated,
    flat_compose,
    handler_list,
    inference_configs,
    init_distributed,
    is_rank0,
    key_metric,
    local_device,
    loss_terms,
    mlflow_handler,
    nan_guard,
    network_on,
    print_metrics,
    sampler,
    test_handlers,
    train_log_handlers,
    val_log_handlers,
)
from monai_galr.bundle.studies import Studies

__all__ = [
    "INFERENCE_CONFIGS",
    "Studies",
    "Checkpointing",
    "additional_metrics",
    "check_setup",
    "close_distributed",
    "evaluator",
    "export_rotated",
    "flat_compose",
    "handler_list",
    "inference_configs",
    "init_distributed",
    "is_rank0",
    "key_metric",
    "local_device",
    "loss_terms",
    "mlflow_handler",
    "nan_guard",
    "network_on",
    "print_metrics",
    "sampler",
    "test_handlers",
    "train_log_handlers",
    "val_log_handlers",
]
