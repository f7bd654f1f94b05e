"""Model-zoo checks and exports of every bundle, offline: metadata schema, network in/out, TorchScript, ONNX.

For each bundle (``bundles/<name>``) with its shipped ``models/model.pt`` (read only; every output goes under
``tmp_path``):

- ``verify_metadata`` against the schema copy in ``tests/resources`` (the URL in ``metadata.json`` is never
  downloaded), and the ``required_packages_version`` pins cross-checked against the installed packages;
- ``verify_net_in_out`` on the inference pair ``configs/train.yaml`` + ``configs/inference.yaml`` (``network_def``;
  ``inference.yaml`` is an overlay on ``train.yaml``);
- ``ckpt_export`` to TorchScript (traced: ``torch.jit.script`` fails on this network, see the bundle docs and the
  ``export`` entry of ``metadata.json``, whose documented command is run as it stands) with ``metadata.json`` and
  the pair (``train.json``, ``inference.json``) embedded; the loaded file reproduces the eager network, keeps the output
  activation (the adrenal bundle's straight-through clamp) and a free batch size;
- the ``exporting_rotated`` runner of ``inference.yaml``: a ``RotatedReconstruction`` with a baked rotation, the
  merged pair embedded as ``inference.json``;
- ONNX: ``monai.bundle onnx_export`` of ``network_def`` (the identity reconstruction) with a dynamic batch, checked
  with ``onnx.checker`` and onnxruntime against the eager network, with the TorchScript-based exporter
  (``dynamo=False``) and the dynamo exporter; and ``torch.onnx.export`` of the rotated wrapper (latent rotation by
  ``affine_grid`` / ``grid_sample``).

Traced graphs are fixed to the bundle's input size (``network_data_format`` of ``metadata.json``, the
``spatial_size`` of ``train.yaml``); the batch size stays free (checked with a batch of 2, traced with 1).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, onnx_export, run, verify_metadata, verify_net_in_out

import monai_galr
from monai_galr.bundle import inference_configs
from monai_galr.handlers import load_network_weights
from monai_galr.networks import RotatedReconstruction

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "e66d79e8da7e7a5a2f1ffbc3acd7ca10"  # MONAI-extra-test-data 0.8.1 meta_schema_20240725.json
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@dataclass(frozen=True)
class Bundle:
    name: str
    rotation: dict = field(default_factory=dict)  # overrides of inference.yaml selecting the baked rotation
    rotated_file: str = ""  # what `exporting_rotated` writes into ckpt_dir for that rotation
    output_op: str = "sigmoid"  # the output activation the exported graph must keep

    @property
    def root(self) -> Path:
        return REPO / "bundles" / self.name

    @property
    def configs(self) -> list[str]:
        """The inference pair: ``train.yaml``, then its overlay ``inference.yaml``."""
        return inference_configs(self.root)

    @property
    def meta(self) -> str:
        return str(self.root / "configs" / "metadata.json")

    @property
    def weights(self) -> Path:
        return self.root / "models" / "model.pt"

    def metadata(self) -> dict:
        return json.loads(Path(self.meta).read_text())

    def shape(self) -> tuple[int, ...]:
        """The network input's spatial shape, from metadata.json."""
        return tuple(self.metadata()["network_data_format"]["inputs"]["image"]["spatial_shape"])


BUNDLES = [
    Bundle("rotated_mnist_so2", {"rotation_degrees": 60}, "model_rot60.ts", "sigmoid"),
    Bundle("adrenal_ct_so3", {"euler_degrees": [30, 45, 60]}, "model_rot30_45_60.ts", "clamp"),
    Bundle("brain_mri_so3", {"euler_degrees": [30, 0, 45]}, "model_rotZYX30_0_45.ts", "sigmoid"),
]
TS_OPS = {"sigmoid": "aten::sigmoid", "clamp": "aten::clamp"}
ONNX_OPS = {"sigmoid": "Sigmoid", "clamp": "Clip"}

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.usefixtures("one_thread"),  # tests/bundles/conftest.py
]


def _ids(b: Bundle) -> str:
    return b.name


def _shipped(bundle: Bundle) -> Bundle:
    if not bundle.weights.is_file():
        pytest.skip(f"{bundle.weights} is not present")
    return bundle


@pytest.fixture(params=BUNDLES, ids=_ids)
def bundle(request) -> Bundle:
    return request.param




def _parser(bundle: Bundle, **override) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(bundle.configs)
    parser.read_meta(bundle.meta)
    parser.update({"device": "$torch.device('cpu')", **override})
    return parser


