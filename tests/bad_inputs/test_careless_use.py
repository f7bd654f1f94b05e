"""What a careless user hits (issue 10): every case ends the output with one line that names the problem.

- bad hyperparameters on the command line stop in ``initialize`` before any data is read or any file is written
  (in-process: :class:`~monai_galr.bundle_checks.BundleError`, one line naming the entry, the range and the value);
- training that cannot succeed or would destroy weights stops before reading data: a resume from the best-weights
  file, a resume into another ``ckpt_dir``, a fresh run over the shipped ``model.pt``; leftovers of a killed save are
  removed at the start;
- bad files at every entry point (training discovery, evaluation datalists, inference inputs, the Deploy app) are
  reported by name: NaN voxels, truncated files, wrong dimensionality;
- a run stopped by a NaN loss, or by a full disk, exits with status 1 and says why (a NaN input is a data problem);
- an overlay config run alone (``inference.yaml`` without ``train.yaml`` first) ends with the two-file
  ``--config_file`` list that fixes it.

``test_last_line`` runs the real command lines (``python -m monai.bundle run ...``) in subprocesses and checks the
exit status and the last line of the output; the other tests call the same code in-process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, run

from monai_galr.bundle_checks import BundleError, check_entries, install_error_report, overlay_fix, root_error

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
MNIST_TINY = {"max_train": 32, "max_val": 16, "max_test": 16, "val_interval": 1, "batch_size": 16, "num_threads": 1}
BRAIN_TINY = {"spatial_size": [8, 8, 8], "channels": [4, 8], "latent_channels": 4, "num_threads": 1}

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def _configs(bundle: str) -> Path:
    return ROOT / "bundles" / bundle / "configs"


def _run(bundle: str, root: Path, run_id: str = "training", config: str | list = "train.yaml", **override):
    files = [str(_configs(bundle) / c) for c in ([config] if isinstance(config, str) else config)]
    run(run_id=run_id, config_file=files if len(files) > 1 else files[0], meta_file=str(_configs(bundle) /
        "metadata.json"), logging_file=False, bundle_root=str(root), **override)


def _volume(path: Path, shape=(12, 12, 12), nan: int = 0, truncate: bool = False) -> Path:
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    data.flat[:nan] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    if truncate:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for chunk in text.splitlines() for line in chunk.split("\r") if line.strip()]
    return lines[-1] if lines else ""


# ---- hyperparameters: one table, checked before any data ------------------------------------------------------------
HYPER = [
    ("rotated_mnist_so2", "val_interval", 0, "expected an integer >= 1"),
    ("rotated_mnist_so2", "batch_size", 0, "expected an integer >= 1"),
    ("rotated_mnist_so2", "learning_rate", -1.0, "expected a finite number > 0"),
    ("rotated_mnist_so2", "max_epochs", -1, "expected an integer >= 1"),
    ("rotated_mnist_so2", "num_workers", -2, "expected an integer >= 0"),
    ("rotated_mnist_so2", "tau", 1.5, "expected a number in (0, 1)"),
    ("rotated_mnist_so2", "lambda_i", -0.1, "expected a finite number >= 0"),
    ("rotated_mnist_so2", "val_fraction", 1.0, "expected a number in [0, 1)"),
    ("rotated_mnist_so2", "checkpoint_n_saved", 0, "expected an integer >= 1"),
    ("rotated_mnist_so2", "max_epochs", 2.5, "expected an integer >= 1"),
    ("rotated_mnist_so2", "train_angles", "c8", "expected one of 'uniform', 'c4'"),
    ("adrenal_ct_so3", "eval_batch_size", 0, "expected an integer >= 1"),
    ("adrenal_ct_so3", "learning_rate", float("nan"), "expected a finite number > 0"),
    ("adrenal_ct_so3", "amp", "yes", "expected True or False (a bool; on the command line True, not true)"),
    ("brain_mri_so3", "eval_repeats", 0, "expected an integer >= 1"),
    ("brain_mri_so3", "cache_num_workers", -1, "expected an integer >= 0"),
    ("brain_mri_so3", "spatial_size", [0, 8, 8], "expected a list of 2 or 3 integers >= 1"),
    ("brain_mri_so3", "check_values", "no", "expected True or False (a bool; on the command line True, not true)"),
]


@pytest.mark.parametrize("bundle,entry,value,expected", HYPER, ids=[f"{b}-{e}={v}" for b, e, v, _ in HYPER])
def test_bad_hyperparameter_stops_before_any_data(bundle, entry, value, expected, tmp_path):
    with pytest.raises(BundleError) as err:
        _run(bundle, tmp_path / "bundle", dataset_dir=str(tmp_path / "never_read"), **{entry: value})
    line = str(err.value).splitlines()[-1]  # (mask_learning_rate follows learning_rate: listed before it)
    assert f"config entry '{entry}' (--{entry}): {expected}, got {value!r}" in line, str(err.value)
    assert not (tmp_path / "bundle").exists()  # nothing built: no folder, no TensorBoard event file


def test_fractions_summing_to_one_and_every_bad_entry_listed():
    with pytest.raises(BundleError, match=r"'val_fraction' \+ 'test_fraction': expected a sum < 1"):
        check_entries(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(BundleError) as err:
        check_entries(batch_size=0, val_interval=0)
    assert str(err.value).splitlines()[1:] == [
        "  config entry 'batch_size' (--batch_size): expected an integer >= 1, got 0 (int).",
        "  config entry 'val_interval' (--val_interval): expected an integer >= 1, got 0 (int).",
    ]
    with pytest.raises(TypeError, match="unknown entries"):  # a misspelt entry in a config is a bug, not a value
        check_entries(batchsize=4)
    assert check_entries(batch_size=4, learning_rate=1e-3, tau=0.5, max_train=None, amp=False)


# ---- training start: resume, shipped weights, leftovers ---------------------------------------------------------------
def _fake_checkpoint(path: Path, best: str | None = "model.pt") -> Path:
    """A resumable-looking checkpoint (what check_training_start reads; never trained from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "optimizer": {}, "trainer": {"epoch": 1}, "best_model": {"_saved": [(1.0, best)]}}, path)
    return path


