"""Training-time image augmentation, batched on the data's device (no per-sample Python).

One random affine map per image: rotation, translation (a fraction of the size, plus an
integer shift for pad-and-crop) and horizontal flip, applied with a single `grid_sample`.
Pad-and-crop is an integer translation with zero fill, so without rotation or fractional
shifts the images are resampled with `nearest` and pixels are copied exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    crop_padding: int = 0
    hflip: bool = False
    rotation: float = 0.0  # degrees
    shift: float = 0.0  # fraction of the image size

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.hflip or self.rotation or self.shift)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: N x C x H x W (any dtype, raw scale) -> float N x C x H x W, same scale."""
        n, _, h, w = x.shape
        dev = x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=dev, generator=generator) * (high - low) + low

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180) if self.rotation else torch.zeros(n, device=dev)
        # translation in pixels: fractional shift + integer pad-and-crop offset
        tx = uniform(-self.shift, self.shift) * w if self.shift else torch.zeros(n, device=dev)
        ty = uniform(-self.shift, self.shift) * h if self.shift else torch.zeros(n, device=dev)
        if self.crop_padding:
            p = self.crop_padding
            tx = tx + torch.randint(-p, p + 1, (n,), device=dev, generator=generator)
            ty = ty + torch.randint(-p, p + 1, (n,), device=dev, generator=generator)
        flip = torch.ones(n, device=dev)
        if self.hflip:
            flip = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -flip, flip)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # affine_grid maps output coords in [-1, 1] to input coords; pixel shifts scale by 2/size
        theta = torch.stack([
            torch.stack([cos * flip, -sin * h / w, -2 * tx / w], 1),
            torch.stack([sin * flip * w / h, cos, -2 * ty / h], 1),
        ], 1)
        grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
        exact = not self.rotation and not self.shift
        return F.grid_sample(x.float(), grid, mode="nearest" if exact else "bilinear",
                             padding_mode="zeros", align_corners=False)
