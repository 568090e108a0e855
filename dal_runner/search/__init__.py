"""Architecture search strategies share one interface; the active loop does not know which runs.

The interface (fixed.py, inas.py, random.py, reinforce.py implement it)::

    select(round_index, labeled, previous, estimate) -> SearchResult

returns the round's ArchSpec and one row per candidate it estimated (search.csv). ``previous``
is the last round's choice (None in round 0). ``estimate``, supplied by the loop, trains a
candidate and scores it::

    estimate(spec, train_idx, val_idx, seed, on_epoch=None) -> accuracy on val_idx

``on_epoch(epoch, score) -> bool``, when given, is called after every epoch; ``score()`` is the
accuracy on val_idx at that point; returning True stops the training there (early stopping).
How candidates are split, subsampled and stopped is shared: see estimation.py.

A strategy with state that must survive across rounds (the REINFORCE controller) also has
``state_dict() -> dict`` and ``load_state_dict(dict)``: plain tensors, numbers and lists that
``torch.save`` / ``torch.load(weights_only=True)`` take. Restoring the state saved at a round
boundary and calling ``select`` for the next round gives the same result as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol

import torch

from dal_runner.arch import ArchSpec

Estimator = Callable[..., float]  # (spec, train_idx, val_idx, seed, on_epoch=None) -> accuracy


@dataclass
class SearchResult:
    spec: ArchSpec
    candidates: List[Dict] = field(default_factory=list)  # rows for search.csv


class SearchStrategy(Protocol):
    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult: ...