def test_resume_from_best_weights_is_refused(tmp_path):
    shipped = ROOT / "bundles" / "rotated_mnist_so2" / "models" / "model.pt"
    with pytest.raises(BundleError) as err:
        _run("rotated_mnist_so2", tmp_path, resume_from=str(shipped), **MNIST_TINY)
    assert f"resume_from {str(shipped)!r} is not a resumable checkpoint" in str(err.value)
    assert "network weights only" in str(err.value) and "--init_from" in str(err.value)
    assert not list(tmp_path.glob("logs/events.*"))  # stopped before the summary writer was built


def test_resume_into_another_ckpt_dir_is_refused(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "run1" / "checkpoint_epoch=1.pt")
    other = tmp_path / "run2"
    with pytest.raises(BundleError) as err:
        _run("rotated_mnist_so2", tmp_path, resume_from=str(ckpt), ckpt_dir=str(other), **MNIST_TINY)
    assert f"best model 'model.pt' is not in ckpt_dir {str(other)!r}" in str(err.value)
    assert f"--ckpt_dir {str(tmp_path / 'run1')!r}" in str(err.value)
    assert not list(tmp_path.glob("logs/events.*"))  # stopped before the summary writer was built


@pytest.mark.parametrize("existing", ["model.pt", "checkpoint_epoch=3.pt"])
def test_fresh_run_never_replaces_existing_weights(existing, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "bundles" / "rotated_mnist_so2" / "models" / "model.pt", models / existing)
    before = (models / existing).read_bytes()
    with pytest.raises(BundleError) as err:
        _run("rotated_mnist_so2", tmp_path, **MNIST_TINY)
    assert f"ckpt_dir {str(models)!r} already holds ['{existing}']" in str(err.value)
    assert "--init_from" in str(err.value) and "--overwrite True" in str(err.value)
    assert (models / existing).read_bytes() == before and not list(tmp_path.glob("logs/events.*"))


def test_init_from_and_resume_from_exclude_each_other(tmp_path):
    with pytest.raises(BundleError, match="exclude each other"):
        _run("rotated_mnist_so2", tmp_path, resume_from="a.pt", init_from="b.pt", **MNIST_TINY)
    with pytest.raises(BundleError, match=r"init_from 'missing\.pt' does not exist"):
        _run("rotated_mnist_so2", tmp_path, init_from="missing.pt", **MNIST_TINY)


