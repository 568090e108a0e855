"""Labeled / unlabeled bookkeeping over pool indices (S and U of Algorithm 2)."""

from __future__ import annotations

from typing import Iterable, List

import torch


class Pool:
    def __init__(self, size: int):
        self.size = size
        self._is_labeled = torch.zeros(size, dtype=torch.bool)
        self.order: List[int] = []  # pool indices in the order they were labeled

    @property
    def n_labeled(self) -> int:
        return len(self.order)

    @property
    def n_unlabeled(self) -> int:
        return self.size - len(self.order)

    def labeled(self) -> torch.Tensor:
        return torch.tensor(self.order, dtype=torch.long)

    def unlabeled(self) -> torch.Tensor:
        return torch.nonzero(~self._is_labeled, as_tuple=False).flatten()

    def add(self, indices: Iterable[int]) -> None:
        indices = [int(i) for i in indices]
        if len(set(indices)) != len(indices) or self._is_labeled[indices].any():
            raise ValueError("a pool index was queried twice")
        self._is_labeled[indices] = True
        self.order.extend(indices)
