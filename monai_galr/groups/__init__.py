"""Batched rotation groups SO(2) and SO(3) and their action on images."""

from __future__ import annotations

from monai_galr.groups.action import rotate_image, rotation_to_theta
from monai_galr.groups.rotations import (
    compose,
    identity,
    inverse,
    quaternion_to_rotation_matrix,
    random_c4,
    random_quaternion,
    random_rotation,
    rotation_tolerance,
    snap_exact,
    validate_rotation,
)
from monai_galr.groups.so2 import angle_to_matrix, matrix_to_angle
from monai_galr.groups.so3 import (
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
)

__all__ = [
    "angle_to_matrix",
    "axis_angle_to_matrix",
    "compose",
    "euler_to_matrix",
    "identity",
    "inverse",
    "matrix_to_angle",
    "matrix_to_axis_angle",
    "matrix_to_euler",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "quaternion_to_rotation_matrix",
    "random_c4",
    "random_quaternion",
    "random_rotation",
    "rotate_image",
    "rotation_to_theta",
    "rotation_tolerance",
    "snap_exact",
    "validate_rotation",
]
