"""The MONAI-Label-free pieces of deploy/monailabel_app: request parameters -> rotation, the bundle reader.

These run in the project's own environment (no ``monailabel``); the server itself is tested by
``test_monailabel_server.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_galr.bundle import inference_configs
from monai_galr.handlers import load_network_weights
from monai_galr.transforms import GroupElement

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "deploy" / "monailabel_app"
ADRENAL = REPO / "bundles" / "adrenal_ct_so3"
BRAIN = REPO / "bundles" / "brain_mri_so3"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_galr_label_{name}", APP / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gb = _load("galr_bundle")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_euler_matches_group_element_and_convention():
    m, rec = gb.rotation_from_params({"euler": [30, 45, 60], "model": "x", "image": "y"}, 3, "ZYX")
    np.testing.assert_allclose(m, GroupElement(3, euler=[30, 45, 60], convention="ZYX")(), atol=1e-7)
    assert rec["form"] == "euler" and rec["convention"] == "ZYX" and rec["euler_degrees"] == [30.0, 45.0, 60.0]
    m2, rec2 = gb.rotation_from_params({"euler": "30, 45, 60", "convention": "xyz"}, 3, "ZYX")
    np.testing.assert_allclose(m2, GroupElement(3, euler=[30, 45, 60], convention="XYZ")(), atol=1e-7)
    assert rec2["convention"] == "XYZ" and not np.allclose(m, m2)


@pytest.mark.parametrize(
    "params",
    [{"axis": [1, 2, 2], "angle": 40}, {"axis": "[0.5, 1, 1]", "angle": "40"}, {"axis_angle": [40 / 3, 80 / 3, 80 / 3]}],
)
def test_axis_angle_forms_agree(params):
    m, rec = gb.rotation_from_params(params, 3)
    np.testing.assert_allclose(m, GroupElement(3, axis_angle=[40 / 3, 80 / 3, 80 / 3])(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(rec["matrix"]), m, atol=1e-6)


def test_identity_and_2d_angle():
    m, rec = gb.rotation_from_params({"euler": "", "axis": None}, 3)
    np.testing.assert_array_equal(m, np.eye(3, dtype=np.float32))
    assert rec["form"] == "identity"
    m2, rec2 = gb.rotation_from_params({"angle": 90}, 2)
    np.testing.assert_allclose(m2, [[0, -1], [1, 0]], atol=1e-7)
    assert rec2 == {"form": "angle", "angle_degrees": 90.0, "matrix": [[0.0, -1.0], [1.0, 0.0]]}


@pytest.mark.parametrize(
    "params, dims, exc, match",
    [
        ({"euler": [1, 2]}, 3, ValueError, "euler must have 3 values"),
        ({"euler": "1, two, 3"}, 3, ValueError, "euler must be 3 comma-separated numbers"),
        ({"euler": [1, 2, True]}, 3, TypeError, "euler must be a list of 3 numbers"),
        ({"euler": [1, 2, float("nan")]}, 3, ValueError, "euler must be finite"),
        ({"euler": [1, 2, 3], "axis_angle": [1, 0, 0]}, 3, ValueError, "give one rotation"),
        ({"axis": [0, 0, 1]}, 3, ValueError, "'axis' needs 'angle'"),
        ({"angle": 30}, 3, ValueError, "'angle' needs 'axis'"),
        ({"axis": [0, 0, 0], "angle": 30}, 3, ValueError, "'axis' must be a non-zero vector"),
        ({"euler": [1, 2, 3], "convention": "ZZY"}, 3, ValueError, "convention"),
        ({"euler": [1, 2, 3]}, 2, ValueError, "2D model takes the parameter 'angle'"),
    ],
)
def test_bad_parameters_are_named(params, dims, exc, match):
    with pytest.raises(exc, match=match):
        gb.rotation_from_params(params, dims)


def test_params_must_be_a_mapping():
    with pytest.raises(TypeError, match="params must be a mapping"):
        gb.rotation_from_params([30, 45, 60], 3)


@pytest.mark.skipif(not (ADRENAL / "models" / "model.pt").is_file(), reason="adrenal_ct_so3 weights absent")
def test_bundle_model_reads_the_bundle_in_place():
    bundle = gb.BundleModel(ADRENAL)
    assert bundle.name == "adrenal_ct_so3" and bundle.spatial_size == [64, 64, 64] and bundle.convention == "ZYX"
    assert Path(bundle.checkpoint) == (ADRENAL / "models" / "model.pt").resolve()
    assert not any(type(t).__name__ == "GroupElementd" for t in bundle.preprocessing)
    # the same network and weights as the bundle's own config, run by hand
    parser = ConfigParser()
    parser.read_config(inference_configs(ADRENAL))
    parser["bundle_root"] = str(ADRENAL)
    net = parser.get_parsed_content("network_def").eval()
    load_network_weights(net, str(ADRENAL / "models" / "model.pt"))
    x = torch.rand(1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    r = GroupElement(3, euler=[30, 45, 60])()
    pred, summary = bundle.rotate(x, r)
    with torch.no_grad():
        z = net.encode(x[None])
        ref = net.decode(net.apply_action(z, torch.as_tensor(r)[None]))[0]
    torch.testing.assert_close(pred, ref, atol=1e-6, rtol=0)
    mask = net.ald.mask().detach().numpy() > 0.5
    assert summary["mask"] == [int(v) for v in mask]
    assert summary["varying_channels"] == [int(i) for i in np.flatnonzero(mask)]
    np.testing.assert_allclose(summary["z_v_mean"], z.flatten(2).mean(-1)[0].numpy()[mask], atol=1e-6)
    assert summary["latent_shape"] == list(z.shape[1:])
    with pytest.raises(ValueError, match="rotation must be a \\(3, 3\\) matrix"):
        bundle.rotate(x, np.eye(2))
    with pytest.raises(ValueError, match="image must have shape"):
        bundle.rotate(x[0], r)


def test_bundle_model_errors_name_the_folder_and_the_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no configs/train.yaml or configs/inference.yaml"):
        gb.BundleModel(tmp_path)
    alone = tmp_path / "overlay_only" / "configs"  # inference.yaml is an overlay: without train.yaml it is not a model
    alone.mkdir(parents=True)
    shutil.copy(BRAIN / "configs" / "inference.yaml", alone)
    with pytest.raises(FileNotFoundError, match=r"has no configs/train.yaml\.$"):
        gb.BundleModel(alone.parent)
    copy = tmp_path / "brain_mri_so3"
    shutil.copytree(BRAIN / "configs", copy / "configs")
    with pytest.raises(FileNotFoundError, match="model.pt"):
        gb.BundleModel(copy)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        gb.BundleModel(BRAIN, checkpoint=tmp_path / "nowhere.pt")


def test_bundle_model_serves_a_harmonic_latent(tmp_path):
    """A bundle switched to ``action: harmonic`` (latent ``(B, L, S, M)`` coefficients): same reader, same summary."""
    from monai_galr.networks.blocks.actions import ACTIONS

    if "harmonic" not in ACTIONS:
        pytest.skip("monai_galr has no harmonic action")
    bundle = tmp_path / "adrenal_harmonic"
    shutil.copytree(ADRENAL / "configs", bundle / "configs")
    # the network is defined once, in train.yaml (inference.yaml is an overlay on it)
    cfg = ConfigParser.load_config_file(str(bundle / "configs" / "train.yaml"))
    cfg.update({"action": "harmonic", "spatial_size": [16, 16, 16], "harmonic_radii": 3, "harmonic_lmax": 2,
                "harmonic_max_radius": None})
    assert cfg["network_def"]["action"] == "@action" and cfg["network_def"]["harmonic_lmax"] == "@harmonic_lmax"
    ConfigParser.export_config_file(cfg, str(bundle / "configs" / "train.yaml"))
    parser = ConfigParser()
    parser.read_config(inference_configs(bundle))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    (bundle / "models").mkdir()
    torch.save({"model": net.state_dict()}, bundle / "models" / "model.pt")
    served = gb.BundleModel(bundle)
    x = torch.rand(1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    r = GroupElement(3, euler=[10, 20, 30])()
    pred, summary = served.rotate(x, r)
    with torch.no_grad():
        z = net.encode(x[None])
        ref = net.decode(net.apply_action(z, torch.as_tensor(r)[None]))[0]
    torch.testing.assert_close(pred, ref, atol=1e-6, rtol=0)
    assert z.ndim == 4 and summary["latent_shape"] == list(z.shape[1:])  # (L, shells, (lmax + 1)^2)
    assert len(summary["z_v_mean"]) + len(summary["z_i_mean"]) == z.shape[1]
