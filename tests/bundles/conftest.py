"""Tiny data and settings shared by the bundle-level trust tests (test_resume.py, test_multi_gpu.py), and the
trivial-prediction bounds shared by the shipped-weights regression and the end-to-end bundle tests.

``tiny_bundle(name)`` gives the bundle's configs folder and command-line overrides under which one training epoch is
two iterations on tiny data (generated once per session), on the CPU, one thread.

``baselines`` (:class:`Baselines`) scores predictions that need no model on the batches an evaluation saw (all zeros,
0.5, each target's own mean, the unrotated input) and checks that a model beats them; ``baselines.record`` keeps
those batches (the evaluator's inputs, targets and predictions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

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


class Baselines:
    """Trivial predictions and the bounds a trained model must pass on the same batches (PSNR, data range 1)."""

    @staticmethod
    def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B,)`` PSNR with data range 1 (the protocol's: MONAI's ``PSNRMetric(max_val=1)`` per image)."""
        mse = ((pred.double() - target.double()) ** 2).flatten(1).mean(1)
        return -10.0 * torch.log10(mse)

    @staticmethod
    def trivial_predictions(image: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions that need no model: all zeros, 0.5, each target's own mean, the unrotated input."""
        mean = target.flatten(1).mean(1).view(-1, *[1] * (target.ndim - 1)).expand_as(target)
        return {"zeros": torch.zeros_like(target), "half": torch.full_like(target, 0.5), "target_mean": mean.clone(),
                "input": image.clone()}

    @classmethod
    def trivial_psnr(cls, image: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Mean PSNR of each trivial prediction on this batch."""
        trivial = cls.trivial_predictions(image, target)
        return {k: float(cls.psnr_per_image(p, target).mean()) for k, p in trivial.items()}

    @classmethod
    def check_bounds(cls, psnr: float, image: torch.Tensor, target: torch.Tensor, margin_db: float, floor_db: float,
                     skip: tuple[str, ...] = ()) -> None:
        """Raise ``AssertionError`` unless ``psnr`` beats every trivial prediction (but ``skip``) by ``margin_db`` and
        ``floor_db``."""
        assert math.isfinite(psnr), f"PSNR {psnr} is not finite"
        assert psnr >= floor_db, f"PSNR {psnr:.2f} dB under the absolute floor {floor_db} dB"
        for name, value in cls.trivial_psnr(image, target).items():
            if name in skip:
                continue
            assert psnr >= value + margin_db, (
                f"PSNR {psnr:.2f} dB does not beat the trivial '{name}' prediction ({value:.2f} dB) by {margin_db} dB"
            )

    @staticmethod
    def record(monkeypatch, replace: Callable | None = None) -> dict[str, list[torch.Tensor]]:
        """Keep every batch ``GroupActionEvaluator`` sees (``image``, ``label``, ``pred``, ``pred_identity``; CPU).

        ``replace(image, target, pred) -> pred`` stands in for the network's output (a fake network) before the
        metrics.  Returns the lists, filled as evaluations run (``torch.cat`` them).
        """
        from monai_galr.engines import GroupActionEvaluator

        seen: dict[str, list[torch.Tensor]] = {"image": [], "label": [], "pred": [], "pred_identity": []}
        original = GroupActionEvaluator._iteration

        def spy(self, engine, batch):
            out = original(self, engine, batch)
            if replace is not None:
                out["pred"] = out["pred_identity"] = replace(out["image"], out["label"], out["pred"])
            for key in seen:
                seen[key].append(out[key].detach().float().cpu())
            return out

        monkeypatch.setattr(GroupActionEvaluator, "_iteration", spy)
        return seen


@pytest.fixture(scope="session")
def baselines() -> type[Baselines]:
    """:class:`Baselines`: the trivial predictions, their PSNR, the bounds, and ``record`` (the evaluated batches)."""
    return Baselines
