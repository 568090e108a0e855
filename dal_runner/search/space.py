"""The space random search and REINFORCE sample from: homogeneous ResNets A(B, i, j).

B is one of a configured list of block types (iNAS's B is fixed by arch.block), 1 <= i <= max
blocks per stack, 1 <= j <= max stacks (build_search clips it to the stacks the input supports).
A choice is the tuple (B, i, j), in the order REINFORCE's controller emits the decisions.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from dal_runner.arch import ArchSpec
from dal_runner.search.estimation import Estimate, out_of_running

Choice = Tuple[str, int, int]  # (block, n_blocks, n_stacks)
BLOCKS = ("basic", "bottleneck")


class ResNetSpace:
    def __init__(self, blocks: Sequence[str], space: Sequence[int], extra_params: Optional[Dict] = None,
                 count_params: Optional[Callable[[ArchSpec], int]] = None):
        blocks = list(blocks)
        if not blocks or any(b not in BLOCKS for b in blocks) or len(set(blocks)) != len(blocks):
            raise ValueError(f"search.blocks={blocks}: accepted: a non-empty list of distinct block types "
                             f"from {list(BLOCKS)}")
        if len(space) != 2 or any(int(v) < 1 for v in space):
            raise ValueError(f"search.space={list(space)}: accepted: [n_blocks, n_stacks], both >= 1")
        self.blocks = blocks
        self.max_blocks, self.max_stacks = int(space[0]), int(space[1])
        self.extra_params = dict(extra_params or {})
        self.count_params = count_params

    @property
    def sizes(self) -> List[int]:
        """Number of options of each decision: block type, blocks per stack, stacks."""
        return [len(self.blocks), self.max_blocks, self.max_stacks]

    def choices(self) -> List[Choice]:
        return [(b, i, j) for b in self.blocks for i in range(1, self.max_blocks + 1)
                for j in range(1, self.max_stacks + 1)]

    def spec(self, choice: Choice) -> ArchSpec:
        block, n_blocks, n_stacks = choice
        return ArchSpec("resnet", block=block, n_blocks=n_blocks, n_stacks=n_stacks, **self.extra_params)

    def position(self, spec: ArchSpec) -> Tuple[int, int]:
        """(n_blocks, n_stacks) of a previous round's architecture (any block type)."""
        if spec.name != "resnet":
            raise ValueError(f"a search over residual nets cannot continue from {spec!r}")
        return int(spec.params["n_blocks"]), int(spec.params["n_stacks"])

    def row(self, step: int, choice: Choice, estimate: Estimate, seconds: float, reused: bool) -> Dict:
        """One search.csv row: the candidate, its estimate and the estimate's fidelity."""
        spec = self.spec(choice)
        return {"step": step, "candidate": repr(spec), "n_blocks": choice[1], "n_stacks": choice[2],
                "n_params": self.count_params(spec) if self.count_params else None, **estimate.fields(),
                "seconds": round(seconds, 3), "reused": reused, "chosen": False}


def best(rows: Sequence[Dict]) -> int:
    """Index of the best row: highest V' accuracy; on a tie the smaller network, then the earlier row.

    A candidate stopped early or diverged is out of the running (a round's first candidate never stops).
    """
    def size(row: Dict) -> int:
        return row["n_params"] if row["n_params"] is not None else row["n_blocks"] * row["n_stacks"]

    return min(range(len(rows)), key=lambda k: (out_of_running(rows[k]), -rows[k]["val_accuracy"], size(rows[k]), k))
