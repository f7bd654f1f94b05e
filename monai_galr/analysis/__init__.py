"""Paper-style studies of a trained group-action autoencoder: linear probes, error maps, latent swap, magnitudes,
and the threshold-sweep / variant tables built from existing result JSONs.

Each study is a function ``run_*`` that a bundle's ``evaluate.yaml`` exposes as a runner id (the same four ids,
``probe``, ``error_maps``, ``latent_swap``, ``latent_magnitudes``, in every bundle, 2D and 3D) and that writes JSON,
a Markdown table or PNG figures (matplotlib, Agg; the three orthogonal mid-slices for 3D) into the eval folder,
all at the end of the study and atomically (:func:`~monai_galr.utils.write_outputs_atomic`).

The four item studies are evaluator runs (:func:`~monai_galr.analysis.utils.run_study`): the engines'
``GroupActionEvaluator`` and ``PrepareGroupActionBatch`` over the items and the evaluation transform, the weights
loaded by MONAI's ``CheckpointLoader`` when the run starts, and each study's collection done by a handler over
``engine.state.output``; there is no second data, checkpoint or forward path.
"""

from __future__ import annotations

from monai_galr.analysis.figures import error_map_figure, run_error_maps
from monai_galr.analysis.magnitudes import (
    latent_magnitude_maps,
    rotation_averaged_maps,
    rotation_set,
    run_latent_magnitudes,
)
from monai_galr.analysis.probes import (
    block_position_target,
    check_grid,
    check_labels,
    extract_features,
    item_key_target,
    linear_probe,
    probe_table,
    run_probes,
)
from monai_galr.analysis.swap import run_latent_swap, swap_latents
from monai_galr.analysis.sweep import check_taus, collect_variant_results, run_sweep, tau_sweep_figure, variant_table
from monai_galr.analysis.utils import write_outputs_atomic

__all__ = [
    "check_labels",
    "check_taus",
    "collect_variant_results",
    "error_map_figure",
    "extract_features",
    "latent_magnitude_maps",
    "linear_probe",
    "probe_table",
    "rotation_averaged_maps",
    "rotation_set",
    "run_error_maps",
    "run_latent_magnitudes",
    "run_latent_swap",
    "run_probes",
    "block_position_target",
    "check_grid",
    "item_key_target",
    "run_sweep",
    "swap_latents",
    "tau_sweep_figure",
    "variant_table",
    "write_outputs_atomic",
]
