"""scikit-learn's bundled 8x8 digits (UCI ML hand-written digits): real data, no download."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from dal_runner.data import Dataset, stratified_split
from dal_runner.errors import ConfigError
from dal_runner.seeding import derive_seed


def load(test_fraction: float, seed: int) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("dataset.test_fraction", test_fraction, "a fraction in (0, 1), e.g. 0.3")
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # 1797 x 8 x 8, values 0..16
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, derive_seed(seed, "dataset", "digits", "split"), "digits",
                                   "a fraction that leaves every class in both parts, e.g. 0.3")
    x_tr, x_te, y_tr, y_te = images[train], images[test], labels[train], labels[test]
    scaled = x_tr.astype(np.float64) / 16.0
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(x_tr).unsqueeze(1).contiguous(),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te).unsqueeze(1).contiguous(),
        y_test=torch.from_numpy(y_te),
        n_classes=10,
        scale=16.0,
        mean=(float(scaled.mean()),),
        std=(float(scaled.std()),),
    )
