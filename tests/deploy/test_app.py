"""The deploy example (deploy/galr_app) end to end on a generated volume, without the MONAI Deploy App SDK.

The adrenal bundle's shipped weights are exported with ``deploy/galr_app/export.py`` (traced encode / split /
apply_action / decode); the app reads a generated NIfTI volume of another size, rotates it in latent space and
writes NIfTI plus a JSON of features.  Everything is checked against the eager network.  The SDK path runs only
where ``monai-deploy-app-sdk`` imports (it needs Holoscan; see deploy/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_galr.bundle import inference_configs
from monai_galr.data import save_synthetic_adrenal_nifti
from monai_galr.handlers import load_network_weights
from monai_galr.networks import RotatedReconstruction
from monai_galr.transforms import GroupElement

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "adrenal_ct_so3"
DEPLOY = REPO / "deploy"
EULER = [30.0, 45.0, 60.0]

sys.path.insert(0, str(DEPLOY))
from galr_app import app as galr  # noqa: E402
from galr_app.export import DEPLOY_METHODS, export_deploy_module  # noqa: E402
from galr_app.operators import GalrInference, NiftiVolumeLoader  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
    pytest.mark.skipif(not (BUNDLE / "models" / "model.pt").is_file(), reason="adrenal_ct_so3 weights absent"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return export_deploy_module(BUNDLE, tmp_path_factory.mktemp("model") / "model_deploy.ts")


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    # 48^3, not the network's 64^3: the loader resizes it onto the network grid
    return Path(save_synthetic_adrenal_nifti(tmp_path_factory.mktemp("in") / "case.nii.gz", size=48, seed=3))


def _eager() -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(inference_configs(BUNDLE))  # train.yaml, then its overlay inference.yaml
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(BUNDLE / "models" / "model.pt"), map_location="cpu")
    return net.eval()


def test_export_embeds_methods_and_metadata(model_file):
    extra = {"galr_deploy.json": "", "metadata.json": "", "inference.json": ""}
    module = torch.jit.load(str(model_file), _extra_files=extra)
    info = json.loads(extra["galr_deploy.json"])
    assert info["methods"] == list(DEPLOY_METHODS) and all(hasattr(module, m) for m in DEPLOY_METHODS)
    assert info["spatial_shape"] == [64, 64, 64] and info["latent_shape"] == [32, 10, 169]  # harmonic: channels, shells, (lmax+1)^2
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert json.loads(extra["metadata.json"])["name"] == meta["name"]
    # the bundle's inference pair, merged: the exported file is self-contained
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_files(inference_configs(BUNDLE))
    assert not list(model_file.parent.glob("*.part"))


def test_pipeline_matches_eager_network(model_file, volume, tmp_path):
    written = galr.run_pipeline(volume, tmp_path / "out", model_file, euler=EULER)
    assert len(written) == 1
    paths = written[0]
    assert Path(paths["prediction"]).name == "case_pred_rot30_45_60.nii.gz"
    pred_img = nib.load(paths["prediction"])
    pred = np.asarray(pred_img.dataobj, np.float32)
    x = np.asarray(nib.load(paths["input"]).dataobj, np.float32)
    assert pred.shape == x.shape == (64, 64, 64)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5

    net = _eager()
    xt = torch.as_tensor(x)[None, None]
    rotation = GroupElement(3, euler=EULER, convention="ZYX")()
    with torch.no_grad():
        expected = RotatedReconstruction(net, rotation)(xt)[0, 0].numpy()
        z = net.encode(xt)
        mask = net.ald.hard_mask().numpy() > 0.5
    np.testing.assert_allclose(pred, expected, atol=1e-4)
    assert (pred == 0).any() and pred.min() >= 0.0  # the straight-through clamp survives export
    # the loader's affine: the input's 4/3 mm voxels (64 mm / 48) resized onto the 64^3 grid: 1 mm voxels
    np.testing.assert_allclose(np.abs(np.diag(pred_img.affine)[:3]), [1.0, 1.0, 1.0], atol=1e-5)

    doc = json.loads(Path(paths["features"]).read_text())
    assert doc["input"] == str(volume) and doc["model"]["name"] == "AdrenalMNIST3D SO(3) group action"
    assert doc["rotation"]["euler_degrees"] == EULER and doc["rotation"]["convention"] == "ZYX"
    np.testing.assert_allclose(doc["rotation"]["matrix"], rotation, atol=1e-6)
    assert doc["mask"] == [int(m) for m in mask]
    assert doc["varying_channels"] == [int(i) for i in np.flatnonzero(mask)]
    assert doc["invariant_channels"] == [int(i) for i in np.flatnonzero(~mask)]
    means = z.flatten(2).mean(-1)[0].numpy()
    np.testing.assert_allclose(doc["z_v_mean"], means[mask], atol=1e-5)
    np.testing.assert_allclose(doc["z_i_mean"], means[~mask], atol=1e-5)
    assert doc["latent_shape"] == [32, 10, 169]
    assert not [p for p in (tmp_path / "out").iterdir() if ".part" in p.name]


def test_rotation_acts(model_file, volume):
    model = GalrInference(model_file)
    image, _ = NiftiVolumeLoader(model.spatial_shape)(volume)
    rotated = model(image, GroupElement(3, euler=EULER)())
    identity = model(image, np.eye(3, dtype=np.float32))
    torch.testing.assert_close(identity["pred"], identity["identity"], rtol=1e-4, atol=1e-4)
    assert (rotated["pred"] - rotated["identity"]).abs().max() > 1e-2
    assert rotated["features"] == identity["features"]  # the features are those of the unrotated latent


def test_command_line_folder_input(model_file, volume, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.nii.gz").write_bytes(volume.read_bytes())
    (inputs / "notes.txt").write_text("not a volume")
    # a script does not get the working directory on sys.path: name the repository (and the installed package)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(DEPLOY / "galr_app" / "app.py"), "-i", str(inputs), "-o", str(tmp_path / "out"),
           "-m", str(model_file), "--euler", "0", "0", "90"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_features.json", "a_input.nii.gz", "a_pred_rot0_0_90.nii.gz"]


def test_bad_inputs_are_named(model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.nii.gz"):
        galr.run_pipeline(tmp_path / "absent.nii.gz", tmp_path / "out", model_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no NIfTI"):
        galr.run_pipeline(tmp_path / "empty", tmp_path / "out", model_file)
    with pytest.raises(FileNotFoundError, match="missing.ts"):
        GalrInference(tmp_path / "missing.ts")
    plain = tmp_path / "plain.ts"
    torch.jit.save(torch.jit.trace(torch.nn.Identity(), torch.zeros(1)), str(plain))
    with pytest.raises(ValueError, match="galr_deploy.json"):
        GalrInference(plain)
    with pytest.raises(ValueError, match="Euler angles"):
        galr.run_pipeline(tmp_path, tmp_path / "out", model_file, angle=30.0)
    model = GalrInference(model_file)
    with pytest.raises(ValueError, match=r"\(1, 1, 64, 64, 64\)"):
        model(torch.zeros(1, 1, 32, 32, 32), np.eye(3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        model(torch.zeros(1, 1, 64, 64, 64), np.eye(2))


def test_export_rejects_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_file"):
        export_deploy_module(BUNDLE, tmp_path / "m.ts", ckpt_file=tmp_path / "none.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not galr.sdk_available(), reason=f"MONAI Deploy App SDK not importable: {galr.SDK_IMPORT_ERROR}")
def test_sdk_app_matches_plain_pipeline(model_file, volume, tmp_path):
    plain = galr.run_pipeline(volume, tmp_path / "plain", model_file, euler=EULER)[0]
    app = galr.GalrApp(input_path=volume, output_dir=tmp_path / "sdk", model_path=model_file, euler=EULER)
    app.run()
    sdk = app.writer_op.written[0]
    np.testing.assert_allclose(np.asarray(nib.load(sdk["prediction"]).dataobj),
                               np.asarray(nib.load(plain["prediction"]).dataobj), atol=1e-6)
