"""MONAI Deploy example app: rotate NIfTI volumes in the latent space of an exported bundle, write NIfTI + features.

Input: a NIfTI file or a folder of them.  Model: a TorchScript file written by ``deploy/galr_app/export.py``.
For each volume: ``<stem>_pred_<tag>.nii.gz`` (the prediction ``decode(Phi_R(encode(x)))`` on the network grid),
``<stem>_input.nii.gz`` (the volume on that grid) and ``<stem>_features.json`` (the ALD mask, the per-channel
spatial means of ``z_v`` / ``z_i``, the rotation, the model's name and version).

    python deploy/galr_app/app.py -i case.nii.gz -o out/ -m model_deploy.ts --euler 30 45 60
    python deploy/galr_app/app.py -i case.nii.gz -o out/ -m model_deploy.ts --sdk   # as a MONAI Deploy app

The same steps run as plain classes (``operators.py``, the default) or as MONAI Deploy App SDK operators (``--sdk``),
which need ``monai-deploy-app-sdk`` and its Holoscan runtime; see ``deploy/README.md`` for what installs where.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `galr_app` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai_galr.data import check_image_files  # noqa: E402

from galr_app.operators import (  # noqa: E402
    NIFTI_SUFFIXES,
    GalrInference,
    NiftiVolumeLoader,
    ResultWriter,
    rotation_matrix,
    volume_stem,
)

__all__ = ["SDK_IMPORT_ERROR", "input_files", "main", "run_pipeline", "sdk_available"]

logger = logging.getLogger("galr_app")

try:  # the SDK wrappers exist only where monai-deploy-app-sdk (and Holoscan) import
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import Application, ConditionType, Fragment, Operator, OperatorSpec

    SDK_IMPORT_ERROR: str | None = None
except Exception as err:  # noqa: BLE001 - ImportError, or Holoscan failing to load its native libraries
    SDK_IMPORT_ERROR = f"{type(err).__name__}: {err}"


def sdk_available() -> bool:
    return SDK_IMPORT_ERROR is None


def input_files(path: str | Path) -> list[Path]:
    """A NIfTI file, or the NIfTI files of a folder (sorted).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder holds no NIfTI file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {str(path)!r} does not exist.")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"input folder {str(path)!r} holds no NIfTI file ({', '.join(NIFTI_SUFFIXES)}).")
    return files


def _rotation_record(spatial_dims: int, euler, angle, convention: str) -> tuple[Any, dict]:
    r = rotation_matrix(spatial_dims, euler=euler, angle=angle, convention=convention)
    if spatial_dims == 3:
        values = [float(a) for a in (euler or (0.0, 0.0, 0.0))]
        tag = "rot" + "_".join(f"{a:g}" for a in values)
        record = {"euler_degrees": values, "convention": convention}
    else:
        tag = "rot{:g}".format(float(angle or 0.0))
        record = {"angle_degrees": float(angle or 0.0)}
    record["matrix"] = r.tolist()
    return r, {"rotation": record, "rotation_tag": tag}


def _record(path: Path, model: GalrInference, model_path: str | Path, rot: dict) -> dict:
    meta = model.metadata
    return {
        "input": str(path),
        "model": {"file": str(model_path), "name": meta.get("name"), "version": meta.get("version"),
                  "bundle": model.info.get("bundle")},
        **rot,
    }


def run_pipeline(
    input_path: str | Path,
    output_dir: str | Path,
    model_path: str | Path,
    euler: Sequence[float] | None = None,
    angle: float | None = None,
    convention: str = "ZYX",
    device: str = "cpu",
) -> list[dict[str, str]]:
    """The app without the SDK: load -> infer -> write for every input volume.

    Returns:
        one dict of written paths (``prediction``, ``input``, ``features``) per input volume.
    """
    model = GalrInference(model_path, device=device)
    loader, writer = NiftiVolumeLoader(model.spatial_shape), ResultWriter(output_dir)
    r, rot = _rotation_record(model.spatial_dims, euler, angle, convention)
    files = input_files(input_path)
    # every input checked before the first is processed (readable, the model's dimensionality, finite voxels)
    check_image_files([str(p) for p in files], spatial_dims=model.spatial_dims, check_values=True, name="input")
    written = []
    for path in files:
        image, affine = loader(path)
        result = model(image, r)
        written.append(writer(volume_stem(path), image, affine, result, _record(path, model, model_path, rot)))
        logger.info("%s -> %s", path, written[-1]["prediction"])
    return written


