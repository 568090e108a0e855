"""Explicit randomness: every random choice draws from a generator named by its purpose.

``derive_seed(seed, "initial")`` and ``derive_seed(seed, "train", round)`` are independent
streams of the run seed, so adding a random choice somewhere never shifts another one.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(seed: int, *purpose: object) -> int:
    key = [zlib.crc32(str(p).encode()) for p in purpose]
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=key).generate_state(1, np.uint64)[0] >> 1)


def torch_generator(seed: int, *purpose: object, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *purpose))
    return g


def numpy_rng(seed: int, *purpose: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *purpose))
