"""Architecture search strategies share one interface; the active loop does not know which runs.

``select(round_index, labeled, previous, estimate)`` returns the round's ArchSpec and the
records of every candidate it trained. ``estimate(spec, train_idx, val_idx, seed)`` trains a
candidate on S' and returns its accuracy on V' (supplied by the loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol

import torch

from dal_runner.arch import ArchSpec

Estimator = Callable[[ArchSpec, torch.Tensor, torch.Tensor, int], float]


@dataclass
class SearchResult:
    spec: ArchSpec
    candidates: List[Dict] = field(default_factory=list)  # rows for search.csv


class SearchStrategy(Protocol):
    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult: ...
