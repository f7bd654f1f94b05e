"""What the MONAI Label app needs from a monai-galr bundle, without MONAI Label itself.

- :func:`rotation_from_params`: a MONAI Label request's parameters (``euler`` with ``convention``, ``axis_angle``,
  or ``axis`` with ``angle``, all in degrees) -> the ``(d, d)`` rotation, through
  :class:`monai_galr.transforms.GroupElement` (the bundles' convention);
- :class:`BundleModel`: a bundle's own ``configs/train.yaml`` + ``configs/inference.yaml`` (the overlay pair of the
  bundle's inference: network definition, preprocessing, checkpoint path, Euler convention) read with MONAI's
  ``ConfigParser``, with the checkpoint's weights loaded;
  ``rotate(image, rotation)`` returns ``decode(Phi_R(encode(x)))`` and the split-latent summary;
- :func:`latent_summary`: the ``z_v`` / ``z_i`` summary of one latent (the same keys as deploy/galr_app's JSON).

Importable with the project's own dependencies only, so the tests of these pieces run where MONAI Label is not
installed; ``galr_infer.py`` wraps them in a MONAI Label infer task.
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ROTATION_PARAMS", "BundleModel", "latent_summary", "parse_vector", "rotation_from_params"]

# the request parameters that define the rotation (at most one form per request)
ROTATION_PARAMS = ("euler", "axis_angle", "axis", "angle")


def parse_vector(value: Any, length: int, name: str) -> list[float]:
    """A list of ``length`` finite numbers from a list / tuple, a JSON or Python list string, or ``"a,b,c"``.

    MONAI Label clients send parameters as JSON values; 3D Slicer's options panel sends strings, hence the text
    forms.

    Raises:
        TypeError: ``value`` is neither a sequence of numbers nor such a string.
        ValueError: wrong length, or a value that is not finite.
    """
    raw = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = ast.literal_eval(text) if text.startswith(("[", "(")) else [float(v) for v in text.split(",")]
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"{name} must be {length} comma-separated numbers (degrees), got {raw!r}.") from e
    if isinstance(value, (int, float)) and not isinstance(value, bool) and length == 1:
        value = [value]
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise TypeError(f"{name} must be a list of {length} numbers (degrees), got {raw!r} ({type(raw).__name__}).")
    if len(value) != length:
        raise ValueError(f"{name} must have {length} values (degrees), got {len(value)}: {raw!r}.")
    out = [float(v) for v in value]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {raw!r}.")
    return out


def rotation_from_params(
    params: Mapping[str, Any], spatial_dims: int = 3, convention: str = "ZYX"
) -> tuple[np.ndarray, dict[str, Any]]:
    """The rotation a request asks for, with a JSON-ready record of it.

    Args:
        params: the request; read are ``euler`` (three intrinsic Euler angles in ``convention``, or the request's
            own ``convention``), ``axis_angle`` (a rotation vector whose norm is the angle), ``axis`` + ``angle``
            (an axis, any non-zero length, and the angle), all angles in degrees; a 2D model takes ``angle``
            alone. None of them: the identity. Other keys are ignored (a MONAI Label request carries many).
        spatial_dims: 3 (SO(3)) or 2 (SO(2)).
        convention: the default Euler convention (the bundle's ``euler_convention``).

    Returns:
        ``(matrix, record)``: ``float32 (d, d)`` and ``{"form", <the given values>, "matrix"}``.

    Raises:
        ValueError / TypeError: several forms at once, ``axis`` without ``angle`` (or the reverse, in 3D), a zero
            axis, a parameter of the other group, a malformed value; the message names the parameter.
    """
    from monai_galr.transforms import GroupElement

    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of request parameters, got {type(params).__name__}.")
    given = {k: params[k] for k in ROTATION_PARAMS if params.get(k) not in (None, "")}
    conv = str(params.get("convention") or convention).upper()
    if spatial_dims == 2:
        extra = sorted(set(given) - {"angle"})
        if extra:
            raise ValueError(f"a 2D model takes the parameter 'angle' (degrees) only, got {extra}.")
        angle = parse_vector(given["angle"], 1, "angle")[0] if "angle" in given else None
        record: dict[str, Any] = {"form": "angle" if angle is not None else "identity", "angle_degrees": angle}
        m = GroupElement(2, angle=angle)()
    else:
        forms = [f for f in ("euler", "axis_angle", "axis") if f in given]
        if "angle" in given and "axis" not in given:
            raise ValueError("parameter 'angle' needs 'axis' (3 numbers) for a 3D model; or give 'euler' / 'axis_angle'.")
        if len(forms) > 1:
            raise ValueError(f"give one rotation: 'euler', 'axis_angle' or 'axis' + 'angle'; got {forms}.")
        form = forms[0] if forms else "identity"
        if form == "euler":
            euler = parse_vector(given["euler"], 3, "euler")
            record = {"form": form, "euler_degrees": euler, "convention": conv}
            m = GroupElement(3, euler=euler, convention=conv)()
        elif form == "axis_angle":
            vec = parse_vector(given["axis_angle"], 3, "axis_angle")
            record = {"form": form, "axis_angle_degrees": vec}
            m = GroupElement(3, axis_angle=vec)()
        elif form == "axis":
            if "angle" not in given:
                raise ValueError("parameter 'axis' needs 'angle' (degrees).")
            axis = np.asarray(parse_vector(given["axis"], 3, "axis"))
            norm = float(np.linalg.norm(axis))
            if norm == 0.0:
                raise ValueError(f"parameter 'axis' must be a non-zero vector, got {given['axis']!r}.")
            angle = parse_vector(given["angle"], 1, "angle")[0]
            record = {"form": form, "axis": (axis / norm).tolist(), "angle_degrees": angle}
            m = GroupElement(3, axis_angle=(axis / norm * angle).tolist())()
        else:
            record = {"form": form}
            m = GroupElement(3)()
    record["matrix"] = np.asarray(m, np.float64).round(8).tolist()
    return np.asarray(m, np.float32), record


def latent_summary(network: torch.nn.Module, z: torch.Tensor) -> dict[str, Any]:
    """The ``z_v`` / ``z_i`` summary of a latent ``z`` ``(1, L, ...)`` of ``network`` (a GroupActionAutoEncoder).

    Returns:
        ``latent_shape``, the ALD ``mask`` (1 = transformation-varying channel), ``varying_channels`` /
        ``invariant_channels``, ``z_v_mean`` / ``z_i_mean`` (the mean of each varying / invariant channel of ``z``
        over its remaining axes) and ``z_v_rms`` / ``z_i_rms`` (root mean square of ``M*z`` and ``(1-M)*z``).
    """
    z_v, z_i = network.split(z)
    mask = network.split(torch.ones_like(z))[0].flatten(2)[0, :, 0].detach().cpu().numpy() > 0.5
    means = z.detach().flatten(2).mean(-1)[0].cpu().numpy()
    varying = [int(i) for i in np.flatnonzero(mask)]
    invariant = [int(i) for i in np.flatnonzero(~mask)]
    return {
        "latent_shape": [int(s) for s in z.shape[1:]],
        "mask": [int(v) for v in mask],
        "varying_channels": varying,
        "invariant_channels": invariant,
        "z_v_mean": [float(means[i]) for i in varying],
        "z_i_mean": [float(means[i]) for i in invariant],
        "z_v_rms": float(z_v.detach().pow(2).mean().sqrt()),
        "z_i_rms": float(z_i.detach().pow(2).mean().sqrt()),
    }


class BundleModel:
    """A monai-galr bundle's inference definition and weights, read from the bundle folder itself.

    Args:
        bundle_dir: the bundle folder (``configs/train.yaml``, ``configs/inference.yaml``, ``configs/metadata.json``,
            ``models/``).
        checkpoint: the weights; default the config's ``ckpt_path`` (``models/model.pt`` of the bundle).
        config_files: the configs inside ``configs/``, read in this order (default
            :data:`monai_galr.bundle.INFERENCE_CONFIGS`: ``train.yaml``, then its overlay ``inference.yaml``).

    Attributes:
        name: the bundle folder's name (the MONAI Label model name).
        spatial_dims / spatial_size / convention: the config's ``spatial_dims``, ``spatial_size``,
            ``euler_convention``.
        preprocessing: the config's ``preprocessing`` transforms, less its ``GroupElementd`` (the rotation comes
            from the request).
        metadata: ``configs/metadata.json``.

    Raises:
        FileNotFoundError: no bundle folder, config or checkpoint.
        ValueError: the config lacks an entry the app reads (the message names it), or the checkpoint does not
            match the network.
    """

    ENTRIES = ("network_def", "preprocessing", "spatial_dims", "spatial_size", "ckpt_path")

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        config_files: Sequence[str] | None = None,
    ) -> None:
        from monai.bundle import ConfigParser

        from monai_galr.bundle import INFERENCE_CONFIGS
        from monai_galr.handlers import load_network_weights
        from monai_galr.transforms import GroupElementd

        self.bundle_dir = Path(bundle_dir).resolve()
        configs = [self.bundle_dir / "configs" / f for f in (config_files or INFERENCE_CONFIGS)]
        absent = [f"configs/{c.name}" for c in configs if not c.is_file()]
        if absent:
            raise FileNotFoundError(f"bundle_dir {str(bundle_dir)!r} has no {' or '.join(absent)}.")
        self.name = self.bundle_dir.name
        parser = ConfigParser()
        parser.read_config([str(c) for c in configs])
        config = " + ".join(str(c) for c in configs)
        meta = self.bundle_dir / "configs" / "metadata.json"
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        parser.read_meta(self.metadata)
        parser["bundle_root"] = str(self.bundle_dir)
        missing = [k for k in self.ENTRIES if k not in parser]
        if missing:
            raise ValueError(f"{config} lacks the entries {missing} that the MONAI Label app reads.")
        self.spatial_dims = int(parser.get_parsed_content("spatial_dims"))
        self.spatial_size = [int(s) for s in parser.get_parsed_content("spatial_size")]
        self.convention = str(parser.get_parsed_content("euler_convention")) if "euler_convention" in parser else "ZYX"
        self.checkpoint = str(checkpoint) if checkpoint is not None else str(parser.get_parsed_content("ckpt_path"))
        self.network = parser.get_parsed_content("network_def").eval()
        load_network_weights(self.network, self.checkpoint, map_location="cpu")
        transforms = parser.get_parsed_content("preprocessing").transforms
        self.preprocessing = [t for t in transforms if not isinstance(t, GroupElementd)]
        self._device = torch.device("cpu")

    def to(self, device: str | torch.device) -> BundleModel:
        """Move the network to ``device`` (a no-op when it is there)."""
        device = torch.device(device)
        if device != self._device:
            self.network.to(device)
            self._device = device
        return self

    @torch.no_grad()
    def rotate(self, image: torch.Tensor, rotation: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """``decode(Phi_R(encode(x)))`` of a preprocessed ``image`` ``(C, *spatial_size)``, and its latent summary.

        Returns:
            ``(prediction, summary)``: ``float32 (C_out, *spatial_size)`` on the CPU and :func:`latent_summary`.

        Raises:
            ValueError: ``image`` is not ``(in_channels, *spatial)`` with a size the strides divide, or
                ``rotation`` is not ``(d, d)``.
        """
        x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image).float()[None].to(self._device)
        self.network.check_input(x, "image")
        d = self.spatial_dims
        r = torch.as_tensor(np.asarray(rotation), dtype=torch.float32)
        if tuple(r.shape) != (d, d):
            raise ValueError(f"rotation must be a ({d}, {d}) matrix, got shape {tuple(r.shape)}.")
        z = self.network.encode(x)
        pred = self.network.decode(self.network.apply_action(z, r[None].to(self._device)))
        return pred[0].float().cpu(), latent_summary(self.network, z)

    def describe(self) -> dict[str, Any]:
        """Name, version and sizes for the response JSON and the task description."""
        return {
            "bundle": self.name,
            "bundle_version": self.metadata.get("version"),
            "checkpoint": self.checkpoint,
            "spatial_size": list(self.spatial_size),
            "euler_convention": self.convention,
        }

    def __repr__(self) -> str:
        return f"BundleModel({str(self.bundle_dir)!r}, spatial_size={self.spatial_size})"