if SDK_IMPORT_ERROR is None:

    class LoadOperator(Operator):
        """Emits ``(stem, image, affine)`` for each input volume (one compute call per volume)."""

        def __init__(self, fragment: Fragment, *args, input_path: Path, spatial_shape: Sequence[int], **kwargs):
            self.files = input_files(input_path)
            self.loader = NiftiVolumeLoader(spatial_shape)
            self.index = 0
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            spec.output("volume")

        def compute(self, op_input, op_output, context):
            path = self.files[self.index]
            self.index += 1
            image, affine = self.loader(path)
            op_output.emit((path, image, affine), "volume")

    class GalrInferenceOperator(Operator):
        """Runs ``GalrInference`` on each volume."""

        def __init__(self, fragment: Fragment, *args, model: GalrInference, rotation, **kwargs):
            self.model, self.rotation = model, rotation
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            spec.input("volume")
            spec.output("result")

        def compute(self, op_input, op_output, context):
            path, image, affine = op_input.receive("volume")
            op_output.emit((path, image, affine, self.model(image, self.rotation)), "result")

    class WriterOperator(Operator):
        """Writes each result with ``ResultWriter``."""

        def __init__(self, fragment: Fragment, *args, writer: ResultWriter, record, **kwargs):
            self.writer, self.record = writer, record
            self.written: list[dict[str, str]] = []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            spec.input("result").condition(ConditionType.MESSAGE_AVAILABLE)

        def compute(self, op_input, op_output, context):
            path, image, affine, result = op_input.receive("result")
            self.written.append(self.writer(volume_stem(path), image, affine, result, self.record(path)))

    class GalrApp(Application):
        """The SDK application: LoadOperator -> GalrInferenceOperator -> WriterOperator."""

        def __init__(self, *args, input_path, output_dir, model_path, euler=None, angle=None, convention="ZYX",
                     device="cpu", **kwargs):
            self.input_path, self.output_dir, self.model_path = Path(input_path), Path(output_dir), Path(model_path)
            self.euler, self.angle, self.convention, self.device = euler, angle, convention, device
            self.writer_op: WriterOperator | None = None
            super().__init__(*args, **kwargs)

        def compose(self):
            model = GalrInference(self.model_path, device=self.device)
            r, rot = _rotation_record(model.spatial_dims, self.euler, self.angle, self.convention)
            n = len(input_files(self.input_path))
            load = LoadOperator(self, CountCondition(self, n), input_path=self.input_path,
                                spatial_shape=model.spatial_shape, name="load")
            infer = GalrInferenceOperator(self, model=model, rotation=r, name="galr_inference")
            self.writer_op = WriterOperator(self, writer=ResultWriter(self.output_dir),
                                            record=lambda p: _record(Path(p), model, self.model_path, rot),
                                            name="write")
            self.add_flow(load, infer, {("volume", "volume")})
            self.add_flow(infer, self.writer_op, {("result", "result")})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--input", required=True, help="a NIfTI file or a folder of NIfTI files")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", required=True, help="TorchScript file from deploy/galr_app/export.py")
    p.add_argument("--euler", type=float, nargs=3, default=None, help="3D: intrinsic Euler angles in degrees")
    p.add_argument("--convention", default="ZYX", help="Euler convention (default ZYX, on the array axes)")
    p.add_argument("--angle", type=float, default=None, help="2D: rotation angle in degrees")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sdk", action="store_true", help="run as a MONAI Deploy App SDK application")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    kwargs = {"euler": args.euler, "angle": args.angle, "convention": args.convention, "device": args.device}
    try:
        written = _run(args, kwargs)
    except (ValueError, FileNotFoundError) as e:  # a bad input or model file: the message alone, last
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if written is None:
        return 2
    for paths in written:
        print(paths["features"])
    return 0


def _run(args: argparse.Namespace, kwargs: dict) -> list[dict[str, str]] | None:
    if args.sdk:
        if SDK_IMPORT_ERROR is not None:
            print(f"--sdk: MONAI Deploy App SDK not importable ({SDK_IMPORT_ERROR}); run without --sdk.",
                  file=sys.stderr)
            return None
        app = GalrApp(input_path=args.input, output_dir=args.output, model_path=args.model, **kwargs)
        app.run()
        return app.writer_op.written if app.writer_op is not None else []
    return run_pipeline(args.input, args.output, args.model, **kwargs)


if __name__ == "__main__":
    raise SystemExit(main())
