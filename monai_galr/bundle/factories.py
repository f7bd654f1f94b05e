"""Factories that every bundle config calls: one definition of what the three bundles wire alike.

A bundle config names its own data, network and paths, and builds the rest from here, e.g.::

    key_val_metric: "$monai_galr.bundle.key_metric('val')"
    additional_metrics: "$monai_galr.bundle.additional_metrics('val', spatial_dims=@spatial_dims)"
    checkpointing:
      _target_: monai_galr.bundle.Checkpointing
      ckpt_dir: "@ckpt_dir"
      ...

The trainer of every bundle runs with ``decollate: true`` (MONAI's default for ``SupervisedTrainer``):
``engine.state.output`` is then a list of per-sample dicts in which the scalar loss terms are replicated, the
layout that MONAI's own handlers expect (``from_engine(["loss"], first=True)``, used by ``--tracking mlflow``).
:func:`loss_terms` reads that list as well as one dict of batch tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, ProgressBar
from monai.handlers import (
    PeakSignalToNoiseRatio,
    RootMeanSquaredError,
    StatsHandler,
    TensorBoardStatsHandler,
    from_engine,
)

from monai_galr.handlers import (
    GroupActionCheckpointLoader,
    GroupActionImageHandler,
    KeepNSaved,
    MaskStatsHandler,
    MetricsReport,
    RandomStateCheckpoint,
    RunGuard,
    SafeDiskSaver,
    StructuralSimilarity,
    load_network_weights,
)

__all__ = [
    "INFERENCE_CONFIGS",
    "LOSS_TERMS",
    "Checkpointing",
    "additional_metrics",
    "check_setup",
    "evaluator",
    "flat_compose",
    "export_rotated",
    "inference_configs",
    "is_rank0",
    "mlflow_handler",
    "nan_guard",
    "network_on",
    "sampler",
    "handler_list",
    "init_distributed",
    "close_distributed",
    "key_metric",
    "local_device",
    "loss_terms",
    "print_metrics",
    "test_handlers",
    "train_log_handlers",
    "val_log_handlers",
]

LOSS_TERMS = ("loss", "loss_r", "loss_i", "loss_v")


# ---- output transforms ---------------------------------------------------------------------------------------------
def loss_terms(keys: Sequence[str] = LOSS_TERMS) -> Callable[[Any], dict[str, float]]:
    """An output transform giving ``{key: float}`` of the trainer's scalar outputs.

    Reads ``engine.state.output`` as one dict of batch values or as the decollated list of per-sample dicts
    (scalars replicated, MONAI's layout), so the same transform serves ``StatsHandler``, ``TensorBoardStatsHandler``
    and ``MLFlowHandler``.

    Args:
        keys: the entries to read, e.g. ``("loss", "loss_r", "loss_i", "loss_v", "mask_fraction")``.

    Raises:
        TypeError: ``keys`` is a string (give a list of names).
    """
    if isinstance(keys, str):
        raise TypeError(f"keys must be a list of output names, got the string {keys!r}.")
    keys = tuple(keys)

    def _transform(output: Any) -> dict[str, float]:
        values = from_engine(list(keys), first=True)(output)
        values = values if isinstance(values, tuple) else (values,)
        return {k: float(v) for k, v in zip(keys, values)}

    return _transform


def nan_guard():
    """``TerminateOnNan`` on the loss as soon as it is computed (``IterationEvents.LOSS_COMPLETED``).

    There ``engine.state.output`` and ``engine.state.batch`` are still the batch dicts (the trainer decollates them
    at ``MODEL_COMPLETED``), so a non-finite input batch is reported by sample, as with an undecollated trainer.
    """
    from monai.engines.utils import IterationEvents

    from monai_galr.handlers import TerminateOnNan

    guard = TerminateOnNan()
    guard.attach = lambda engine: engine.add_event_handler(IterationEvents.LOSS_COMPLETED, guard)
    return guard


def flat_compose(transforms: Sequence[Any]):
    """``Compose(transforms)`` with nested ``Compose`` objects flattened into one list.

    A shared ``Compose`` (e.g. the brain bundle's ``load_transforms``) can then open several pipelines while
    ``CacheDataset`` still caches every deterministic transform: it caches up to the first randomizable one, and a
    nested ``Compose`` counts as randomizable.
    """
    from monai.transforms import Compose

    return Compose(list(transforms)).flatten()


# ---- the metrics of the fixed protocol -----------------------------------------------------------------------------
def _metric_pair(kind: str, pred: str, target: str, spatial_dims: int, ssim_kwargs: Mapping[str, Any]):
    transform = from_engine([pred, target])
    if kind == "psnr":
        return PeakSignalToNoiseRatio(max_val=1.0, output_transform=transform)
    if kind == "ssim":
        return StructuralSimilarity(spatial_dims=spatial_dims, output_transform=transform, **dict(ssim_kwargs))
    return RootMeanSquaredError(output_transform=transform)


def key_metric(prefix: str = "val") -> dict:
    """``{"<prefix>_psnr": PSNR(pred, label)}``: the key metric (data range 1), e.g. the best-model score."""
    return {f"{prefix}_psnr": _metric_pair("psnr", "pred", "label", 0, {})}


def additional_metrics(prefix: str = "val", spatial_dims: int = 2, ssim_win_size: int | None = None) -> dict:
    """SSIM and RMSE of the rotated prediction, and PSNR / SSIM / RMSE of the identity reconstruction.

    Names ``<prefix>_ssim``, ``<prefix>_rmse``, ``<prefix>_psnr_identity``, ``<prefix>_ssim_identity``,
    ``<prefix>_rmse_identity``; the rotated prediction is compared with ``label`` (``T_R x``), the identity
    reconstruction ``pred_identity`` with ``image`` (``x``).  Fresh metric objects on every call.

    Args:
        prefix: ``val`` (validation) or ``test``.
        spatial_dims: 2 or 3 (SSIM's window).
        ssim_win_size: SSIM window size (None: MONAI's default, 11).
    """
    ssim = {} if ssim_win_size is None else {"win_size": ssim_win_size}
    out = {}
    for suffix, pred, target in (("", "pred", "label"), ("_identity", "pred_identity", "image")):
        for kind in ("psnr", "ssim", "rmse"):
            if kind == "psnr" and not suffix:
                continue  # the key metric
            out[f"{prefix}_{kind}{suffix}"] = _metric_pair(kind, pred, target, spatial_dims, ssim)
    return out


def evaluator(prefix: str, data_loader, network, device, handlers: Sequence[Any] = (), spatial_dims: int = 2,
              ssim_win_size: int | None = None, amp: bool = False, **kwargs: Any):
    """A ``GroupActionEvaluator`` scoring the fixed protocol: :func:`key_metric` and :func:`additional_metrics`
    named ``<prefix>_*`` (``val`` or ``test``), ``handlers`` flattened by :func:`handler_list`; ``kwargs`` go to
    the evaluator."""
    from monai_galr.engines import GroupActionEvaluator

    return GroupActionEvaluator(
        device=device, val_data_loader=data_loader, network=network, key_val_metric=key_metric(prefix),
        additional_metrics=additional_metrics(prefix, spatial_dims=spatial_dims, ssim_win_size=ssim_win_size),
        val_handlers=handler_list(handlers), amp=amp, **kwargs)


# ---- logging handlers (rank 0 only: the configs pass is_rank0) -----------------------------------------------------
def train_log_handlers(network, summary_writer, log_interval: int, is_rank0: bool = True) -> list:
    """Mask statistics, console and TensorBoard loss lines, progress bar (none on ranks other than 0)."""
    if not is_rank0:
        return []
    return [
        MaskStatsHandler(network=network, summary_writer=summary_writer),
        StatsHandler(iteration_log=lambda engine, event: event % log_interval == 0, output_transform=loss_terms()),
        TensorBoardStatsHandler(summary_writer=summary_writer, tag_name="train",
                                output_transform=loss_terms(LOSS_TERMS + ("mask_fraction",))),
        ProgressBar(persist=False),
    ]


def val_log_handlers(summary_writer, max_images: int = 4, is_rank0: bool = True) -> list:
    """Console and TensorBoard validation metrics, and image panels (none on ranks other than 0)."""
    if not is_rank0:
        return []
    return [
        StatsHandler(iteration_log=False),
        TensorBoardStatsHandler(summary_writer=summary_writer, iteration_log=False),
        GroupActionImageHandler(summary_writer=summary_writer, max_images=max_images),
    ]


def test_handlers(network, ckpt_path: str, device, is_rank0: bool = True) -> list:
    """The test evaluation's handlers: load ``ckpt_path`` (every rank), print the metrics (rank 0)."""
    loader = GroupActionCheckpointLoader(load_path=ckpt_path, load_dict={"model": network}, map_location=device)
    return [loader, StatsHandler(iteration_log=False)] if is_rank0 else [loader]


def handler_list(items: Sequence[Any]) -> list:
    """``items`` with nested lists flattened and ``None`` (a disabled component) left out.

    A config's handler list may hold factory results (lists) beside single handlers, and MONAI's ``--tracking``
    settings append their handler to the same list.
    """
    out: list = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(handler_list(item))
        elif item is not None:
            out.append(item)
    return out


def print_metrics(report: MetricsReport | None, partition: str, ckpt_path: str) -> None:
    """Print the test metrics that ``report`` holds (nothing on ranks without a report)."""
    if report is not None and report.result is not None:
        print(f"final test metrics ({partition} partition, checkpoint {ckpt_path}):\n"
              f"{json.dumps(report.result, indent=2, sort_keys=True)}")


# ---- set-up checks -------------------------------------------------------------------------------------------------
def check_setup(network_def, spatial_size: Sequence[int], in_channels: int = 1, **dirs: str) -> bool:
    """Fail early, naming the entry: output folders that cannot be written (``dirs``: entry name -> path), a
    ``spatial_size`` that the network's strides do not divide."""
    from monai_galr.data import ensure_writable_dir

    for name, path in dirs.items():
        ensure_writable_dir(path, name=name)
    network_def.check_input(torch.empty(1, in_channels, *spatial_size, device="meta"), name="spatial_size")
    return True


# ---- checkpoints ---------------------------------------------------------------------------------------------------
class Checkpointing:
    """The best-model saver, the periodic resumable checkpoints, resume and fine-tune, for one training run.

    Both savers are ignite ``Checkpoint`` objects over ``SafeDiskSaver`` (atomic: written to
    ``<ckpt_dir>/.partial-<name>-XXXX``, then renamed; a leftover of a kill is removed when the next run starts; a
    failed write stops the run naming the file).  Both load with ``torch.load(weights_only=True)``.

    - ``best_model_saver``: ``<ckpt_dir>/model.pt``, the network weights of the best ``score_name`` (validation
      PSNR), run by the validator.
    - ``checkpoint_saver``: every ``checkpoint_interval`` epochs ``<ckpt_dir>/checkpoint_epoch=N.pt`` with network,
      optimizer, lr_scheduler, trainer state, random states of the training datasets and the best score so far;
      the newest ``checkpoint_n_saved`` are kept (also across resumes, ``KeepNSaved``).
    - ``resume_from``: a ``checkpoint_epoch=N.pt`` to continue; ``init_from``: network weights to start a new run
      from.

    Savers exist on rank 0 only (``is_rank0``).  ``attach()`` registers everything, last a ``RunGuard`` (a failed
    save on any process stops every process).

    Args:
        save_kwargs: extra ``torch.save`` arguments of the periodic saver (tests inject a failure with it).
        resume_skip: entries of the checkpoint a resume leaves as they are (e.g. ``["rng"]``).
    """

    def __init__(
        self,
        ckpt_dir: str,
        trainer,
        evaluator,
        network,
        optimizer,
        lr_scheduler,
        datasets: Sequence[Any] = (),
        device=None,
        resume_from: str | None = None,
        init_from: str | None = None,
        checkpoint_interval: int = 1,
        checkpoint_n_saved: int = 2,
        score_name: str = "val_psnr",
        is_rank0: bool = True,
        save_kwargs: Mapping[str, Any] | None = None,
        resume_skip: Sequence[str] = (),
    ) -> None:
        self.trainer, self.evaluator, self.network, self.device = trainer, evaluator, network, device
        self.resume_from, self.init_from, self.checkpoint_interval = resume_from, init_from, checkpoint_interval
        self.resume_skip = tuple(resume_skip)
        self.to_save = {"model": network, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "trainer": trainer,
                        "rng": RandomStateCheckpoint(datasets=list(datasets))}
        self.best_model_saver = self.checkpoint_saver = None
        if is_rank0:
            self.best_model_saver = Checkpoint(
                {"model": network}, SafeDiskSaver(dirname=ckpt_dir, require_empty=False, atomic=True),
                filename_pattern="model.pt", n_saved=1, score_function=Checkpoint.get_default_score_fn(score_name))
            self.to_save["best_model"] = self.best_model_saver  # a resumed run replaces model.pt only by a better one
            self.checkpoint_saver = Checkpoint(
                self.to_save, SafeDiskSaver(dirname=ckpt_dir, require_empty=False, atomic=True, **(save_kwargs or {})),
                score_function=lambda engine: engine.state.epoch, score_name="epoch", n_saved=checkpoint_n_saved)

    def attach(self) -> bool:
        """Register the savers, the resume loader, ``KeepNSaved`` and ``RunGuard``; load ``init_from``."""
        if self.best_model_saver is not None:
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self.best_model_saver)
            self.trainer.add_event_handler(Events.EPOCH_COMPLETED(every=self.checkpoint_interval),
                                           self.checkpoint_saver)
        if self.resume_from:
            load = {k: v for k, v in self.to_save.items() if k not in self.resume_skip}
            GroupActionCheckpointLoader(load_path=self.resume_from, load_dict=load,
                                        map_location=self.device).attach(self.trainer)
        # after the resume loader: the periodic saver adopts the resumed run's checkpoint_epoch=N.pt files
        KeepNSaved(self.checkpoint_saver).attach(self.trainer)
        RunGuard().attach(self.trainer)
        if self.init_from is not None:
            load_network_weights(self.network, self.init_from, map_location=self.device)
        return True


# ---- one or several processes (multi_gpu_train.yaml sets distributed: true) -----------------------------------------
def is_rank0() -> bool:
    """True in a single process and on rank 0 of a process group."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` (``cuda:0`` in a single process) with CUDA, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    return torch.device("cpu")


def init_distributed(distributed: bool, device) -> bool:
    """With ``distributed``: join the process group (nccl on CUDA, gloo on CPU), select the device, set up
    ignite's helpers (they create their context on first use, a collective call: set up here on every rank, not
    first in rank 0's checkpoint savers, which would deadlock the other ranks).  Without: nothing."""
    if not distributed:
        return False
    import ignite.distributed

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(device)
    ignite.distributed.sync()
    return True


def close_distributed() -> None:
    """Leave the process group, if there is one: every rank first waits at a barrier, then destroys it, so that no
    rank exits (closing its connections) while another one is still at work: rank 1 skips rank 0's checkpoint and
    file writing and would otherwise leave first.  A guard against a SIGABRT seen once in CI's 2-process gloo test
    (not reproduced locally, its message not captured)."""
    if not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def network_on(network_def: torch.nn.Module, device, distributed: bool = False) -> torch.nn.Module:
    """``network_def`` on ``device``; with ``distributed`` wrapped in ``DistributedDataParallel``."""
    network = network_def.to(device)
    if not distributed:
        return network
    ids = [device] if torch.cuda.is_available() else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)


def sampler(dataset, distributed: bool, shuffle: bool = False, even_divisible: bool = False):
    """MONAI's ``DistributedSampler`` over ``dataset`` with ``distributed`` (each rank its share), else None."""
    if not distributed:
        return None
    from monai.data import DistributedSampler

    return DistributedSampler(dataset, even_divisible=even_divisible, shuffle=shuffle)


# ---- experiment tracking (mlflow.yaml) -----------------------------------------------------------------------------
def mlflow_handler(role: str, tracking_uri: str, experiment_name: str, run_name: str | None = None,
                   artifacts: Any = None, log_interval: int = 1, params: Mapping[str, Any] | None = None):
    """An ``MLFlowHandler`` for ``role`` (``trainer``, ``validator`` or ``evaluator``); None on ranks other than 0.

    The trainer's logs every ``log_interval`` iterations the loss terms and the ALD mask fraction, ``params`` once,
    and closes the run when training completes; the validator's logs the validation metrics of each validation
    (into the trainer's run); the evaluator's the test metrics (its own run).
    """
    from monai.handlers import MLFlowHandler

    if not is_rank0():
        return None
    common = {"tracking_uri": tracking_uri, "experiment_name": experiment_name, "run_name": run_name}
    if role == "trainer":
        return MLFlowHandler(**common, artifacts=artifacts, epoch_log=True, close_on_complete=True,
                             iteration_log=lambda engine, event: event % log_interval == 0,
                             output_transform=loss_terms(LOSS_TERMS + ("mask_fraction",)),
                             experiment_param=dict(params or {}))
    if role == "validator":
        return MLFlowHandler(**common, iteration_log=False)
    if role == "evaluator":
        return MLFlowHandler(**common, artifacts=artifacts, iteration_log=False, close_on_complete=True)
    raise ValueError(f"role must be 'trainer', 'validator' or 'evaluator', got {role!r}.")


# ---- inference and export (inference.yaml, an overlay on train.yaml) ---------------------------------------------
#: the config files of a bundle's inference, export and MONAI Label model, in the order they are read: inference.yaml
#: is an overlay on train.yaml, which defines the network, paths, data and device once
INFERENCE_CONFIGS = ("train.yaml", "inference.yaml")


def inference_configs(bundle_dir: str | os.PathLike) -> list[str]:
    """The ``--config_file`` list of a bundle's inference: ``<bundle_dir>/configs/`` + :data:`INFERENCE_CONFIGS`.

    Example (the ``exporting_rotated`` runner embeds the merged pair)::

        config_file: "$monai_galr.bundle.inference_configs(@bundle_root)"
    """
    return [os.path.join(os.fspath(bundle_dir), "configs", name) for name in INFERENCE_CONFIGS]


def export_rotated(network, rotated_network, ckpt_path: str, filepath: str, input_shape: Sequence[int], device,
                   meta: Mapping[str, Any] | None = None, config_file: str | Sequence[str] | None = None) -> str:
    """Trace ``rotated_network`` (one fixed rotation baked in) with the weights of ``ckpt_path`` and save it.

    ``monai.bundle ckpt_export`` cannot export the wrapper (it would load the checkpoint into it, whose keys carry
    a ``network.`` prefix), so the weights go into ``network``, the wrapper is traced (the network is not
    scriptable), checked against the eager module, and written atomically (``<filepath>.part``, then renamed)
    with ``meta`` (metadata.json) and the config embedded as ``inference.json``: ``config_file`` is one file or the
    ``--config_file`` list (``[train.yaml, inference.yaml]``), merged as MONAI reads it, so the artefact holds the
    whole configuration that built it.
    """
    from monai.bundle import ConfigParser
    from monai.data.torchscript_utils import save_net_with_metadata
    from monai.networks.utils import convert_to_torchscript

    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    load_network_weights(network, ckpt_path, map_location=device)
    traced = convert_to_torchscript(rotated_network, use_trace=True, inputs=[torch.rand(list(input_shape),
                                    device=device)], verify=True, device=device)
    extra = {"inference.json": json.dumps(ConfigParser.load_config_files(config_file)).encode()} if config_file else {}
    save_net_with_metadata(traced, filepath + ".part", include_config_vals=False, meta_values=dict(meta or {}),
                           more_extra_files=extra)
    os.replace(filepath + ".part", filepath)
    return filepath