def test_fine_tune_then_leftovers_and_n_saved(tmp_path):
    """--init_from a model.pt into a run folder (the source untouched); a resume removes a killed save's leftovers
    and keeps checkpoint_n_saved files (the epoch 1 file is deleted when epoch 3 is written)."""
    _run("rotated_mnist_so2", tmp_path / "first", max_epochs=1, **MNIST_TINY)
    source = tmp_path / "first" / "models" / "model.pt"  # stands in for the shipped weights
    before = source.read_bytes()
    models = tmp_path / "runs" / "ft" / "models"
    _run("rotated_mnist_so2", tmp_path, init_from=str(source), ckpt_dir=str(models), max_epochs=1,
         **{**MNIST_TINY, "lr_scheduler#T_max": 3})
    assert source.read_bytes() == before
    assert sorted(os.listdir(models)) == ["checkpoint_epoch=1.pt", "model.pt"]
    (models / "tmpab12cd34").write_bytes(b"")  # ignite's name for a temporary file of a killed save
    (models / ".partial-model.pt-x1y2").write_bytes(b"\0" * 10)  # SafeDiskSaver's
    _run("rotated_mnist_so2", tmp_path, ckpt_dir=str(models), max_epochs=3,
         resume_from=str(models / "checkpoint_epoch=1.pt"), **MNIST_TINY)
    assert sorted(os.listdir(models)) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt", "model.pt"]


# ---- files: every entry point names the bad file ----------------------------------------------------------------------
def test_brain_discovery_leaves_out_nan_and_truncated_subjects(tmp_path):
    from monai_galr.data import make_demo_oasis

    root = tmp_path / "oasis"
    make_demo_oasis(root, n_subjects=6, seed=0, shape=(12, 12, 12))
    subjects = sorted(p.name for p in root.glob("OASIS_OAS1_*_MR1"))
    _volume(root / subjects[0] / "aligned_norm.nii.gz", nan=12 ** 3)  # all NaN
    _volume(root / subjects[1] / "aligned_norm.nii.gz", truncate=True)
    parser = ConfigParser()
    parser.read_config(str(_configs("brain_mri_so3") / "train.yaml"))
    parser.update({"dataset_dir": str(root), "bundle_root": str(tmp_path)})
    splits = parser.get_parsed_content("splits")  # check_values is true by default: every voxel read once
    kept = {d["subject"] for s in splits.values() for d in s}
    assert kept == set(subjects[2:])


@pytest.mark.parametrize("case", ["partial_nan", "truncated", "2d"])
def test_brain_evaluation_names_the_bad_file(case, tmp_path):
    good = [_volume(tmp_path / f"s{i}.nii.gz") for i in range(2)]
    bad = tmp_path / f"{case}.nii.gz"
    if case == "2d":
        nib.save(nib.Nifti1Image(np.ones((12, 12), np.float32), np.eye(4)), str(bad))
    else:
        _volume(bad, nan=5 if case == "partial_nan" else 0, truncate=case == "truncated")
    datalist = tmp_path / "datalist.json"
    datalist.write_text(
        '{"training": [{"image": "%s"}], "validation": [{"image": "%s"}], "test": [{"image": "%s"}]}'
        % (good[0], good[1], bad))
    with pytest.raises(Exception) as err:  # noqa: PT011 - MONAI wraps the dataset's error
        _run("brain_mri_so3", tmp_path, run_id="evaluating", config=["train.yaml", "evaluate.yaml"],
             datalist=str(datalist), **BRAIN_TINY)
    error, components = root_error(err.value)
    expected = {"partial_nan": "5 non-finite (NaN/inf) voxel(s)", "truncated": "cannot be read: EOFError",
                "2d": "expected a 3D volume, got an array of shape (12, 12)"}[case]
    assert f"image file {str(bad)!r}" in str(error) and expected in str(error), repr(error)
    assert components and components[-1].endswith("CacheDataset")


