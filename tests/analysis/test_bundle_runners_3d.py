"""The analysis runner ids of the 3D bundles (adrenal_ct_so3, brain_mri_so3), in-process, on tiny data.

Each bundle runs its ``evaluate.yaml`` studies on 16^3 volumes with a tiny network whose untrained, seeded weights
are built from the bundle's own ``network_def`` and saved as ``models/model.pt`` (no training: seconds). The adrenal
npz files are written here: one with two shape classes (separable: the probe must beat chance by far) and one of
noise volumes with random labels (nothing to find: the probe must stay near chance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from monai.bundle import ConfigParser, run

from monai_galr.data import make_demo_oasis

REPO = Path(__file__).resolve().parents[2]
ADRENAL = REPO / "bundles" / "adrenal_ct_so3" / "configs"
BRAIN = REPO / "bundles" / "brain_mri_so3" / "configs"
A_CONFIGS = [str(ADRENAL / "train.yaml"), str(ADRENAL / "evaluate.yaml")]
B_CONFIGS = [str(BRAIN / "train.yaml"), str(BRAIN / "evaluate.yaml")]
# a fixed half/half split (manual partition) so that both z_v and z_i have channels to probe and to map
NET = {"spatial_size": [16, 16, 16], "channels": [4, 8], "latent_channels": 4, "num_threads": 1, "partition": "manual",
       "varying_fraction": 0.5}
A_TINY = {**NET, "strides": [2, 1], "data_size": 16, "eval_batch_size": 32}  # two stages (the bundle has three)
B_TINY = {**NET, "val_fraction": 0.25, "test_fraction": 0.25}
FIGURE_RUNNERS = ("error_maps", "latent_swap", "latent_magnitudes")

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _run(run_id: str, configs: list[str], root: Path, **override) -> None:
    meta = str(Path(configs[0]).parent / "metadata.json")
    run(run_id=run_id, config_file=configs, meta_file=meta, logging_file=False, bundle_root=str(root), **override)


def _chain(err: BaseException) -> str:
    parts = []
    while err is not None:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


def _no_outputs(folder: Path) -> bool:
    """No result in ``folder`` (the bundle's initialize step may create it, empty, when checking it is writable)."""
    return not folder.exists() or not any(folder.iterdir())


def _save_untrained(configs: list[str], path: Path, **override) -> Path:
    """``{"model": state_dict}`` of the configured ``network_def`` (seed 0), as the bundle's CheckpointSaver writes."""
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update(override)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict()}, path)
    return path


