"""Export of the rotated_mnist_so2 bundle: TorchScript (traced) with the config embedded, and ONNX when available.

``torch.jit.script`` fails on this network (f-string error messages in ``monai_galr.groups.rotate_image``), so the
bundle exports with ``torch.jit.trace``: the exported graph is fixed to the 32x32 input size of the bundle (the
batch size stays free, which the tests check with a batch larger than the traced one).  The shipped
``models/model.pt`` is exported (read only; copies go under ``tmp_path``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, run

from monai_galr.handlers import load_network_weights
from monai_galr.networks import RotatedReconstruction
from monai_galr.transforms import GroupElement

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "rotated_mnist_so2"
INFERENCE = str(BUNDLE / "configs" / "inference.yaml")
META = str(BUNDLE / "configs" / "metadata.json")
SHIPPED = BUNDLE / "models" / "model.pt"

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.skipif(not SHIPPED.is_file(), reason="the bundle's models/model.pt is not present"),
]


def _eager(rotation_degrees: float | None = None) -> torch.nn.Module:
    """The network of inference.yaml with the shipped weights, in eval mode (optionally the rotated wrapper)."""
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(SHIPPED), map_location="cpu")
    net.eval()
    if rotation_degrees is None:
        return net
    return RotatedReconstruction(net, GroupElement(spatial_dims=2, angle=rotation_degrees)()).eval()


def _inputs(batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(7))


def _load(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    extra = {"metadata.json": "", "inference.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), extra


def test_ckpt_export_traced_reproduces_eager(tmp_path):
    out = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(SHIPPED), meta_file=META,
                config_file=INFERENCE, use_trace=True, input_shape=[1, 1, 32, 32], device="cpu")
    module, extra = _load(out)
    meta = json.loads(extra["metadata.json"])
    assert meta["version"] == json.loads(Path(META).read_text())["version"]
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_file(INFERENCE)
    x = _inputs()
    with torch.no_grad():
        expected, got = _eager()(x), module(x)
    assert got.shape == (4, 1, 32, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_rotated_wrapper_export_reproduces_eager(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "model.pt")
    run(run_id="exporting_rotated", config_file=INFERENCE, meta_file=META, logging_file=False,
        bundle_root=str(BUNDLE), ckpt_dir=str(tmp_path), rotation_degrees=60, device="$torch.device('cpu')")
    out = tmp_path / "model_rot60.ts"
    module, extra = _load(out)
    assert json.loads(extra["metadata.json"])["name"] == json.loads(Path(META).read_text())["name"]
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_file(INFERENCE)
    x = _inputs()
    with torch.no_grad():
        expected, got = _eager(60.0)(x), module(x)
        identity = _eager()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - identity).abs().max() > 1e-2  # the baked-in rotation acts (the test can fail)


def test_rotated_export_without_checkpoint_names_it(tmp_path):
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the error of the expression
        run(run_id="exporting_rotated", config_file=INFERENCE, meta_file=META, logging_file=False,
            bundle_root=str(tmp_path), device="$torch.device('cpu')")
    err, text = info.value, []
    while err is not None:
        text.append(str(err))
        err = err.__cause__ or err.__context__
    assert str(tmp_path / "models" / "model.pt") in "\n".join(text)
    assert not (tmp_path / "models" / "model_rot45.ts").exists()


def test_onnx_export_reproduces_eager(tmp_path):
    onnx = pytest.importorskip("onnx")
    net, x = _eager(), _inputs()
    out = tmp_path / "model.onnx"
    torch.onnx.export(net, (x[:1],), str(out), input_names=["image"], output_names=["pred"],
                      dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(out)))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), net(x), rtol=1e-4, atol=1e-4)