def test_deploy_loader_names_the_bad_file(tmp_path):
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from galr_app.operators import NiftiVolumeLoader
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    loader = NiftiVolumeLoader([8, 8, 8])
    assert loader(_volume(tmp_path / "good.nii.gz"))[0].shape == (1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=r"partial_nan\.nii\.gz': 3 non-finite"):
        loader(_volume(tmp_path / "partial_nan.nii.gz", nan=3))
    with pytest.raises(ValueError, match=r"truncated\.nii\.gz' cannot be read"):
        loader(_volume(tmp_path / "truncated.nii.gz", truncate=True))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_deploy_app_checks_every_input_before_the_first(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from galr_app import app as galr
        from galr_app.export import export_deploy_module
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    inputs = tmp_path / "in"
    _volume(inputs / "a_good.nii.gz")
    bad = _volume(inputs / "b_partial_nan.nii.gz", nan=2)
    missing_model = galr.main(["-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "none.ts")])
    assert missing_model == 1 and _last_line(capsys.readouterr().err).startswith("ERROR: ")
    model = export_deploy_module(ROOT / "bundles" / "adrenal_ct_so3", tmp_path / "model_deploy.ts")
    assert galr.main(["-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(model)]) == 1
    assert _last_line(capsys.readouterr().err) == f"input[1] {bad}: 2 non-finite (NaN/inf) voxel(s) of 1728"
    assert not (tmp_path / "out").exists()  # nothing processed: the good file comes first, the check before it


# ---- the mechanisms, one by one ------------------------------------------------------------------------------------
def test_safe_disk_saver_names_file_and_folder_and_leaves_nothing(tmp_path):
    import errno

    from monai_galr.handlers import SafeDiskSaver

    (tmp_path / "model.pt").write_bytes(b"old weights")
    saver = SafeDiskSaver(tmp_path)

    def full(obj, f, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(BundleError) as err:
        saver._save_func({"x": torch.zeros(1)}, tmp_path / "model.pt", full)
    assert str(err.value) == (
        f"ERROR: cannot write checkpoint {str(tmp_path / 'model.pt')!r} in ckpt_dir {str(tmp_path)!r}: OSError: "
        "[Errno 28] No space left on device. The files already in ckpt_dir are intact; free space (or fix the "
        "folder), or choose another --ckpt_dir, then continue with --resume_from <the newest checkpoint_epoch=N.pt>.")
    assert os.listdir(tmp_path) == ["model.pt"] and (tmp_path / "model.pt").read_bytes() == b"old weights"
    saver._save_func({"x": torch.zeros(1)}, tmp_path / "model.pt", torch.save)  # a working save replaces it
    assert torch.load(tmp_path / "model.pt", weights_only=True)["x"].shape == (1,)
    assert oct(os.stat(tmp_path / "model.pt").st_mode & 0o044) == oct(0o044)  # not mkstemp's private 0600
    saver.remove("gone.pt")  # a file already gone is not an error


@pytest.mark.parametrize("nan_input", [True, False])
def test_nan_guard_tells_a_data_problem_from_a_diverged_run(nan_input):
    from ignite.engine import Engine

    from monai_galr.bundle_checks import check_run_completed
    from monai_galr.handlers import TerminateOnNan

    image = torch.ones(3, 1, 4, 4)
    if nan_input:
        image[1, 0, 2, 2] = float("nan")
    batch = {"image": image, "subject": ["OAS1_0001", "OAS1_0002", "OAS1_0003"]}
    engine = Engine(lambda e, b: {"loss": torch.tensor(float("nan")), "image": b["image"]})
    TerminateOnNan().attach(engine)
    engine.run([batch, batch], max_epochs=2)
    assert engine.state.iteration == 1
    with pytest.raises(BundleError) as err:
        check_run_completed(engine)
    if nan_input:
        assert "holds 1 non-finite (NaN/inf) value(s) (subject OAS1_0002): a data problem, not the learning rate" in (
            str(err.value))
    else:
        assert "The input batch is finite, so the optimisation diverged" in str(err.value)
        assert "lower learning_rate" in str(err.value)
    finished = Engine(lambda e, b: {"loss": torch.tensor(1.0)})
    finished.run([batch], max_epochs=1)
    assert check_run_completed(finished)


def test_error_report_skips_monai_wrappers():
    try:
        try:
            try:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            except EOFError as e:
                raise ValueError("image file '/d/s1.nii.gz' cannot be read: EOFError: ...") from e
        except ValueError as e:
            raise RuntimeError("applying transform <LoadCheckedImaged>") from e
    except RuntimeError as e:
        try:
            raise RuntimeError("Failed to instantiate component 'monai.data.CacheDataset' with keywords: data") from e
        except RuntimeError as outer:
            error, components = root_error(outer)
    assert isinstance(error, ValueError) and "s1.nii.gz" in str(error)  # the clear error, not the library's EOFError
    assert components == ["monai.data.CacheDataset"]


def test_overlay_run_alone_names_the_config_list(capsys):
    """inference.yaml is an overlay on train.yaml: alone, MONAI's missing reference becomes the fix, in one line."""
    path = "bundles/brain_mri_so3/configs/inference.yaml"
    folder = "bundles/brain_mri_so3/configs"
    fix = f"--config_file \"['{folder}/train.yaml','{folder}/inference.yaml']\""
    for argv in (["run", "inferring", "--config_file", path], ["run", "inferring", f"--config_file={path}"]):
        text = overlay_fix("spatial_size", "inference.yaml", "train.yaml", argv)
        assert text.startswith("inference.yaml is an overlay on train.yaml (`@spatial_size` is defined there)")
        assert text.endswith(fix), text
    # without the overlay's path on the command line (in-process), the folder is named generically
    assert overlay_fix("x", "inference.yaml", "train.yaml", []).endswith(
        "--config_file \"['<bundle>/configs/train.yaml','<bundle>/configs/inference.yaml']\"")
    with pytest.raises(ValueError, match="give overlay and base together"):
        install_error_report(overlay="inference.yaml")
    previous = sys.excepthook
    try:
        install_error_report(overlay="inference.yaml", base="train.yaml")
        try:
            raise RuntimeError("Failed to evaluate ConfigExpression") from ValueError(
                "the referring item `@num_threads` is not defined in the config content.")
        except RuntimeError as err:
            sys.excepthook(type(err), err, err.__traceback__)
        err_text = capsys.readouterr().err
        assert _last_line(err_text).startswith("ERROR: inference.yaml is an overlay on train.yaml (`@num_threads`")
        assert "Traceback" not in err_text
        install_error_report()  # a config that is no overlay: the same error is reported as it is
        try:
            raise ValueError("the referring item `@num_threads` is not defined in the config content.")
        except ValueError as err:
            sys.excepthook(type(err), err, err.__traceback__)
        assert _last_line(capsys.readouterr().err) == (
            "ERROR: ValueError: the referring item `@num_threads` is not defined in the config content.")
    finally:
        install_error_report()
        sys.excepthook = previous


# ---- the real command lines: exit status and last line --------------------------------------------------------------
_DISK_FULL = """
import errno, sys, torch
def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
torch.save = full
from monai.bundle.scripts import run
run(run_id="training", config_file=sys.argv[1], bundle_root=sys.argv[2], **dict(zip(sys.argv[3::2], map(eval, sys.argv[4::2]))))
"""


def _tiny(**extra) -> list[str]:
    return [a for k, v in {**MNIST_TINY, **extra}.items() for a in (f"--{k}", str(v).replace(" ", ""))]


def _case(name: str, tmp: Path) -> tuple[list[str], list[str]]:
    """(command, fragments the last line must hold) of one careless-use case."""
    bundle = lambda b: ROOT / "bundles" / b / "configs"  # noqa: E731
    mnist = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
             str(bundle("rotated_mnist_so2") / "train.yaml"), "--bundle_root", str(tmp)]
    brain_pair = f"['{bundle('brain_mri_so3') / 'train.yaml'}','{bundle('brain_mri_so3') / 'inference.yaml'}']"
    brain_inf = [sys.executable, "-m", "monai.bundle", "run", "inferring", "--config_file", brain_pair,
                 "--output_dir", str(tmp / "out")]
    if name == "val_interval_0":
        return mnist + _tiny(val_interval=0), ["config entry 'val_interval'", "expected an integer >= 1, got 0"]
    if name == "learning_rate_negative":
        return mnist + _tiny(learning_rate=-1), ["config entry 'learning_rate'", "got -1"]
    if name == "nan_input_training":
        nan = "$monai.transforms.Lambdad(keys='image',func=lambda x: x * float('nan'))"
        return mnist + _tiny(max_epochs=2) + ["--overlay_train", nan], [
            "loss is NaN or infinite", "The input batch itself holds", "a data problem, not the learning rate"]
    if name == "resume_from_best_weights":
        shipped = ROOT / "bundles" / "rotated_mnist_so2" / "models" / "model.pt"
        return mnist + _tiny(resume_from=str(shipped)), ["is not a resumable checkpoint", "--init_from"]
    if name == "fresh_run_over_shipped_weights":
        (tmp / "models").mkdir(parents=True)
        shutil.copy(ROOT / "bundles" / "rotated_mnist_so2" / "models" / "model.pt", tmp / "models" / "model.pt")
        return mnist + _tiny(), [f"ckpt_dir {str(tmp / 'models')!r} already holds ['model.pt']"]
    if name == "inference_partial_nan":
        path = _volume(tmp / "partial_nan.nii.gz", nan=4)
        return brain_inf + ["--input_files", f"['{path}']"], [f"{path}: 4 non-finite (NaN/inf) voxel(s)"]
    if name == "inference_without_train":  # the old single-file command: inference.yaml is an overlay now
        return brain_inf[:6] + [str(bundle("brain_mri_so3") / "inference.yaml")] + brain_inf[7:], [
            "inference.yaml is an overlay on train.yaml", f'--config_file "{brain_pair}"']
    if name == "inference_truncated":
        path = _volume(tmp / "truncated.nii.gz", truncate=True)
        return brain_inf + ["--input_files", f"['{path}']"], [f"{path}: cannot be read by nibabel"]
    if name == "disk_full":
        return [sys.executable, "-c", _DISK_FULL, str(bundle("rotated_mnist_so2") / "train.yaml"), str(tmp),
                *[str(a) for k, v in {**MNIST_TINY, "max_epochs": 1}.items() for a in (k, repr(v))]], [
            f"cannot write checkpoint {str(tmp / 'models' / 'model.pt')!r} in ckpt_dir {str(tmp / 'models')!r}",
            "No space left on device"]
    raise ValueError(name)


CASES = ["val_interval_0", "learning_rate_negative", "nan_input_training", "resume_from_best_weights",
         "fresh_run_over_shipped_weights", "inference_partial_nan", "inference_without_train", "inference_truncated",
         "disk_full"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_last_line(name, tmp_path):
    cmd, fragments = _case(name, tmp_path)
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    last = _last_line(proc.stderr)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert all(f in last for f in fragments), (last, proc.stderr[-3000:])
    # the error is shown once: no traceback for a BundleError, at most the real error's for the others
    assert proc.stderr.count("Traceback (most recent call last)") <= 1, proc.stderr[-6000:]
    print(f"{name}: {last}")


# ---- torchrun: a NaN or a failed save on one rank stops every rank, promptly, with the message -----------------------
TORCHRUN = {
    # rank 1 alone sees a NaN batch: both ranks stop at iteration 1 (not at the process group's 30 min timeout)
    "nan_on_rank1": (["--overlay_train",
                      "$monai.transforms.Lambdad(keys='image', func=lambda x: x * float('nan') if "
                      "torch.distributed.get_rank() == 1 else x)"],
                     ["loss is NaN or infinite", "a data problem, not the learning rate"]),
    # rank 0 alone writes checkpoints: its periodic save fails (a torch.save error), every rank stops after epoch 1
    "save_fails_on_rank0": (["--checkpointing#save_kwargs", "$dict(pickle_module=None)"],
                            ["training stopped at epoch 1: cannot write checkpoint", "checkpoint_epoch=1.pt", "(rank 0)"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TORCHRUN))
def test_torchrun_one_rank_fails_every_rank_stops(name, tmp_path):
    extra, fragments = TORCHRUN[name]
    configs = _configs("rotated_mnist_so2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "--max_restarts", "0", "-m", "monai.bundle", "run", "training", "--config_file",
           repr([str(configs / "train.yaml"), str(configs / "multi_gpu_train.yaml")]), "--bundle_root", str(tmp_path),
           *_tiny(max_epochs=3), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stderr[-3000:]
    ends = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(ends) == 2, proc.stderr[-6000:]  # every rank ends with the message (torchrun's summary follows)
    assert all(f in line for f in fragments for line in ends), ends
    if name == "nan_on_rank1":  # rank 1 reports its own batch, rank 0 names the rank that stopped it
        assert sum(line.startswith("ERROR: stopped because of rank 1: TerminateOnNan") for line in ends) == 1, ends
    assert "timed out" not in proc.stderr.lower() and "Timeout" not in proc.stderr
    assert not list(tmp_path.glob("models/checkpoint_epoch=2.pt"))
    print(f"{name}: {ends[0]}")
