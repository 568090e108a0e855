"""Resume state: what a run needs to continue after its last complete round.

One file, ``<run>/state/state.pt``, replaced atomically at the end of every round (after the
query, so it holds S_{t+1}; after the last round it is marked ``finished``, so a run
launched again into its completed folder is kept, not run again): the labeled pool indices in
the order they were added, the round's architecture, the records written so far, the states
of a stateful search or query (the REINFORCE controller, ALBL's bandit), torch's global RNG
states, and the resolved config it was made with. Every other random choice derives from
(seed, purpose, round) (`dal_runner.seeding`), so a resumed run repeats an uninterrupted one bit for bit on the same
device. The round's model is not stored: every round trains its model from scratch (Algorithm 2,
line 7), so it would save no work. Only with ``search.inherit`` are weights stored: those of the
round's chosen candidate, which the next round's candidates start from ("parent").

The file holds only tensors, numbers, strings, lists and dicts, and is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from dal_runner.io import STATE_DIR, write_bytes_atomic

STATE_FILE = "state.pt"
VERSION = 3  # 2: search.inherit keeps the chosen candidate ("parent"); 3: a state after the last round, "finished"
READABLE = (2, 3)  # a version-2 state is never finished: it is read as one
# keys that may differ between a run and its resumption: where it runs and where data lives
NOT_PROTOCOL = ("resume", "output_root", "device", "dataset.root", "dataset.download")
# Keys added to the config after runs were first written, with the value that does what a run made
# before them did: such a run lacks the key and is the same protocol where the key has this value
# (keys added with a null default are the same by their null; divergence_factor's null is the NaN-only
# check that came before it). trainer.cuda_graphs replays the
# eager step's computation (the CPU never captures), so True is no change of protocol either.
EARLIER_VALUES = {"dataset.augment.fill": "zeros", "dataset.layout": "auto", "dataset.labels": "fine",
                  "query.variant": "exp4p", "query.arms": "points", "search.inherit": False,
                  "search.stop_margin": 0.1, "search.subset": 1.0, "trainer.precision": "fp32",
                  "trainer.cuda_graphs": True, "trainer.deterministic": False, "trainer.divergence_factor": None,
                  "trainer.grad_clip_value": None}


class ResumeError(Exception):
    """A resume request that cannot be honoured: a one-line reason and what is accepted."""

    def __init__(self, reason: str, accepted: str = "a run folder dal-run wrote, with state/state.pt"):
        super().__init__(reason)
        self.accepted = accepted


def state_path(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_DIR / STATE_FILE


def save(run_dir: Path, state: Dict[str, Any]) -> None:
    path = state_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"version": VERSION, **state}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load(run_dir: Path, mmap: bool = False) -> Dict[str, Any]:
    """The saved state. mmap=True maps its tensors instead of reading them (weights with
    search.inherit): for the checks before a run starts, which read only the config."""
    path = state_path(run_dir)
    if not path.is_file():
        from dal_runner.io import STATUS_JSON, read_json_object

        done = (read_json_object(Path(run_dir) / STATUS_JSON) or {}).get("round")
        why = (f"its status.json says round {done}, so the file was removed or moved" if isinstance(done, int)
               and done > 0 else "the run stopped before its first round ended")
        raise ResumeError(f"no {STATE_DIR}/{STATE_FILE} there: {why}",
                          "a run folder that completed at least one round, with its state (start this one again "
                          "instead)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated or foreign file
        raise ResumeError(f"{STATE_DIR}/{STATE_FILE} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("version") not in READABLE:
        raise ResumeError(f"{STATE_DIR}/{STATE_FILE} is not a dal-run state of version {' or '.join(map(str, READABLE))}")
    return state


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict) and node and all(isinstance(k, str) for k in node):
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def differences(saved: Dict[str, Any], current: Dict[str, Any], limit: int = 3) -> List[str]:
    """Protocol keys whose values differ, as 'key: saved -> current' (at most `limit`, then a count).

    A key the saved config lacks and the current one has as null is the same: a key added in a
    later version, whose null keeps the earlier behaviour (trainer.stop_at_train_accuracy); so is
    one of EARLIER_VALUES at the value that does what the run did before the key existed."""
    a, b = flatten(saved), flatten(current)
    earlier = {k: v for k, v in EARLIER_VALUES.items() if k in b and k not in a}
    a.update(earlier)
    keys = sorted(k for k in set(a) | set(b)
                  if k not in NOT_PROTOCOL and not k.startswith("hydra") and a.get(k, "<unset>") != b.get(k, "<unset>")
                  and not (k not in a and b[k] is None))
    # an option that differs (arch.name: mlp there, resnet here) first, then the keys given apart
    # from it; last, the keys that follow from the option (arch.hidden, arch.block, ...)
    options = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".name")}
    keys.sort(key=lambda k: (not k.endswith(".name"), k.split(".", 1)[0] in options))
    made_before = " (made before dal-run had this key)"
    shown = [f"{k}: {_as_typed(a.get(k, '<unset>'))} there{made_before if k in earlier else ''}, "
             f"{_as_typed(b.get(k, '<unset>'))} here" for k in keys[:limit]]
    if len(keys) > limit:
        shown.append(f"and {len(keys) - limit} more")
    return shown


def _as_typed(value: Any) -> str:
    """A config value as an override writes it: null, true, false (not Python's None, True)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return f"[{', '.join(_as_typed(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_as_typed(v)}" for k, v in value.items()) + "}"
    return str(value)


def check_same_config(run_dir: Path, saved: Dict[str, Any], current: Dict[str, Any], relaunch: bool = False) -> None:
    """`relaunch`: a run launched again into its folder (hydra.run.dir), where no override gives the
    default config, not the run's."""
    diff = differences(saved, current)
    if diff:
        a, b, shown = flatten(saved), flatten(current), {d.split(":", 1)[0] for d in diff}
        older = [f"{k}={v}" for k, v in sorted(EARLIER_VALUES.items()) if k in shown and k in b and k not in a]
        raise ResumeError(f"the run was made with another config ({'; '.join(diff)})",
                          (f"the run's own overrides (dal-run {shlex.quote(f'resume={run_dir}')} reuses them), or another "
                           f"hydra.run.dir for a new run" if relaunch else
                           "the run's own overrides, or none (dal-run resume=PATH reuses them)")
                          + (f"; for a key the run was made without, the value that does what it did: "
                             f"{' '.join(older)}" if older else ""))


def check_same_data(saved: Optional[Dict[str, Any]], current: Dict[str, Any]) -> None:
    """The data a run continues on must be those it began with (a state written before states
    recorded them, None, is not checked)."""
    if saved is None or saved == current:
        return
    keys = [k for k in ("name", "pool", "test", "input_shape", "n_classes") if saved.get(k) != current.get(k)]
    what = "; ".join(f"{k}: {saved.get(k)} then, {current.get(k)} now" for k in keys) or \
        "the same sizes, other values (a file rewritten since the run began)"
    raise ResumeError(f"its data changed since the run began ({what})",
                      "the data set the run began with (dataset.path / dataset.root holding the same files)")


def machine(device: torch.device) -> Dict[str, Any]:
    """What a run's arithmetic depends on beyond its config and seed: the device (a GPU's model)
    and, on the CPU, torch's thread count (how reductions are split, so their rounding)."""
    if device.type == "cuda":
        return {"device": f"cuda ({torch.cuda.get_device_name(device)})"}
    return {"device": "cpu", "threads": torch.get_num_threads()}


def describe_machine(m: Dict[str, Any]) -> str:
    return m["device"] + (f" with {m['threads']} thread(s)" if "threads" in m else "")


def rng_states(device: torch.device) -> Dict[str, Any]:
    states: Dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(states: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def component_state(obj: Any) -> Optional[Dict[str, Any]]:
    """The state of a stateful search or query strategy (one with state_dict), else None."""
    fn = getattr(obj, "state_dict", None)
    return fn() if callable(fn) else None


def restore_component(obj: Any, state: Optional[Dict[str, Any]], what: str) -> None:
    fn = getattr(obj, "load_state_dict", None)
    if state is not None:
        if not callable(fn):
            raise ResumeError(f"the saved state has a {what} state but this {what} keeps none")
        fn(state)
