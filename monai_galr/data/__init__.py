"""Dataset builders (MNIST, AdrenalMNIST3D, OASIS-1), the fixed evaluation protocol and file checks."""

from __future__ import annotations

from monai_galr.data import adrenal, adrenal_synthetic
from monai_galr.data.io import atomic_output, check_image_file, check_image_files, ensure_writable_dir
from monai_galr.data.mnist import IDX_FILES, NPZ_FILE, NPZ_KEYS, load_mnist_arrays, mnist_splits, read_idx
from monai_galr.data.protocol import ANGLE_OPTIONS, attach_fixed_blocks, attach_fixed_rotations
from monai_galr.data.adrenal import (  # AdrenalMNIST3D (adrenal_ct_so3)
    ADRENAL_FILES, ADRENAL_KEYS, ADRENAL_SPLIT_SIZES, adrenal_file_name, adrenal_splits, default_synthetic_dir,
    ensure_synthetic_adrenal, ensure_synthetic_backgrounds, load_adrenal_arrays, load_backgrounds, load_adrenal_npz,
)
from monai_galr.data.adrenal_synthetic import (
    FIELD_OF_VIEW_MM,
    make_synthetic_adrenal,
    make_synthetic_backgrounds,
    save_synthetic_adrenal_nifti,
    synthetic_adrenal_volume,
    synthetic_anatomy_background,
)
from monai_galr.data.oasis import (
    OASIS_IMAGE,
    OASIS_SHAPE,
    build_oasis_datalist,
    check_volume,
    ensure_demo_oasis,
    find_oasis_subjects,
    load_oasis_datalist,
    make_demo_oasis,
    oasis_splits,
    split_subjects,
    write_datalist,
)

__all__ = [
    "ANGLE_OPTIONS",
    "IDX_FILES",
    "NPZ_FILE",
    "NPZ_KEYS",
    "attach_fixed_blocks",
    "attach_fixed_rotations",
    "load_mnist_arrays",
    "mnist_splits",
    "read_idx",
    # AdrenalMNIST3D (adrenal_ct_so3): the loaders and the synthetic set
    *adrenal.__all__,
    *adrenal_synthetic.__all__,
    # OASIS-1 (brain_mri_so3)
    "OASIS_IMAGE",
    "OASIS_SHAPE",
    "build_oasis_datalist",
    "check_volume",
    "ensure_demo_oasis",
    "find_oasis_subjects",
    "load_oasis_datalist",
    "make_demo_oasis",
    "oasis_splits",
    "split_subjects",
    "write_datalist",
    # file checks and atomic writes
    "atomic_output",
    "check_image_file",
    "check_image_files",
    "ensure_writable_dir",
]
