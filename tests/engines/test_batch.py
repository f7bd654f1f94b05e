"""PrepareGroupActionBatch: compositing, the image-space action on the batch, errors and seeded rotations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_galr.engines import PrepareGroupActionBatch
from monai_galr.groups import angle_to_matrix, identity


def _rot90(batch: int) -> torch.Tensor:
    return angle_to_matrix(torch.full((batch,), math.pi / 2))


def _batch(b: int = 2, size: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(b, 1, size, size, generator=g), "rotation": _rot90(b)}


def test_without_background_target_is_rotated_image():
    batch = _batch()
    x, target, args, kwargs = PrepareGroupActionBatch()(batch)
    assert torch.equal(x, batch["image"])
    torch.testing.assert_close(target, torch.rot90(batch["image"], 1, dims=(2, 3)), atol=1e-5, rtol=1e-5)
    assert len(args) == 1 and torch.equal(args[0], batch["rotation"]) and kwargs == {}


def test_background_block_does_not_rotate_but_image_does():
    batch = _batch()
    bg = torch.zeros(2, 1, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    bg[:, :, 0:3, 0:3] = 0.7
    mask[:, :, 0:3, 0:3] = 1.0
    batch.update(background=bg, background_mask=mask)
    x, target, _, _ = PrepareGroupActionBatch()(batch)
    rotated = torch.rot90(batch["image"], 1, dims=(2, 3))
    inside = mask.bool()
    # the block is at the same place, with its value, in the input and in the target
    assert torch.all(x[inside] == 0.7) and torch.all(target[inside] == 0.7)
    # elsewhere the input is the image and the target the rotated image
    assert torch.equal(x[~inside], batch["image"][~inside])
    torch.testing.assert_close(target[~inside], rotated[~inside], atol=1e-5, rtol=1e-5)
    # the block corner is rotated away in the plain rotated image: the target really differs from rot(x)
    assert not torch.allclose(target, torch.rot90(x, 1, dims=(2, 3)), atol=1e-3)


def test_background_without_mask_uses_nonzero_background():
    batch = _batch(1)
    bg = torch.zeros(1, 1, 8, 8)
    bg[..., 5:, 5:] = 1.0
    batch["background"] = bg
    x, target, _, _ = PrepareGroupActionBatch()(batch)
    assert torch.all(x[..., 5:, 5:] == 1.0) and torch.all(target[..., 5:, 5:] == 1.0)
    assert torch.equal(x[..., :5, :], batch["image"][..., :5, :])


def test_numpy_rotation_and_integer_images_are_accepted():
    batch = {"image": torch.ones(2, 1, 4, 4, dtype=torch.uint8), "rotation": np.stack([np.eye(2)] * 2)}
    x, target, (r,), _ = PrepareGroupActionBatch()(batch)
    assert x.dtype == torch.float32 and r.dtype == torch.float32
    torch.testing.assert_close(target, x, atol=1e-5, rtol=1e-5)


def test_not_a_dict_raises():
    with pytest.raises(ValueError, match="dict"):
        PrepareGroupActionBatch()([torch.zeros(1, 1, 4, 4)])


def test_missing_image_raises_naming_the_key():
    with pytest.raises(ValueError, match="'img'"):
        PrepareGroupActionBatch(image_key="img")(_batch())


def test_image_of_wrong_rank_raises():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\[, D\]\)"):
        PrepareGroupActionBatch()({"image": torch.zeros(1, 4, 4), "rotation": identity(1, 2)})


def test_missing_rotation_raises_when_required():
    batch = _batch()
    del batch["rotation"]
    with pytest.raises(ValueError, match="'rotation'"):
        PrepareGroupActionBatch(random_if_missing=False)(batch)


@pytest.mark.parametrize("rotation", [identity(2, 3), torch.eye(2), torch.ones(2, 2, 2)])
def test_bad_rotation_raises(rotation):
    batch = _batch()
    batch["rotation"] = rotation
    with pytest.raises(ValueError, match="rotation"):
        PrepareGroupActionBatch()(batch)


def test_rotation_batch_size_mismatch_raises():
    batch = _batch(2)
    batch["rotation"] = identity(3, 2)
    with pytest.raises(ValueError, match="3 rotations for 2 images"):
        PrepareGroupActionBatch()(batch)


def test_background_shape_mismatch_raises():
    batch = _batch(2)
    batch["background"] = torch.zeros(2, 1, 6, 6)
    with pytest.raises(ValueError, match="background"):
        PrepareGroupActionBatch()(batch)


def test_random_rotations_are_seeded_and_reproducible():
    batch = {"image": torch.rand(4, 1, 8, 8)}
    state = torch.get_rng_state()
    a1, a2 = (PrepareGroupActionBatch(random_if_missing=True, seed=3)(batch)[2][0] for _ in range(2))
    b = PrepareGroupActionBatch(random_if_missing=True, seed=4)(batch)[2][0]
    assert torch.equal(a1, a2)
    assert not torch.allclose(a1, b)
    # successive batches draw new rotations from the same stream
    prep = PrepareGroupActionBatch(random_if_missing=True, seed=3)
    first, second = prep(batch)[2][0], prep(batch)[2][0]
    assert torch.equal(first, a1) and not torch.allclose(first, second)
    # valid rotations, and torch's global generator is untouched
    torch.testing.assert_close(first @ first.transpose(1, 2), identity(4, 2), atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.get_rng_state(), state)


def test_3d_batch():
    vol = torch.rand(1, 1, 4, 4, 4)
    x, target, (r,), _ = PrepareGroupActionBatch()({"image": vol, "rotation": identity(1, 3)})
    torch.testing.assert_close(target, vol, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="rotation"):
        PrepareGroupActionBatch()({"image": vol, "rotation": identity(1, 2)})


def test_identity_if_missing_gives_the_input_as_target():
    x = torch.rand(3, 1, 8, 8)
    inputs, target, (r,), _ = PrepareGroupActionBatch(identity_if_missing=True)({"image": x})
    torch.testing.assert_close(target, inputs)
    torch.testing.assert_close(r, identity(3, 2))
    with pytest.raises(ValueError, match="'rotation'"):
        PrepareGroupActionBatch()({"image": x})
