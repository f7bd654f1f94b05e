"""Export a bundle's network as one TorchScript file for the deploy app: encode / split / apply_action / decode.

``monai.bundle ckpt_export`` traces ``forward`` only (the identity reconstruction) and the bundles'
``exporting_rotated`` runner bakes one rotation in.  The deploy app needs the rotation at run time and the split
latent (``z_v`` / ``z_i``), so this traces the methods of ``GroupActionAutoEncoder`` one by one with
``torch.jit.trace_module`` (scripting fails on this network; the bundles trace too), checks every traced method
against the eager one on a second input and rotation, and writes the file atomically with ``metadata.json``, the
bundle's ``inference.json`` (its ``train.yaml`` + ``inference.yaml`` merged, as MONAI reads the pair) and
``galr_deploy.json`` (the methods and shapes) embedded.  The graph is fixed to the
bundle's input size (``network_data_format`` of ``metadata.json``) and to a batch of one.

Command line (from the repository root)::

    python deploy/galr_app/export.py --bundle bundles/adrenal_ct_so3 --out bundles/adrenal_ct_so3/models/model_deploy.ts
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data.torchscript_utils import save_net_with_metadata

__all__ = ["DEPLOY_FILE", "DEPLOY_METHODS", "DeployModule", "export_deploy_module", "main"]

DEPLOY_FILE = "galr_deploy.json"  # embedded description of the exported methods
DEPLOY_METHODS = ("forward", "encode", "split", "apply_action", "decode")


class DeployModule(torch.nn.Module):
    """The methods the deploy app calls, as methods (MONAI's ``AutoEncoder.encode`` / ``decode`` are submodules).

    Args:
        network: a ``GroupActionAutoEncoder``.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The identity reconstruction ``decode(encode(x))``."""
        return self.network(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent ``z`` ``(B, L, *latent_spatial)``."""
        return self.network.encode(x)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_v, z_i) = (M * z, (1 - M) * z)``."""
        return self.network.split(z)

    def apply_action(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """``Phi_R(z)`` for ``rotation`` ``(B, d, d)``."""
        return self.network.apply_action(z, rotation)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The image of a latent."""
        return self.network.decode(z)