def _adrenal_npz(path: Path, n_train: int, n_test: int, kind: str, seed: int = 0) -> None:
    """An AdrenalMNIST3D-format npz (uint8 (N, 16, 16, 16), labels (N, 1)).

    ``kind="shapes"``: label 1 a large ball (radius 6), label 0 a small one (radius 3), each at a random offset
    and intensity (separable by shape, not by intensity); ``kind="noise"``: uniform noise, random labels.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1).astype(np.float32)
    arrays = {}
    for split, n in (("train", n_train), ("val", 2), ("test", n_test)):
        labels = np.tile([0, 1], n // 2 + 1)[:n]
        rng.shuffle(labels)
        vols = np.zeros((n, 16, 16, 16), np.uint8)
        for i, y in enumerate(labels):
            if kind == "noise":
                vols[i] = rng.integers(0, 256, (16, 16, 16))
            else:
                centre = 7.5 + rng.uniform(-1.5, 1.5, 3)
                radius = 6.0 if y else 3.0
                vols[i][np.linalg.norm(grid - centre, axis=-1) <= radius] = int(rng.integers(150, 256))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = vols, labels.reshape(n, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    img = imread(str(path))  # decodes: a real PNG, not only a header
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and float(img[..., :3].std()) > 0.01


@pytest.fixture(scope="module")
def adrenal(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adrenal")
    _adrenal_npz(root / "shapes" / "adrenalmnist3d_16.npz", 48, 32, "shapes", seed=1)
    _adrenal_npz(root / "noise" / "adrenalmnist3d_16.npz", 80, 80, "noise", seed=2)
    _save_untrained(A_CONFIGS, root / "models" / "model.pt", **A_TINY)
    return root


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brain")
    make_demo_oasis(root / "oasis", n_subjects=8, seed=0, shape=(16, 16, 16))
    _save_untrained(B_CONFIGS, root / "models" / "model.pt", **B_TINY)
    return root


def test_adrenal_probe_separable_shapes_and_noise(adrenal):
    _run("probe", A_CONFIGS, adrenal, dataset_dir=str(adrenal / "shapes"), **A_TINY)
    data = json.loads((adrenal / "eval" / "probes.json").read_text())
    assert data["num_train"] == 48 and data["num_test"] == 32 and data["num_classes"] == 2
    assert data["mask"] == [1.0, 1.0, 0.0, 0.0] and data["partition"] == "manual"
    for part, channels in (("z", 4), ("z_v", 2), ("z_i", 2)):
        r = data["probes"][part]
        assert r["channels"] == channels
        assert all(0.0 <= r[k] <= 1.0 for k in ("accuracy", "precision", "recall", "f1", "auc")), (part, r)
    assert data["probes"]["z"]["chance"] == 0.5
    assert data["probes"]["z"]["accuracy"] >= 0.9 and data["probes"]["z"]["auc"] >= 0.95, data["probes"]["z"]
    md = (adrenal / "eval" / "probes.md").read_text()
    assert md.startswith("| features |") and "\nProtocol: logistic regression" in md
    assert "test split (32 volumes, 16^3)" in md and "Haar-uniform SO(3)" in md

    out = adrenal / "noise_eval"
    _run("probe", A_CONFIGS, adrenal, dataset_dir=str(adrenal / "noise"), output_dir=str(out), **A_TINY)
    z = json.loads((out / "probes.json").read_text())["probes"]["z"]
    assert abs(z["accuracy"] - 0.5) <= 0.15 and abs(z["auc"] - 0.5) <= 0.2, z


def test_adrenal_figure_runners(adrenal):
    out = adrenal / "figures"
    common = {"dataset_dir": str(adrenal / "shapes"), "output_dir": str(out), **A_TINY}
    for run_id in FIGURE_RUNNERS:
        _run(run_id, A_CONFIGS, adrenal, analysis_num_cases=2, analysis_num_pairs=2, magnitude_num_rotations=3,
             **common)
        _check_png(out / f"{run_id}.png")
    maps = json.loads((out / "error_maps.json").read_text())
    assert len(maps["cases"]) == 2 and maps["figure"] == "error_maps.png" and "Haar-uniform" in maps["protocol"]
    for case in maps["cases"]:
        assert 0.0 <= case["mae"] <= case["max_error"] <= 1.0 and "axis-angle" in case["rotation"]
    swap = json.loads((out / "latent_swap.json").read_text())
    assert [(p["a"], p["b"]) for p in swap["pairs"]] == [(0, 1), (2, 3)] and swap["latent_channels"] == 4
    assert all(0.0 <= v <= 1.0 for p in swap["pairs"] for k, v in p.items() if k.startswith("mad_"))
    mag = json.loads((out / "latent_magnitudes.json").read_text())
    assert mag["num_rotations"] == 3 and mag["aligned"] is True and "rotated back by R^-1" in mag["frame"]
    assert mag["varying_channels"] == 2 and "note" not in mag
    for case in mag["cases"]:
        for part in ("z_v", "z_i"):
            assert 0.0 < case[f"mean_abs_{part}"] <= 1.0 and case[f"disagreement_{part}"] >= 0.0, case
    # the command line passes booleans as strings: --magnitude_align false
    _run("latent_magnitudes", A_CONFIGS, adrenal, analysis_num_cases=1, magnitude_num_rotations=2,
         magnitude_align="false", **{**common, "output_dir": str(out / "unaligned")})
    unaligned = json.loads((out / "unaligned" / "latent_magnitudes.json").read_text())
    assert unaligned["aligned"] is False and "NOT rotated back" in unaligned["frame"]
    assert not list(out.glob(".tmp_*"))


def test_adrenal_mismatched_checkpoint_names_file_and_tensors(adrenal):
    out = adrenal / "mismatch"
    for run_id in ("probe", "error_maps"):
        with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the ValueError; the chain is checked
            _run(run_id, A_CONFIGS, adrenal, dataset_dir=str(adrenal / "shapes"), output_dir=str(out),
                 **{**A_TINY, "channels": [8, 8]})
        chain = _chain(info.value)
        assert "does not match the network" in chain and "model.pt" in chain and "size mismatch for" in chain
    assert _no_outputs(out)


def test_brain_figure_runners(brain):
    common = {"dataset_dir": str(brain / "oasis"), **B_TINY}
    for run_id in FIGURE_RUNNERS:
        _run(run_id, B_CONFIGS, brain, magnitude_num_rotations=2, **common)
        _check_png(brain / "eval" / f"{run_id}.png")
    maps = json.loads((brain / "eval" / "error_maps.json").read_text())
    assert len(maps["cases"]) == 2 and all(0.0 <= c["mae"] <= c["max_error"] <= 1.0 for c in maps["cases"])
    assert "test split (2 volumes)" in maps["protocol"]
    swap = json.loads((brain / "eval" / "latent_swap.json").read_text())
    assert len(swap["pairs"]) == 1
    assert all(0.0 <= v <= 1.0 for k, v in swap["pairs"][0].items() if k.startswith("mad_"))
    mag = json.loads((brain / "eval" / "latent_magnitudes.json").read_text())
    assert mag["num_rotations"] == 2 and len(mag["cases"]) == 2 and mag["aligned"] is True


def test_brain_probe_without_labels_is_a_clear_error(brain):
    out = brain / "probe_eval"
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the ValueError; the chain is checked
        _run("probe", B_CONFIGS, brain, dataset_dir=str(brain / "oasis"), output_dir=str(out), **B_TINY)
    chain = _chain(info.value)
    assert "ValueError: dataset has no labels for a probe: train_items item 0 ('OASIS_OAS1_" in chain
    assert "--datalist" in chain
    assert _no_outputs(out)


def test_brain_probe_with_labels_from_a_datalist(brain):
    subjects = sorted((brain / "oasis").glob("OASIS_OAS1_*_MR1"))
    items = [{"image": str(s / "aligned_norm.nii.gz"), "subject": s.name, "label": i % 2} for i, s in
             enumerate(subjects)]
    datalist = brain / "labelled.json"
    datalist.write_text(json.dumps({"training": items[:6], "validation": [], "test": items[6:]}))
    out = brain / "labelled_eval"
    _run("probe", B_CONFIGS, brain, datalist=str(datalist), output_dir=str(out), **B_TINY)
    data = json.loads((out / "probes.json").read_text())
    assert data["num_train"] == 6 and data["num_test"] == 2 and data["num_classes"] == 2
    assert 0.0 <= data["probes"]["z"]["accuracy"] <= 1.0 and data["probes"]["z"]["channels"] == 4
    assert "labelled.json" in (out / "probes.md").read_text()


def test_brain_missing_checkpoint(brain, tmp_path):
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the error; the chain is checked
        _run("latent_swap", B_CONFIGS, brain, dataset_dir=str(brain / "oasis"), ckpt_path=str(tmp_path / "gone.pt"),
             output_dir=str(tmp_path / "eval"), **B_TINY)
    assert "FileNotFoundError: checkpoint file" in _chain(info.value) and "gone.pt" in _chain(info.value)
    assert _no_outputs(tmp_path / "eval")
