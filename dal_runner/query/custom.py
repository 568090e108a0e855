"""query=custom: a query strategy of the user's own, named by its import path (`query.target`).

The target is a class, built with `query.params` as keyword arguments, whose `select(ctx, k)`
returns k positions into `ctx.unlabeled` (most informative first), as the built-in strategies'
do; or a function `select(ctx, k, **params)`. `ctx` is a `dal_runner.query.QueryContext`:
`ctx.probs()` and `ctx.embeddings()` (computed once, batched, on the data's device), `ctx.model`,
`ctx.x`, `ctx.labeled`, `ctx.unlabeled`, and `ctx.generator`, the round's own seeded generator:
what draws at random from it repeats with the run's seed. A class with `state_dict()` and
`load_state_dict(state)` keeps what it learns across rounds in the run's state, so a resumed run
continues it.

Hydra's `get_class`/`get_method` find the target; `instantiate` is not used because the checks a
user needs before any job starts (the target exists and is a strategy, its constructor takes
these params) and after each query (k distinct positions in range) are dal-run's, each a line that
names the key and the value.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from dal_runner.errors import ConfigError

log = logging.getLogger("dal_runner")

ACCEPTED = ("an importable class (package.module.ClassName, or package.module:ClassName) with a method "
            "select(ctx, k), or a function select(ctx, k, **params); a module in the working folder counts")


class QueryError(RuntimeError):
    """What a custom strategy did wrong in a run (raised, or returned something that is not k positions)."""


def _locate(target: str) -> Any:
    """The object `target` names; the working folder is searched too (a console script's own
    sys.path starts at its bin/ folder, not where dal-run was started, as `python -m` would)."""
    from hydra.utils import get_object

    path = target.replace(":", ".")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    hydra_log = logging.getLogger("hydra.utils")  # it logs each failure as an error too: said once, below
    hydra_log.disabled = True
    try:
        return get_object(path)
    except Exception as e:  # Hydra's ImportError "Error loading '...'" with the cause below it, or the module's own
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if lines and lines[0].startswith("Error loading"):
            lines = lines[1:]
        cause = " ".join(lines) if lines else type(e).__name__
        raise ConfigError("query.target", target, ACCEPTED, f"cannot be imported: {cause}") from None
    finally:
        hydra_log.disabled = False


def build(target: Any, params: Mapping[str, Any]) -> "CustomQuery":
    """The strategy `target` names, built with `params`; raises ConfigError (query.target, query.params)."""
    if not isinstance(target, str) or not target.strip() or target.strip() != target:
        raise ConfigError("query.target", target, ACCEPTED)
    found = _locate(target)
    params = dict(params)
    if inspect.isclass(found):
        if not callable(getattr(found, "select", None)):
            raise ConfigError("query.target", target, ACCEPTED, f"the class {found.__name__} has no select method")
        try:
            inspect.signature(found).bind(**params)
        except TypeError as e:
            raise ConfigError("query.params", params, f"the keyword arguments of {target}{_signature(found)}",
                              str(e)) from None
        except ValueError:  # no signature to read (a builtin): the constructor itself says
            pass
        try:
            strategy = found(**params)
        except Exception as e:
            raise ConfigError("query.params", params, f"arguments {target}{_signature(found)} accepts",
                              f"{target}(**query.params) raised {type(e).__name__}: {e}") from None
        return CustomQuery(target, strategy.select, strategy)
    if callable(found):
        try:
            inspect.signature(found).bind(None, 0, **params)
        except TypeError as e:
            raise ConfigError("query.params", params, f"the keyword arguments of {target}{_signature(found)} after "
                              f"(ctx, k)", str(e)) from None
        except ValueError:
            pass
        return CustomQuery(target, lambda ctx, k: found(ctx, k, **params), None)
    raise ConfigError("query.target", target, ACCEPTED, f"it names a {type(found).__name__}, not a class or function")


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _not_storable(value: Any, where: str) -> Optional[str]:
    """Where `value` holds what torch.load(weights_only=True) does not read back (a numpy array, an
    object of the user's class), e.g. "state_dict()['seen'] is a numpy.ndarray"; None if nowhere."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return None
    if isinstance(value, (list, tuple)):
        return next((b for i, v in enumerate(value) if (b := _not_storable(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        return next((b for k, v in value.items() if (b := _not_storable(v, f"{where}[{k!r}]"))), None)
    return f"{where} is a {type(value).__module__}.{type(value).__qualname__}"


class CustomQuery:
    """A user's strategy, with what it returns checked: k distinct positions into ctx.unlabeled."""

    def __init__(self, target: str, select: Callable, strategy: Any):
        self.target, self._select, self._strategy = target, select, strategy
        if callable(getattr(strategy, "state_dict", None)):
            self.state_dict = self._state_dict
        if callable(getattr(strategy, "load_state_dict", None)):
            self.load_state_dict = strategy.load_state_dict

    def _state_dict(self) -> Dict[str, Any]:
        """The strategy's state, checked to read back as the run's state is read (torch.load with
        weights_only: tensors, numbers, strings, lists, dicts), so that a resumption can use it."""
        state = self._strategy.state_dict()
        bad = _not_storable(state, "state_dict()")
        if bad is None:
            buf = io.BytesIO()
            try:
                torch.save(state, buf)
                buf.seek(0)
                torch.load(buf, weights_only=True)
            except Exception as e:
                bad = f"state_dict() ({type(e).__name__})"
        if bad is not None:
            raise QueryError(f"query.target={self.target}: {bad}, which the run's state cannot keep; accepted: "
                             "tensors, numbers, strings, None, and lists, tuples and dicts of them") from None
        return state

    def select(self, ctx, k: int) -> torch.Tensor:
        n = len(ctx.unlabeled)
        try:
            picked = self._select(ctx, k)
        except Exception as e:
            log.error("query.target=%s: select raised", self.target, exc_info=True)
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) raised {type(e).__name__}: {e} "
                             "(its traceback is in dal-run.log)") from None
        accepted = f"accepted: {k} distinct integer positions into ctx.unlabeled (0 .. {n - 1})"
        try:
            positions = torch.as_tensor(picked)
        except Exception:
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) returned a "
                             f"{type(picked).__name__}; {accepted}") from None
        if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) returned {positions.dtype} "
                             f"values; {accepted}")
        positions = positions.reshape(-1).long().cpu() if positions.dim() <= 1 else positions
        if positions.dim() != 1 or len(positions) != k:
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) returned "
                             f"{tuple(positions.shape)} positions; {accepted}")
        if k and (int(positions.min()) < 0 or int(positions.max()) >= n):
            bad = positions[(positions < 0) | (positions >= n)][0]
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) returned position {int(bad)}, "
                             f"outside the {n} unlabeled points; {accepted}")
        if len(torch.unique(positions)) != k:
            raise QueryError(f"query.target={self.target}: select(ctx, k={k}) returned a position twice; {accepted}")
        return positions