def _example_rotation(spatial_dims: int, seed: int) -> torch.Tensor:
    """A non-trivial ``(1, d, d)`` rotation (QR of a seeded Gaussian matrix with det +1)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(spatial_dims, spatial_dims, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()[None]


def _check(name: str, got, expected, rtol: float, atol: float) -> None:
    got, expected = (got,) if torch.is_tensor(got) else got, (expected,) if torch.is_tensor(expected) else expected
    for g, e in zip(got, expected):
        try:
            torch.testing.assert_close(g, e, rtol=rtol, atol=atol)
        except AssertionError as err:
            raise RuntimeError(f"traced method {name!r} differs from the eager network: {err}") from err


def export_deploy_module(
    bundle_dir: str | os.PathLike,
    filepath: str | os.PathLike,
    ckpt_file: str | os.PathLike | None = None,
    config_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    input_shape: Sequence[int] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> Path:
    """Trace the bundle's ``network_def`` methods with its weights and save them, atomically, to ``filepath``.

    Args:
        bundle_dir: the bundle folder (``configs/metadata.json``, ``configs/train.yaml``, ``configs/inference.yaml``,
            ``models/model.pt``).
        filepath: the TorchScript file to write (its folder is created; written to ``<filepath>.part``, then moved).
        ckpt_file: weights (default ``<bundle_dir>/models/model.pt``), loaded strictly and weights only.
        config_file: the config, or the list of configs read in order, that defines ``network_def`` (default
            :func:`monai_galr.bundle.inference_configs`: ``<bundle_dir>/configs/train.yaml``, then its overlay
            ``inference.yaml``); embedded merged as ``inference.json``, so the file is self-contained.
        input_shape: spatial shape to trace with (default: the metadata's ``network_data_format`` input shape).
        rtol / atol: tolerance of the traced-versus-eager check.

    Returns:
        the written path.

    Raises:
        FileNotFoundError: the bundle's metadata, config or weights are missing.
        ValueError: the weights do not match the network (from ``load_network_weights``).
        RuntimeError: a traced method does not reproduce the eager one.
    """
    from monai_galr.bundle import inference_configs
    from monai_galr.handlers import load_network_weights

    bundle_dir = Path(bundle_dir)
    meta_file = bundle_dir / "configs" / "metadata.json"
    if config_file is None:
        config_file = inference_configs(bundle_dir)
    configs = [Path(config_file)] if isinstance(config_file, (str, os.PathLike)) else [Path(c) for c in config_file]
    ckpt_file = Path(ckpt_file) if ckpt_file is not None else bundle_dir / "models" / "model.pt"
    for what, path in (("metadata", meta_file), *(("config_file", c) for c in configs), ("ckpt_file", ckpt_file)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    parser.read_meta(str(meta_file))
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(ckpt_file), map_location="cpu")
    net.eval()

    meta = parser.get("_meta_")
    image_fmt = meta["network_data_format"]["inputs"]["image"]
    shape = [int(s) for s in (input_shape or image_fmt["spatial_shape"])]
    channels = int(image_fmt.get("num_channels", 1))
    d = net.dimensions
    if len(shape) != d:
        raise ValueError(f"input_shape must have {d} entries for this {d}D network, got {shape}.")
    g = torch.Generator().manual_seed(0)
    x, x2 = (torch.rand(1, channels, *shape, generator=g) for _ in range(2))
    r, r2 = _example_rotation(d, 1), _example_rotation(d, 2)
    with torch.no_grad():
        net.check_input(x, "input_shape")
        z, z2 = net.encode(x), net.encode(x2)
        traced = torch.jit.trace_module(
            DeployModule(net).eval(),
            {"forward": (x,), "encode": (x,), "split": (z,), "apply_action": (z, r), "decode": (z,)},
            check_trace=False,
        )
        _check("forward", traced.forward(x2), net(x2), rtol, atol)
        _check("encode", traced.encode(x2), z2, rtol, atol)
        _check("split", traced.split(z2), net.split(z2), rtol, atol)
        _check("apply_action", traced.apply_action(z2, r2), net.apply_action(z2, r2), rtol, atol)
        _check("decode", traced.decode(z2), net.decode(z2), rtol, atol)
    info = {
        "methods": list(DEPLOY_METHODS),
        "spatial_dims": d,
        "in_channels": channels,
        "spatial_shape": shape,
        "latent_shape": list(z.shape[1:]),
        "latent_channels": int(z.shape[1]),
        "batch_size": 1,
        "bundle": bundle_dir.name,
        "checkpoint": ckpt_file.name,
    }
    extra = {
        "inference.json": json.dumps(ConfigParser.load_config_files([str(c) for c in configs])).encode(),
        DEPLOY_FILE: json.dumps(info).encode(),
    }
    out = Path(filepath)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    try:
        save_net_with_metadata(traced, str(part), include_config_vals=False, meta_values=meta, more_extra_files=extra)
        os.replace(part, out)
    finally:
        if part.exists():
            part.unlink()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/adrenal_ct_so3")
    p.add_argument("--out", required=True, help="TorchScript file to write")
    p.add_argument("--ckpt_file", default=None, help="weights (default <bundle>/models/model.pt)")
    p.add_argument("--config_file", nargs="+", default=None,
                   help="config(s) defining network_def, read in order (default <bundle>/configs/train.yaml, then "
                   "its overlay inference.yaml)")
    p.add_argument("--input_shape", type=int, nargs="+", default=None, help="spatial shape (default: metadata)")
    args = p.parse_args(argv)
    path = export_deploy_module(args.bundle, args.out, args.ckpt_file, args.config_file, args.input_shape)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
