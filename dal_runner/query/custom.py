"""query=custom: a query strategy of the user's own, named by its import path (`query.target`).

The target is a class, built with `query.params` as keyword arguments, whose `select(ctx, k)`
returns k positions into `ctx.unlabeled` (most informative first), as the built-in strategies'
do; or a function `select(ctx, k, **params)`. `ctx` is a `dal_runner.query.QueryContext`:
`ctx.probs()` and `ctx.embeddings()` (computed once, batched, on the data's device), `ctx.model`,
`ctx.x`, `ctx.labeled`, `ctx.unlabeled`, and `ctx.generator`, the round's own seeded generator:
what draws at random from it repeats with the run's seed. A class with `state_dict()` and
`load_state_dict(state)` keeps what it learns across rounds in the run's state, so a resumed run
continues it.

The target is imported here, not through Hydra's `get_object`/`instantiate`: an error of the
user's module is reported with its file and line, a module of the working folder hidden by one of
Python's own is named as such, and the constructor runs once, in the job (the checks before any
job starts read its signature): each a line that names the key and the value.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import logging
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from dal_runner.errors import ConfigError

log = logging.getLogger("dal_runner")

ACCEPTED = ("an importable class (package.module.ClassName) with the methods select(ctx, k) and, optionally, "
            "state_dict() with load_state_dict(state); or a function select(ctx, k, **params); a module in the "
            "working folder counts")
_FILE_ONLY = {"file_only": True}  # a traceback for dal-run.log, not the terminal (progress.FileOnly)


class QueryError(RuntimeError):
    """What a custom strategy did wrong in a run (raised, or returned something that is not k positions)."""


def where(error: BaseException) -> str:
    """'file.py, line N' of the user's innermost frame in `error`'s traceback: the line that called
    ctx.probs or torch wrongly, not the check in dal-run or torch that raised. The user's frames are
    those outside dal-run, the standard library and installed packages; where there are none (a
    package of the user's installed), outside dal-run. A SyntaxError: its own line."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{os.path.basename(error.filename)}, line {error.lineno}"
    import sysconfig
    import traceback

    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    stdlib = tuple(os.path.realpath(sysconfig.get_paths(vars=v)["stdlib"]) + os.sep
                   for v in ({}, {"installed_base": sys.base_prefix, "base": sys.base_prefix}))

    def library(filename: str) -> bool:  # the standard library, or any installed package (a venv's, the
        path = os.path.realpath(filename)  # user site's, Debian's dist-packages, the base Python's)
        return path.startswith(stdlib) or bool({"site-packages", "dist-packages"} & set(path.split(os.sep)))

    frames = traceback.extract_tb(error.__traceback__)
    not_ours = [f for f in frames if not os.path.abspath(f.filename).startswith(ours)]
    theirs = [f for f in not_ours if not library(f.filename) and not f.filename.startswith("<")] or not_ours or frames
    return f"{os.path.basename(theirs[-1].filename)}, line {theirs[-1].lineno}" if theirs else "?"


def _stop_first(error: BaseException) -> None:
    """A Ctrl-C or SIGTERM that reached the user's code as another exception (an extension module's
    import makes it ImportError "initialization failed") stops the run: raised as itself."""
    from dal_runner.job_control import stop_recorded

    stop = stop_recorded()
    if stop is not None:
        raise stop from error


def _raised(error: BaseException) -> str:
    """'ValueError: message (file.py, line N)'; a SyntaxError's message names its line itself."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error}"
    return f"{type(error).__name__}: {error} ({where(error)})"


def _import(target: str) -> Any:
    """The object `target` (package.module.Name) names; the working folder is searched too (a
    console script's sys.path starts at its bin/ folder, not where dal-run was started)."""
    import importlib
    import importlib.util

    if os.getcwd() not in sys.path:  # after Python's own modules: before them, a user's select.py or
        sys.path.append(os.getcwd())  # queue.py would break the imports of every module after it
    parts = target.split(".")
    module, n = None, len(parts)
    while n > 0:  # the longest prefix that is a module
        name = ".".join(parts[:n])
        if name in sys.modules:  # imported already
            module = sys.modules[name]
            break
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # a parent is not a package
            spec = None
        except Exception as e:  # a parent package's own code raised
            _stop_first(e)
            raise ConfigError("query.target", target, ACCEPTED,
                              f"importing {'.'.join(parts[:n - 1])} raised {_raised(e)}") from None
        if spec is not None:
            try:
                module = importlib.import_module(name)
            except Exception as e:  # the user's module raised, or it imports what is not installed
                _stop_first(e)
                raise ConfigError("query.target", target, ACCEPTED, f"importing {name} raised {_raised(e)}") from None
            break
        n -= 1
    if module is None:
        raise ConfigError("query.target", target, ACCEPTED, f"no module named {parts[0]} (searched: the installed "
                          f"packages and the working folder {os.getcwd()})")
    found = module
    for i, attr in enumerate(parts[n:], start=n):
        if not hasattr(found, attr):
            shadow = os.path.join(os.getcwd(), *parts[:n]) + ".py"
            why = (f"; the working folder's {os.path.relpath(shadow)} is hidden by Python's own module "
                   f"{'.'.join(parts[:n])} ({getattr(module, '__file__', None) or 'built in'}): rename it"
                   if os.path.isfile(shadow) and os.path.abspath(getattr(module, "__file__", "") or "") != shadow
                   else "")
            raise ConfigError("query.target", target, ACCEPTED,
                              f"{'.'.join(parts[:i])} has no attribute {attr}{why}")
        found = getattr(found, attr)
    return found


def _article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def build(target: Any, params: Mapping[str, Any], construct: bool = True) -> Optional["CustomQuery"]:
    """The strategy `target` names, built with `params`; raises ConfigError (query.target, query.params).
    construct=False (the checks before any job): the target and the params' fit to its signature are
    checked, the constructor is not run (it may load a model or take a GPU); returns None."""
    if not isinstance(target, str) or not target.strip() or target.strip() != target or \
            not all(p.isidentifier() for p in target.split(".")):
        raise ConfigError("query.target", target, ACCEPTED)
    found = _import(target)
    params = dict(params)
    if inspect.isclass(found):
        for method in ("select", *(("load_state_dict",) if hasattr(found, "state_dict") else ()),
                       *(("state_dict",) if hasattr(found, "load_state_dict") else ())):
            if not callable(getattr(found, method, None)):
                why = (f"the class {found.__name__} has no {method} method" if method == "select" else
                       f"the class {found.__name__} has {'state_dict' if method != 'state_dict' else 'load_state_dict'}"
                       f" without {method}: a resumed run could not give it back its state")
                raise ConfigError("query.target", target, ACCEPTED, why)
        try:
            inspect.signature(found).bind(**params)
        except TypeError as e:
            raise ConfigError("query.params", params, f"the keyword arguments of {target}{_signature(found)}",
                              str(e)) from None
        except ValueError:  # no signature to read (a builtin): the constructor itself says
            pass
        if not construct:
            return None
        try:
            strategy = found(**params)
        except Exception as e:
            _stop_first(e)
            log.error("query.target=%s: its constructor raised", target, exc_info=True, extra=_FILE_ONLY)
            raise ConfigError("query.target", target, f"a class {target}(**query.params) builds",
                              f"{target}(**{params}) raised {_raised(e)}") from None
        return CustomQuery(target, strategy.select, strategy)
    if callable(found):
        if getattr(found, "__module__", None) == "builtins":  # exec(ctx, k) would bind, and fail in round 0
            raise ConfigError("query.target", target, ACCEPTED,
                              f"it names Python's built-in {getattr(found, '__name__', target)}, not a select(ctx, k)")
        try:
            signature = inspect.signature(found)
        except (TypeError, ValueError):  # a compiled function without one: checked when it is called
            signature = None
        if signature is not None:
            try:
                signature.bind(None, 0)
            except TypeError:
                raise ConfigError("query.target", target, ACCEPTED, f"it takes {signature}, not (ctx, k)") from None
            try:
                signature.bind(None, 0, **params)
            except TypeError as e:
                raise ConfigError("query.params", params, f"the keyword arguments of {target}{signature} after "
                                  f"(ctx, k)", str(e)) from None
        return CustomQuery(target, lambda ctx, k: found(ctx, k, **params), None) if construct else None
    raise ConfigError("query.target", target, ACCEPTED,
                      f"it names {_article(type(found).__name__)}, not a class or function")


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _not_storable(value: Any, where: str) -> Optional[str]:
    """Where `value` holds what torch.load(weights_only=True) does not read back (a numpy array, an
    object of the user's class), e.g. "state_dict()['seen'] is a numpy.ndarray"; None if nowhere."""
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):  # not numpy's
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
        if callable(getattr(strategy, "state_dict", None)):  # and load_state_dict: checked by build
            self.state_dict, self.load_state_dict = self._state_dict, self._load_state_dict

    def _call(self, method: str, *args) -> Any:
        """The user's `method`; what it raises becomes one line naming the target and the method, and
        its traceback goes to dal-run.log."""
        try:
            return getattr(self._strategy, method)(*args) if method != "select" else self._select(*args)
        except Exception as e:
            _stop_first(e)
            log.error("query.target=%s: %s raised", self.target, method, exc_info=True, extra=_FILE_ONLY)
            shown = f"{method}(ctx, k={args[1]})" if method == "select" else f"{method}()"
            from dal_runner.progress import logged_to_file

            where_logged = ("in dal-run.log" if logged_to_file() else "not logged (hydra/job_logging disables it)"
                            if log.disabled or not log.isEnabledFor(logging.ERROR)
                            else "above (no log file: hydra/job_logging)")
            raise QueryError(f"query.target={self.target}: {shown} raised {_raised(e)}; its traceback is "
                             f"{where_logged}") from None

    def _load_state_dict(self, state: Dict[str, Any]) -> None:
        self._call("load_state_dict", state)

    def _state_dict(self) -> Dict[str, Any]:
        """The strategy's state, checked to read back as the run's state is read (torch.load with
        weights_only: tensors, numbers, strings, lists, dicts), so that a resumption can use it."""
        state = self._call("state_dict")
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
        given = ctx
        if ctx.y is not None:  # the labels of S only: an unlabeled point's is -1, so none can leak into a query
            labels = ctx.y.clone()  # (a context of its own: one the strategy keeps never shows the run's labels)
            labels[ctx.unlabeled.to(labels.device)] = -1
            given = dataclasses.replace(ctx, y=labels)  # the same cache of probabilities and embeddings
        try:
            picked = self._call("select", given, k)
        finally:
            ctx.infer_seconds = given.infer_seconds
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
