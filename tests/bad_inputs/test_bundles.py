"""Bad inputs through the bundles' configs (``monai.bundle.run`` / ``ConfigParser`` with tiny overrides).

Each run fails before any training step, so these stay fast.  MONAI wraps a config expression's error in a
``RuntimeError("Failed to evaluate ...")`` / ``("Failed to instantiate ...")`` whose ``__cause__`` chain (printed by
Python under "The above exception was the direct cause") ends at the clear error checked here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser, run

ROOT = Path(__file__).resolve().parents[2]


def _configs(bundle: str) -> Path:
    return ROOT / "bundles" / bundle / "configs"


def _cause(exc: BaseException, kind: type | tuple[type, ...]) -> BaseException:
    """The first ``kind`` error in the ``__cause__`` chain of ``exc`` (MONAI's wrappers come first)."""
    chain = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    found = [e for e in chain if isinstance(e, kind) and type(e) is not RuntimeError]
    assert found, f"no {kind} in the chain {[repr(e) for e in chain]}"
    return found[0]


def _run(bundle: str, bundle_root: Path, run_id: str = "training", config: str = "train.yaml", **override):
    configs = _configs(bundle)
    run(
        run_id=run_id,
        config_file=str(configs / config),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        bundle_root=str(bundle_root),
        num_threads=1,
        **override,
    )


def test_brain_spatial_size_not_divisible_by_strides(tmp_path):
    with pytest.raises(Exception) as err:
        _run("brain_mri_so3", tmp_path, spatial_size=[6, 6, 6], strides=[2, 2], channels=[4, 8], latent_channels=4)
    cause = _cause(err.value, ValueError)
    assert "spatial_size spatial size (6, 6, 6) must be a positive multiple of the total stride 4 (strides (2, 2))" in (
        str(cause)
    )


def test_adrenal_spatial_size_not_divisible_by_strides(tmp_path):
    # adrenal_ct_so3 has no check in `initialize` (yet): the network's own check stops the first step, naming the shape
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 8, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.zeros((n, 1), np.uint8)
    np.savez(tmp_path / "adrenalmnist3d_8.npz", **arrays)
    with pytest.raises(Exception) as err:
        _run("adrenal_ct_so3", tmp_path, dataset_dir=str(tmp_path), data_size=8, spatial_size=[3, 3, 3],
             strides=[2, 1], channels=[4, 8], latent_channels=4, batch_size=2, max_epochs=1)
    cause = _cause(err.value, ValueError)
    assert "spatial size (3, 3, 3) must be a positive multiple of the total stride 2 (strides (2, 1))" in str(cause)


def test_brain_empty_dataset_dir(tmp_path):
    empty = tmp_path / "oasis"
    empty.mkdir()
    with pytest.raises(Exception) as err:
        _run("brain_mri_so3", tmp_path, dataset_dir=str(empty), spatial_size=[8, 8, 8], channels=[4, 8],
             latent_channels=4)
    cause = _cause(err.value, ValueError)
    assert f"no OASIS subject found in {str(empty)!r}: expected folders OASIS_OAS1_*_MR1/ holding " in str(cause)


def test_adrenal_empty_split(tmp_path):
    arrays = {
        "train_images": np.zeros((0, 8, 8, 8), np.uint8),
        "train_labels": np.zeros((0, 1), np.uint8),
        "val_images": np.zeros((1, 8, 8, 8), np.uint8),
        "val_labels": np.zeros((1, 1), np.uint8),
        "test_images": np.zeros((1, 8, 8, 8), np.uint8),
        "test_labels": np.zeros((1, 1), np.uint8),
    }
    np.savez(tmp_path / "adrenalmnist3d_8.npz", **arrays)
    with pytest.raises(Exception) as err:
        _run("adrenal_ct_so3", tmp_path, dataset_dir=str(tmp_path), data_size=8, spatial_size=[8, 8, 8],
             channels=[4, 8], strides=[2, 1], latent_channels=4)
    cause = _cause(err.value, ValueError)
    assert "adrenalmnist3d_8.npz' key 'train_images': expected at least one volume, got an empty split" in str(cause)


def test_mnist_empty_dataset_dir(tmp_path):
    empty = tmp_path / "mnist"
    empty.mkdir()
    with pytest.raises(Exception) as err:
        _run("rotated_mnist_so2", tmp_path, dataset_dir=str(empty), channels=[4, 8], latent_channels=4)
    cause = _cause(err.value, FileNotFoundError)
    assert f"dataset_dir {str(empty)!r} holds no MNIST data: looked for 'mnist.npz' or the IDX files" in str(cause)


@pytest.mark.parametrize("bundle", ["rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3"])
def test_ckpt_dir_below_a_file(tmp_path, bundle):
    # train.yaml's check_setup (initialize) tries the output folders before any data is read: the run stops at
    # once, naming the config entry and the folder
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("x")
    ckpt_dir = str(blocker / "models")
    with pytest.raises(Exception) as err:
        strides = {"adrenal_ct_so3": [2, 1]}.get(bundle, [1, 1])
        _run(bundle, tmp_path, ckpt_dir=ckpt_dir, dataset_dir=str(tmp_path / "never_read"), channels=[4, 8],
             strides=strides, latent_channels=4)
    cause = _cause(err.value, ValueError)
    assert f"ckpt_dir {ckpt_dir!r} is not a writable folder ({str(blocker)!r} is a file" in str(cause), repr(cause)


# ---- the config lines the bundles use: they resolve and fail clearly ---------------------------------------------
def test_config_check_of_ckpt_dir(tmp_path):
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("x")
    parser = ConfigParser()
    parser.read_config(str(_configs("brain_mri_so3") / "train.yaml"))
    parser.update({"ckpt_dir": str(blocker / "models"),
                   "check_ckpt_dir": "$monai_galr.data.ensure_writable_dir(@ckpt_dir, name='ckpt_dir')"})
    with pytest.raises(RuntimeError) as err:
        parser.get_parsed_content("check_ckpt_dir")
    cause = _cause(err.value, ValueError)
    assert f"ckpt_dir {str(blocker / 'models')!r} is not a writable folder ({str(blocker)!r} is a file" in str(cause)


def test_config_check_of_inference_input_files(tmp_path):
    parser = ConfigParser()
    parser.read_config([str(_configs("brain_mri_so3") / f) for f in ("train.yaml", "inference.yaml")])
    missing = str(tmp_path / "OASIS_OAS1_0001_MR1" / "aligned_norm.nii.gz")
    parser.update({"input_files": [missing],
                   "items": "$monai_galr.data.check_image_files(@input_files, spatial_dims=@spatial_dims)"})
    with pytest.raises(RuntimeError) as err:
        parser.get_parsed_content("items")
    cause = _cause(err.value, FileNotFoundError)
    assert f"input_files[0] {missing}: file does not exist" in str(cause)
