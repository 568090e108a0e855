"""Training-time image augmentation, batched on the data's device (no per-sample Python).

One random affine map per image: rotation, translation (a fraction of the size, plus an
integer shift for pad-and-crop) and horizontal flip, applied with a single `grid_sample`.
Pad-and-crop is an integer translation, so without rotation or fractional shifts the images
are resampled with `nearest` and pixels are copied exactly. What a map brings in from outside the
image is `fill`: zeros (pad-and-crop as torchvision's RandomCrop does it), nearest (the edge pixel
repeated: Keras' ImageDataGenerator's default, which the active-iNAS authors' code used) or
reflect (mirrored at the edge, the edge pixel included: Keras' and scipy's "reflect").
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
    fill: str = "zeros"  # zeros | nearest | reflect: what comes in from outside the image

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.hflip or self.rotation or self.shift)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: N x C x H x W (any dtype, raw scale) -> float N x C x H x W, same scale."""
        return self.apply(x, self.draw(x.shape[0], x.shape[2], x.shape[3], x.device, generator))

    def draw(self, n: int, h: int, w: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """The random part of a batch's maps, 4 x n (rotation in radians, x and y translation in
        pixels, flip as -1/+1), drawn from `generator`. Kept apart from `apply` so that a training step
        captured as a CUDA graph replays the maps' arithmetic and resampling while the draws stay
        outside it, on the same generator and in the same order as an eager step's."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=device, generator=generator) * (high - low) + low

        zeros = torch.zeros(n, device=device)
        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180) if self.rotation else zeros
        # translation in pixels: fractional shift + integer pad-and-crop offset
        tx = uniform(-self.shift, self.shift) * w if self.shift else zeros
        ty = uniform(-self.shift, self.shift) * h if self.shift else zeros
        if self.crop_padding:
            p = self.crop_padding
            tx = tx + torch.randint(-p, p + 1, (n,), device=device, generator=generator)
            ty = ty + torch.randint(-p, p + 1, (n,), device=device, generator=generator)
        flip = torch.ones(n, device=device)
        if self.hflip:
            flip = torch.where(torch.rand(n, device=device, generator=generator) < 0.5, -flip, flip)
        return torch.stack([angle, tx, ty, flip])

    def apply(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """x resampled by the maps `draw` made for it (one per image)."""
        n, _, h, w = x.shape
        angle, tx, ty, flip = maps
        cos, sin = torch.cos(angle), torch.sin(angle)
        # affine_grid maps output coords in [-1, 1] to input coords; pixel shifts scale by 2/size
        theta = torch.stack([
            torch.stack([cos * flip, -sin * h / w, -2 * tx / w], 1),
            torch.stack([sin * flip * w / h, cos, -2 * ty / h], 1),
        ], 1)
        grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
        exact = not self.rotation and not self.shift
        return F.grid_sample(x.float(), grid, mode="nearest" if exact else "bilinear",
                             padding_mode=FILLS[self.fill], align_corners=False)


# dataset.augment.fill -> grid_sample's padding_mode (with align_corners=False, "reflection"
# mirrors about the image's outer edge, so the edge pixel is repeated once: d c b a | a b c d)
FILLS = {"zeros": "zeros", "nearest": "border", "reflect": "reflection"}
