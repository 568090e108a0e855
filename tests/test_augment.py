"""Device augmentation: exact pad-and-crop and flips, seeded, batched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dal_runner.augment import Augment


def _image():
    return torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).repeat(64, 3, 1, 1)


def test_off_is_identity_and_flip_mirrors_exactly():
    x = _image()
    assert torch.equal(Augment(hflip=False)(x, torch.Generator().manual_seed(0)), x.float())
    out = Augment(hflip=True)(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, x[0].float().flip(-1)) for o in out]
    same = [torch.equal(o, x[0].float()) for o in out]
    assert all(f or s for f, s in zip(flipped, same)) and 10 < sum(flipped) < 54


def test_pad_and_crop_is_an_integer_shift_with_zero_fill():
    x = _image()
    out = Augment(crop_padding=2)(x, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x[0].float(), (2, 2, 2, 2))
    crops = {(dy, dx): padded[:, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)}
    for o in out:  # every output is one of the 25 crops of the zero-padded image
        assert any(torch.equal(o, c) for c in crops.values())
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5


def test_rotation_and_shift_are_seeded_and_keep_the_shape():
    x = _image()
    aug = Augment(rotation=15.0, shift=0.1, hflip=True)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("fill,numpy_mode", [("zeros", "constant"), ("nearest", "edge"), ("reflect", "symmetric")])
def test_pad_and_crop_fills_as_asked(fill, numpy_mode):
    # numpy's modes as references: edge repeats the edge pixel (Keras' nearest); symmetric mirrors
    # with the edge pixel included (Keras' and scipy's reflect)
    x = _image()
    out = Augment(crop_padding=2, fill=fill)(x, torch.Generator().manual_seed(1))
    padded = torch.from_numpy(np.pad(x[0].numpy(), ((0, 0), (2, 2), (2, 2)), mode=numpy_mode)).float()
    crops = [padded[:, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
    for o in out:
        assert any(torch.equal(o, c) for c in crops)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5


def test_rotation_brings_in_no_black_corners_unless_the_fill_is_zeros():
    x = _image() + 100  # every pixel 100..135: a zero can only come from the fill
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    for fill in ("nearest", "reflect"):
        out = Augment(rotation=30.0, shift=0.1, fill=fill)(x, gen())
        assert out.min() >= 100 - 1e-3 and out.max() <= 135 + 1e-3, fill
    assert Augment(rotation=30.0, shift=0.1, fill="zeros")(x, gen()).min() < 50


def test_rotation_is_drawn_in_degrees_and_shift_as_a_fraction_of_the_image():
    """rotation=15 turns images by up to 15 degrees (0.2618 rad), shift=0.1 moves a 32 x 20 image by
    up to 3.2 pixels across and 2.0 down: the drawn maps span those ranges, no more, no less."""
    angle, tx, ty, flip = Augment(rotation=15.0, shift=0.1).draw(4000, 20, 32, torch.device("cpu"),
                                                                   torch.Generator().manual_seed(0))
    for values, limit in ((angle, 15 * math.pi / 180), (tx, 3.2), (ty, 2.0)):
        assert float(values.abs().max()) <= limit + 1e-6
        assert float(values.abs().max()) > 0.99 * limit  # 4,000 uniform draws reach the ends
        assert abs(float(values.mean())) < 0.05 * limit  # symmetric about 0
    assert torch.equal(flip, torch.ones(4000))  # no hflip asked


def test_a_map_moves_the_pixels_by_its_pixels_and_turns_them_by_its_angle():
    """apply() with hand-made maps: a translation of (1, 2) pixels moves a bright pixel one column
    and two rows, and a quarter turn is numpy's rot90 of the image (both directions as Keras' and
    torchvision's: positive x to the right, positive y down, the angle turning counter-clockwise)."""
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0
    aug = Augment(rotation=90.0, shift=0.5)  # bilinear resampling, as a run with these keys uses
    one = lambda *m: torch.tensor([[v] for v in m], dtype=torch.float32)  # noqa: E731
    moved = aug.apply(x, one(0.0, 1.0, 2.0, 1.0))
    assert torch.allclose(moved[0, 0], torch.roll(x[0, 0], shifts=(2, 1), dims=(0, 1)), atol=1e-5)
    image = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    turned = aug.apply(image, one(math.pi / 2, 0.0, 0.0, 1.0))
    assert torch.allclose(turned[0, 0], torch.rot90(image[0, 0], 1, dims=(0, 1)), atol=1e-4)
