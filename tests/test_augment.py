"""Device augmentation: exact pad-and-crop and flips, seeded, batched."""

from __future__ import annotations

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
