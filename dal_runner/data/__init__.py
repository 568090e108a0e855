"""Data sets held in memory as one tensor each (uint8 for images), plus what normalises them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch


# the image side of the bundled and torchvision data sets, known without reading them (the checks
# made before a sweep's jobs start clip a search's stacks to it, as the job does)
IMAGE_SIDE = {"digits": 8, "cifar10": 32, "cifar100": 32, "svhn": 32, "mnist": 28, "fashion_mnist": 28}


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # pool: uint8 N x C x H x W for images, float32 N x D for tables
    y_train: torch.Tensor  # int64 labels in [0, n_classes)
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    scale: float  # raw value that maps to 1.0 (255 for 8-bit images)
    mean: Tuple[float, ...]  # per channel (images) or per feature (tables), after scaling
    std: Tuple[float, ...]
    # content_digest() of the data set as read, before dataset.pool_size cut its pool (run.load_dataset)
    content: str = ""

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def fingerprint(self) -> dict:
        """Sizes, shape, classes and a digest of every label and of about 1,000 rows of each
        split: what a resumed run checks its data against (a file rewritten since the run began)."""
        import hashlib

        digest = hashlib.sha256()
        for tensor in (self.y_train, self.y_test, self.x_train, self.x_test):
            rows = tensor[:: max(1, len(tensor) // 1000)] if tensor.dim() > 1 else tensor
            digest.update(rows.detach().cpu().contiguous().numpy().tobytes())
        return {"name": self.name, "pool": len(self.x_train), "test": len(self.x_test),
                "input_shape": list(self.input_shape), "n_classes": self.n_classes, "sha256": digest.hexdigest()}

    def content_digest(self) -> str:
        """A digest of the examples and labels of both splits together, whatever their order or split:
        the same for every seed of digits, an OpenML table or a file split per run, different for
        other data (a label changed, another file under another dataset.root). dal-report tells runs
        of one config made on different data apart by it. Every label and every k-th value of each
        row (64 to 127 of them; all of a shorter row): each row hashes to an int64 (its values times
        fixed random weights, wrapping), the row hashes are sorted, and the sorted array is digested."""
        import hashlib

        import numpy as np

        hashes = []
        for x, y in ((self.x_train, self.y_train), (self.x_test, self.y_test)):
            if len(x) == 0:
                continue
            flat = x.detach().cpu().reshape(len(x), -1)
            values = flat[:, :: max(1, flat.shape[1] // 64)].contiguous()
            if values.is_floating_point():  # a float's bits (bf16 too), so that every change of value counts
                values = values.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[values.element_size()])
            values = values.numpy()
            weights = np.random.default_rng(0).integers(1, 2**62, size=values.shape[1] + 1, dtype=np.int64)
            row = y.detach().cpu().numpy().astype(np.int64) * weights[0]
            for j in range(values.shape[1]):  # column by column: numpy has no fast integer matmul
                row += values[:, j].astype(np.int64) * weights[j + 1]  # wraps around, as a hash may
            hashes.append(row)
        return hashlib.sha256(np.sort(np.concatenate(hashes)).tobytes()).hexdigest()

    def to(self, device: torch.device) -> "Dataset":
        """Move the tensors to the device once; normalisation then runs there, batched."""
        import dataclasses

        return dataclasses.replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                                   x_test=self.x_test.to(device), y_test=self.y_test.to(device))


def stratified_split(labels, test_fraction: float, seed: int, what: str, accepted: str):
    """(train indices, test indices) of a seeded split that keeps the class proportions, in
    scikit-learn's shuffled order; a fraction that cannot leave every class in both parts is a
    ConfigError on dataset.test_fraction naming `what` was split."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from dal_runner.errors import ConfigError

    try:
        return train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
                                random_state=seed % 2**32)
    except ValueError as exc:  # e.g. fewer test points than classes, or a class of one example
        raise ConfigError("dataset.test_fraction", test_fraction, accepted,
                          f"cannot split {what} stratified: {exc}") from None


class Normalize(torch.nn.Module):
    """Raw stored values -> float, scaled to [0, 1], standardised; the first layer of every model."""

    def __init__(self, scale: float, mean, std, is_image: bool):
        super().__init__()
        shape = (1, -1, 1, 1) if is_image else (1, -1)
        self.scale = float(scale)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / self.scale - self.mean) / self.std