def _eager(bundle: Bundle, rotated: bool = False) -> torch.nn.Module:
    """The network of the inference pair with the shipped weights (strictly loaded), in eval mode."""
    parser = _parser(bundle, **bundle.rotation)
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(bundle.weights), map_location="cpu")
    net.eval()
    if not rotated:
        return net
    return RotatedReconstruction(net, parser.get_parsed_content("rotation")).eval()


def _inputs(bundle: Bundle, batch: int = 2) -> torch.Tensor:
    """A batch of noise and of a bright box on an empty background (where a clamped output is exactly 0)."""
    shape = bundle.shape()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(batch, 1, *shape, generator=g)
    box = torch.zeros(shape)
    box[tuple(slice(s // 4, s - s // 4) for s in shape)] = 1.0
    x[1:] = x[1:] * box
    return x


def _load(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    extra = {"metadata.json": "", "train.json": "", "inference.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), extra


def _graph_ops(module: torch.jit.ScriptModule) -> set[str]:
    return {node.kind() for node in module.inlined_graph.nodes()}


def _chain(err: BaseException | None) -> str:
    parts = []
    while err is not None:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


# ---- metadata ---------------------------------------------------------------------------------------------------


def test_metadata_valid_offline(bundle):
    assert SCHEMA.is_file(), f"schema copy missing: {SCHEMA}"  # present: verify_metadata downloads only a missing one
    verify_metadata(meta_file=bundle.meta, filepath=str(SCHEMA), create_dir=False, hash_val=SCHEMA_MD5)


def test_metadata_check_can_fail(bundle, tmp_path):
    meta = bundle.metadata()
    del meta["version"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA), create_dir=False, hash_val=SCHEMA_MD5)


def test_metadata_pins_installed_monai_galr(bundle):
    pins = bundle.metadata().get("required_packages_version") or {}
    assert "monai_galr" in pins, f"{bundle.meta}: required_packages_version has no 'monai_galr' entry: {pins}"
    installed = importlib.metadata.version("monai-galr")
    assert monai_galr.__version__ == installed, (
        f"monai_galr.__version__ {monai_galr.__version__} (pyproject's version) != installed distribution "
        f"{installed}: reinstall with pip install -e ."
    )
    assert pins["monai_galr"] == installed, (
        f"{bundle.meta}: required_packages_version['monai_galr'] is {pins['monai_galr']!r}, installed {installed!r}"
    )
    for name in pins:  # every pinned distribution exists (a misspelt name would not install)
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{bundle.meta}: required_packages_version names {name!r}, which is not installed")


def test_metadata_pins_agree_across_bundles():
    """The bundles were built in one environment: a package pinned by several bundles has one version."""
    seen: dict[str, tuple[str, str]] = {}
    for b in BUNDLES:
        meta = b.metadata()
        pins = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"]}
        pins.update(meta.get("required_packages_version") or {})
        for name, version in pins.items():
            first = seen.setdefault(name, (b.name, version))
            assert first[1] == version, f"{name}: {first[0]} pins {first[1]}, {b.name} pins {version}"
    assert {"monai", "torch", "numpy", "monai_galr", "pytorch-ignite", "nibabel"} <= set(seen)


def test_metadata_shape_matches_inference_config(bundle):
    parser = _parser(bundle)
    fmt = bundle.metadata()["network_data_format"]
    assert list(bundle.shape()) == list(parser.get_parsed_content("spatial_size")), bundle.configs
    assert list(fmt["outputs"]["pred"]["spatial_shape"]) == list(bundle.shape()), bundle.meta
    assert parser.get_parsed_content("output_activation", default="sigmoid") == bundle.output_op


def _output_shape(bundle: Bundle) -> tuple[int, ...]:
    """``(channels, *spatial)`` of the ``pred`` output named by metadata.json's ``network_data_format``."""
    pred = bundle.metadata()["network_data_format"]["outputs"]["pred"]
    return (int(pred["num_channels"]), *(int(n) for n in pred["spatial_shape"]))


def test_verify_net_in_out(bundle):
    """MONAI's check, then the output shape it names: ``verify_net_in_out`` compares only the channel count."""
    verify_net_in_out(net_id="network_def", meta_file=bundle.meta, config_file=bundle.configs, device="cpu")
    net = _parser(bundle).get_parsed_content("network_def").eval()
    x = torch.rand(2, 1, *bundle.shape())
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor), f"network_def(x) returned {type(y).__name__}, metadata names one tensor"
    assert tuple(y.shape) == (2, *_output_shape(bundle)), bundle.meta
    assert torch.isfinite(y).all()


# ---- TorchScript ------------------------------------------------------------------------------------------------


def test_ckpt_export_traced_reproduces_eager(bundle, tmp_path):
    bundle = _shipped(bundle)
    out = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(bundle.weights), meta_file=bundle.meta,
                config_file=bundle.configs, use_trace=True, input_shape=[1, 1, *bundle.shape()], device="cpu")
    module, extra = _load(out)
    assert json.loads(extra["metadata.json"])["version"] == bundle.metadata()["version"]
    for config in bundle.configs:  # ckpt_export embeds each file of the list as <name>.json
        assert json.loads(extra[Path(config).stem + ".json"]) == ConfigParser.load_config_file(config)
    assert TS_OPS[bundle.output_op] in _graph_ops(module), f"{bundle.output_op} output activation lost in export"
    x = _inputs(bundle)
    with torch.no_grad():
        expected, got = _eager(bundle)(x), module(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if bundle.output_op == "clamp":  # the clamp acts on this input (the empty background is exactly 0)
        assert (expected == 0).any() and (got == 0).any()
        assert got.min() >= 0 and got.max() <= 1 + 1e-6


def _documented_export(bundle: Bundle) -> dict:
    return bundle.metadata()["export"]["torchscript"]


def test_export_flags_documented(bundle):
    """metadata.json's ``export`` entry and the bundle docs name the flags the default ``ckpt_export`` needs."""
    doc = _documented_export(bundle)
    shape = "[" + ",".join(str(n) for n in (1, 1, *bundle.shape())) + "]"
    assert doc["scriptable"] is False and doc["flags"] == f'--use_trace True --input_shape "{shape}"'
    assert doc["command"].startswith("python -m monai.bundle ckpt_export network_def ") and doc["flags"] in doc["command"]
    readme = (bundle.root / "docs" / "README.md").read_text()
    assert doc["command"] in readme, f"{bundle.root}/docs/README.md does not show the command of metadata.json"


def test_default_ckpt_export_with_documented_command(bundle, tmp_path):
    """MONAI's ``ckpt_export`` run exactly as metadata.json documents it (only the output path moved to tmp)."""
    import os
    import shlex
    import subprocess
    import sys

    bundle = _shipped(bundle)
    args = shlex.split(_documented_export(bundle)["command"])
    assert args[:3] == ["python", "-m", "monai.bundle"]
    out = tmp_path / "model.ts"
    args[args.index("--filepath") + 1] = str(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, *args[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    module, extra = _load(out)
    assert json.loads(extra["metadata.json"])["version"] == bundle.metadata()["version"]
    x = _inputs(bundle)
    with torch.no_grad():
        expected, got = _eager(bundle)(x), module(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_script_fails_as_documented(bundle):
    """``torch.jit.script`` (ckpt_export without --use_trace) still fails; when it works, drop the flag in the docs."""
    net = _parser(bundle).get_parsed_content("network_def").eval()
    with pytest.raises(Exception):  # noqa: PT011 - TorchScript raises several frontend error types
        torch.jit.script(net)


def test_rotated_export_reproduces_eager(bundle, tmp_path):
    bundle = _shipped(bundle)
    shutil.copy(bundle.weights, tmp_path / "model.pt")
    run(run_id="exporting_rotated", config_file=bundle.configs, meta_file=bundle.meta, logging_file=False,
        bundle_root=str(bundle.root), ckpt_dir=str(tmp_path), device="$torch.device('cpu')", num_threads=1,
        **bundle.rotation)
    out = tmp_path / bundle.rotated_file
    assert out.is_file(), sorted(p.name for p in tmp_path.iterdir())
    assert not list(tmp_path.glob("*.part")), "a temporary export file was left behind"
    module, extra = _load(out)
    assert json.loads(extra["metadata.json"])["name"] == bundle.metadata()["name"]
    # the merged pair: the exported file holds the whole configuration that built it
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_files(bundle.configs)
    assert "network_def" in json.loads(extra["inference.json"])
    assert TS_OPS[bundle.output_op] in _graph_ops(module)
    x = _inputs(bundle)
    with torch.no_grad():
        expected, got = _eager(bundle, rotated=True)(x), module(x)
        identity = _eager(bundle)(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - identity).abs().max() > 1e-2  # the baked-in rotation acts (the test can fail)


def test_rotated_export_without_checkpoint_names_it(bundle, tmp_path):
    with pytest.raises(Exception) as info:  # noqa: PT011 - MONAI wraps the error of the expression
        run(run_id="exporting_rotated", config_file=bundle.configs, meta_file=bundle.meta, logging_file=False,
            bundle_root=str(tmp_path), device="$torch.device('cpu')", num_threads=1)
    assert str(tmp_path / "models" / "model.pt") in _chain(info.value)
    assert not list(tmp_path.rglob("*.ts*")), "an export file was written without weights"


# ---- ONNX -------------------------------------------------------------------------------------------------------

needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install -e '.[test]')")
EXPORTERS = [pytest.param(False, id="torchscript_exporter"),
             pytest.param(True, id="dynamo_exporter", marks=pytest.mark.slow)]  # ~12 s per export on one core
DYNAMIC = {"image": {0: "batch"}, "pred": {0: "batch"}}


def _check_onnx(path: Path, x: torch.Tensor, expected: torch.Tensor, output_op: str | None = None) -> None:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    for fn in model.functions:
        ops |= {node.op_type for node in fn.node}
    if output_op is not None:
        assert ONNX_OPS[output_op] in ops, f"{output_op} output activation lost in the ONNX graph: {sorted(ops)}"
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch.HasField("dim_value"), f"the batch axis is fixed to {batch.dim_value}, expected dynamic"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == tuple(expected.shape)
    # onnxruntime accumulates the 3D convolutions in another order: up to ~2e-4 on intensities in [0, 1]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-3, atol=1e-3)


@needs_onnx
@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_onnx_export_identity_reproduces_eager(bundle, dynamo, tmp_path):
    """The documented command: ``python -m monai.bundle onnx_export network_def ... --converter_kwargs ...``."""
    bundle = _shipped(bundle)
    out = tmp_path / "model.onnx"
    onnx_export(net_id="network_def", filepath=str(out), ckpt_file=str(bundle.weights), meta_file=bundle.meta,
                config_file=bundle.configs, use_trace=True, input_shape=[1, 1, *bundle.shape()], device="cpu",
                converter_kwargs={"input_names": ["image"], "output_names": ["pred"], "dynamic_axes": DYNAMIC,
                                  "dynamo": dynamo})
    x = _inputs(bundle)
    with torch.no_grad():
        expected = _eager(bundle)(x)
    _check_onnx(out, x, expected, bundle.output_op)


def _ort_mask_flips(bundle: Bundle) -> list[int]:
    """ALD channels whose hard mask ``sigmoid(alpha) > tau`` onnxruntime evaluates otherwise than PyTorch.

    The exported graph recomputes the mask from the ``alpha`` logits (or the exporter folds it into a constant with
    its own sigmoid); for a logit within an ulp of ``logit(tau)`` another sigmoid implementation flips the channel.
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    state = torch.load(bundle.weights, map_location="cpu", weights_only=True)
    alpha = state.get("model", state).get("ald.alpha")
    if alpha is None:  # a fixed (manual / all) partition
        return []
    tau = float(_parser(bundle).get_parsed_content("tau"))
    n = alpha.numel()
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Greater", ["s", "t"], ["m"])], "mask",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("m", TensorProto.BOOL, [n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (ort_mask,) = session.run(None, {"a": alpha.float().numpy(), "t": np.array(tau, np.float32)})
    torch_mask = (torch.sigmoid(alpha.float()) > tau).numpy()
    return [int(i) for i in np.flatnonzero(ort_mask != torch_mask)]


@needs_onnx
def test_shipped_mask_logits_are_settled(bundle):
    """Shipped logits keep clear of the threshold (``ALD.settle_logits``): every sigmoid implementation agrees.

    A logit within rounding of ``logit(tau)`` gives a hard mask that onnxruntime (or a GPU kernel, or an exporter's
    constant folding) may evaluate otherwise than PyTorch's CPU sigmoid; the brain weights once had such a channel.
    """
    import math

    bundle = _shipped(bundle)
    state = torch.load(bundle.weights, map_location="cpu", weights_only=True)
    alpha = state.get("model", state).get("ald.alpha")
    if alpha is None:
        pytest.skip(f"{bundle.weights}: fixed partition, no logits")
    tau = float(_parser(bundle).get_parsed_content("tau"))
    gap = (alpha.double() - math.log(tau / (1 - tau))).abs().min().item()
    assert gap >= 0.5e-4, f"{bundle.weights}: a logit lies {gap:.2e} from logit(tau); run ALD.settle_logits()"
    assert _ort_mask_flips(bundle) == []


@needs_onnx
@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_onnx_export_rotated_reproduces_eager(bundle, dynamo, tmp_path):
    """The latent rotation (affine_grid / grid_sample, 2D and 3D, border padding) exports with both exporters."""
    bundle = _shipped(bundle)
    net, x = _eager(bundle, rotated=True), _inputs(bundle)
    out = tmp_path / "model_rot.onnx"
    kwargs = {"input_names": ["image"], "output_names": ["pred"], "dynamic_axes": DYNAMIC, "dynamo": dynamo}
    with torch.no_grad():
        torch.onnx.export(net, (x[:1],), str(out), **kwargs)
        expected = net(x)
    _check_onnx(out, x, expected, bundle.output_op)
