"""deploy/monailabel_app served by a real MONAI Label server, checked against the bundles run directly.

The test starts ``monailabel start_server --app <a copy of the app's code> --studies <generated NIfTI volumes>
--host 127.0.0.1 --port <free port> --conf bundles <the repository's brain and adrenal bundles>``, waits for
``/info/``, posts to ``/infer/<bundle>`` with rotation parameters and compares the returned volume with the
prediction the bundle's own ``inferring`` writes for the same input and rotation (``monai.bundle.run``), and the
returned JSON with the bundle's network run by hand. Loopback only; every wait is bounded; the server is stopped.

Needs ``monailabel`` (installed without its SAM2 stack: see deploy/README.md); without it the test is skipped, or
fails when ``GALR_REQUIRE_MONAILABEL=1`` (CI sets it for the step that installs MONAI Label).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_galr.bundle import inference_configs

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "deploy" / "monailabel_app"
ADRENAL = REPO / "bundles" / "adrenal_ct_so3"
BRAIN = REPO / "bundles" / "brain_mri_so3"
START_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 120.0


def _require_monailabel() -> None:
    if importlib.util.find_spec("monailabel") is None:
        msg = (
            "monailabel is not installed in this environment (install: deploy/README.md, 'MONAI Label'; "
            ".ci/run runs this test in a venv that has it)"
        )
        if os.environ.get("GALR_REQUIRE_MONAILABEL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
    pytest.mark.skipif(
        not ((ADRENAL / "models" / "model.pt").is_file() and (BRAIN / "models" / "model.pt").is_file()),
        reason="bundle weights absent",
    ),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _brain_like(path: Path) -> Path:
    """A smooth ellipsoid 50x60x70 at 1.5 mm (another size than the bundle's 40x48x56 grid)."""
    g = np.mgrid[:50, :60, :70].astype(np.float32)
    c = np.array([25.0, 30.0, 35.0])[:, None, None, None]
    half = np.array([20.0, 24.0, 28.0])[:, None, None, None]
    r = np.sqrt((((g - c) / half) ** 2).sum(0))
    v = np.clip(1.2 - r, 0.0, 1.0) * (1.0 + 0.1 * np.sin(g[0] / 3.0) * np.cos(g[2] / 5.0))
    nib.save(nib.Nifti1Image(v.astype(np.float32), np.diag([1.5, 1.5, 1.5, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    from monai_galr.data import save_synthetic_adrenal_nifti

    d = tmp_path_factory.mktemp("studies")
    save_synthetic_adrenal_nifti(d / "adrenal_case.nii.gz", size=48, seed=3)
    _brain_like(d / "brain_case.nii.gz")
    return d


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory):
    """``(base_url, log_file)`` of a running server; stopped (SIGTERM, then SIGKILL) at the end."""
    _require_monailabel()
    import requests

    work = tmp_path_factory.mktemp("label")
    app = work / "app"  # start_server creates model/ lib/ logs/ bin/ in the app folder: a copy keeps the repo clean
    app.mkdir()
    for name in ("main.py", "galr_bundle.py", "galr_infer.py"):
        shutil.copy2(APP / name, app / name)
    port = _free_port()
    script = Path(sys.executable).parent / "monailabel"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "monailabel.main"]
    cmd += ["start_server", "--app", str(app), "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--conf", "bundles", f"{BRAIN},{ADRENAL}"]
    env = {
        **os.environ,
        "MONAILABEL_PYEXE": sys.executable,  # the monailabel script runs `python` from PATH otherwise
        "OMP_NUM_THREADS": "1",
        "MONAI_LABEL_SESSION_PATH": str(work / "sessions"),
        "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
    }
    log = work / "server.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(work))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"monailabel exited with {proc.returncode} before serving:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{base}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /info/ from {base} within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _bundle_inferring(bundle: Path, image: Path, out: Path, **rotation) -> tuple[Path, Path]:
    """Run the bundle's own ``inferring`` on ``image``; return its ``(input, prediction)`` NIfTI files."""
    from monai.bundle import run

    threads = torch.get_num_threads()
    try:
        run(
            "inferring",
            config_file=inference_configs(bundle),
            meta_file=str(bundle / "configs" / "metadata.json"),
            bundle_root=str(bundle),
            input_files=[str(image)],
            output_dir=str(out),
            **rotation,
        )
    finally:
        torch.set_num_threads(threads)
    (pred,) = sorted(out.rglob("*_pred_*.nii.gz"))
    (inp,) = sorted(out.rglob("*_input.nii.gz"))
    return inp, pred


def _infer(base: str, model: str, image: str, params: dict, tmp: Path):
    """POST ``/infer/<model>`` (output=all); return ``(status, image array or None, affine or None, json)``."""
    import requests
    from requests_toolbelt import MultipartDecoder

    resp = requests.post(
        f"{base}/infer/{model}",
        params={"image": image, "output": "all"},
        files={"params": (None, json.dumps(params))},
        timeout=REQUEST_TIMEOUT_S,
    )
    if resp.status_code != 200:
        return resp.status_code, None, None, resp.text
    parts = {}
    for part in MultipartDecoder.from_response(resp).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = part.content
    out = tmp / f"{model}_{len(list(tmp.iterdir()))}.nii.gz"
    out.write_bytes(parts["image"])
    img = nib.load(str(out))
    return resp.status_code, np.asarray(img.dataobj, np.float32), img.affine, json.loads(parts["params"])


def _network(bundle: Path):
    from monai.bundle import ConfigParser

    from monai_galr.handlers import load_network_weights

    parser = ConfigParser()
    parser.read_config(inference_configs(bundle))
    parser["bundle_root"] = str(bundle)
    net = parser.get_parsed_content("network_def").eval()
    load_network_weights(net, str(bundle / "models" / "model.pt"))
    return net


def test_info_lists_both_bundles(server):
    import requests

    base, _ = server
    info = requests.get(f"{base}/info/", timeout=10).json()
    assert set(info["models"]) == {"brain_mri_so3", "adrenal_ct_so3"}
    assert info["models"]["adrenal_ct_so3"]["config"]["spatial_size"] == "64,64,64"
    assert info["models"]["brain_mri_so3"]["config"]["convention"] == "ZYX"


@pytest.mark.parametrize(
    "bundle, case, params, bundle_rotation",
    [
        (ADRENAL, "adrenal_case", {"euler": [30, 45, 60]}, {"euler_degrees": [30.0, 45.0, 60.0]}),
        (BRAIN, "brain_case", {"euler": "30, 0, 45"}, {"euler_degrees": [30.0, 0.0, 45.0]}),
    ],
    ids=["adrenal", "brain"],
)
def test_infer_equals_the_bundles_own_inferring(server, studies, tmp_path, bundle, case, params, bundle_rotation):
    from monai_galr.transforms import GroupElement

    base, _ = server
    status, pred, affine, doc = _infer(base, bundle.name, case, params, tmp_path)
    assert status == 200, doc
    ref_input, ref_pred = _bundle_inferring(bundle, studies / f"{case}.nii.gz", tmp_path / "bundle", **bundle_rotation)
    ref = nib.load(str(ref_pred))
    expected = np.asarray(ref.dataobj, np.float32)
    assert pred.shape == expected.shape == tuple(doc["spatial_size"])
    np.testing.assert_allclose(pred, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(affine, ref.affine, atol=1e-4)
    assert float(np.abs(pred - np.asarray(nib.load(str(ref_input)).dataobj)).mean()) > 1e-3  # not the input
    # the JSON: the rotation asked for, and the split latent of the bundle's network on the same input
    euler = next(iter(bundle_rotation.values()))
    np.testing.assert_allclose(doc["rotation"]["matrix"], GroupElement(3, euler=euler)(), atol=1e-6)
    assert doc["bundle"] == bundle.name and doc["rotation"]["form"] == "euler"
    net = _network(bundle)
    x = torch.as_tensor(np.asarray(nib.load(str(ref_input)).dataobj, np.float32))[None, None]
    with torch.no_grad():
        z = net.encode(x)
    mask = net.ald.mask().detach().numpy() > 0.5
    assert doc["mask"] == [int(v) for v in mask] and doc["latent_shape"] == list(z.shape[1:])
    assert doc["varying_channels"] == [int(i) for i in np.flatnonzero(mask)]
    means = z.flatten(2).mean(-1)[0].numpy()
    np.testing.assert_allclose(doc["z_v_mean"], means[mask], atol=1e-5)
    np.testing.assert_allclose(doc["z_i_mean"], means[~mask], atol=1e-5)
    np.testing.assert_allclose(doc["z_v_rms"], float((z * torch.as_tensor(mask).view(1, -1, *[1] * (z.ndim - 2))).pow(2).mean().sqrt()), rtol=1e-5)


def test_axis_angle_request_is_the_latent_rotation(server, studies, tmp_path):
    """``axis`` + ``angle``: the bundle's ``rotated_network`` with that rotation, on the bundle's preprocessed input."""
    from monai_galr.networks import RotatedReconstruction
    from monai_galr.transforms import GroupElement

    base, _ = server
    status, pred, _, doc = _infer(base, "adrenal_ct_so3", "adrenal_case", {"axis": [1, 1, 0], "angle": 40}, tmp_path)
    assert status == 200, doc
    ref_input, _ = _bundle_inferring(ADRENAL, studies / "adrenal_case.nii.gz", tmp_path / "bundle")
    r = GroupElement(3, axis_angle=(np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0) * 40.0).tolist())()
    np.testing.assert_allclose(doc["rotation"]["matrix"], r, atol=1e-6)
    x = torch.as_tensor(np.asarray(nib.load(str(ref_input)).dataobj, np.float32))[None, None]
    with torch.no_grad():
        expected = RotatedReconstruction(_network(ADRENAL), r)(x)[0, 0].numpy()
    np.testing.assert_allclose(pred, expected, atol=1e-5, rtol=0)
    _, identity, _, _ = _infer(base, "adrenal_ct_so3", "adrenal_case", {}, tmp_path)
    assert float(np.abs(pred - identity).mean()) > 1e-3  # the rotation changed the prediction


def test_bad_requests_fail_with_the_parameter_named(server, tmp_path):
    base, log = server
    status, _, _, _ = _infer(base, "brain_mri_so3", "brain_case", {"euler": [30, 45], "axis": [1, 0, 0]}, tmp_path)
    assert status >= 400
    status, _, _, _ = _infer(base, "brain_mri_so3", "brain_case", {"euler": [30, 45]}, tmp_path)
    assert status >= 400
    status, _, _, _ = _infer(base, "no_such_bundle", "brain_case", {}, tmp_path)
    assert status >= 400
    text = log.read_text(errors="replace")
    assert "bad rotation parameters: give one rotation: 'euler', 'axis_angle' or 'axis' + 'angle'" in text
    assert "bad rotation parameters: euler must have 3 values" in text
