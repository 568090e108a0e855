"""No search: the same architecture every round (the fixed baselines)."""

from __future__ import annotations

from typing import Optional

import torch

from dal_runner.arch import ArchSpec
from dal_runner.search import Estimator, SearchResult


class FixedSearch:
    def __init__(self, spec: ArchSpec):
        self.spec = spec

    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult:
        return SearchResult(self.spec)
