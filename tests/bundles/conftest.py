"""Tiny data and settings shared by the bundle-level trust tests (test_resume.py, test_multi_gpu.py).

``tiny_bundle(name)`` gives the bundle's configs folder and command-line overrides under which one training epoch is
two iterations on tiny data (generated once per session), on the CPU, one thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3")


class TinyBundle:
    """One bundle under tiny settings: ``configs`` folder, ``overrides`` (name -> value), ``steps_per_epoch``."""

    def __init__(self, name: str, overrides: dict, steps_per_epoch: int = 2) -> None:
        self.name = name
        self.configs = REPO / "bundles" / name / "configs"
        self.train = str(self.configs / "train.yaml")
        self.meta = str(self.configs / "metadata.json")
        self.overrides = overrides
        self.steps_per_epoch = steps_per_epoch

    def cli(self, **extra) -> list[str]:
        """The overrides (and ``extra``) as ``monai.bundle`` command-line arguments."""
        items = {**self.overrides, **extra}
        return [a for k, v in items.items() for a in (f"--{k}", str(v).replace(" ", ""))]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A function ``name -> TinyBundle``; the data of the 3D bundles is written on first use."""
    made: dict[str, TinyBundle] = {}

    def get(name: str) -> TinyBundle:
        if name in made:
            return made[name]
        common = {"num_threads": 1, "val_interval": 1}
        if name == "rotated_mnist_so2":  # 32 embedded digits, batches of 16
            overrides = {**common, "max_train": 32, "max_val": 16, "max_test": 16, "batch_size": 16}
        elif name == "adrenal_ct_so3":  # 8 / 4 / 4 synthetic 16^3 volumes, batches of 4
            from monai_galr.data import make_synthetic_adrenal

            folder = tmp_path_factory.mktemp("tiny_adrenal")
            make_synthetic_adrenal(folder / "adrenalmnist3d_16.npz", 8, 4, 4, size=16, seed=1)
            overrides = {**common, "dataset_dir": str(folder), "data_size": 16, "spatial_size": [16, 16, 16],
                         "channels": [4, 8], "strides": [2, 1], "latent_channels": 4, "batch_size": 4,
                         "eval_batch_size": 4}
        elif name == "brain_mri_so3":  # 6 demo subjects at 16^3: 4 train / 1 val / 1 test, batches of 2
            from monai_galr.data import make_demo_oasis

            folder = tmp_path_factory.mktemp("tiny_oasis")
            make_demo_oasis(folder, n_subjects=6, seed=0, shape=(16, 16, 16))
            overrides = {**common, "dataset_dir": str(folder), "spatial_size": [16, 16, 16], "channels": [4, 8],
                         "latent_channels": 4, "val_fraction": 0.2, "test_fraction": 0.2, "eval_repeats": 2,
                         "batch_size": 2}
        else:
            raise ValueError(f"unknown bundle {name!r}, expected one of {BUNDLES}.")
        made[name] = TinyBundle(name, overrides)
        return made[name]

    return get


@pytest.fixture
def one_thread():
    """Torch runs on one thread for the test (the bundle figures and exports are compared at one thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
