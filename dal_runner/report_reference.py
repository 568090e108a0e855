"""dal-report's AUC-gain reference: the strategy every other one of its environment is compared
with (--reference KEY=VALUE ..., or the default: query=random, or the fixed ResNet-18 when search
strategies are compared), and the group of runs that is each strategy's reference; the keys
--strategy adds to the strategies, and the names --name gives them in the figures."""

from __future__ import annotations

from pathlib import Path
from collections import Counter
from typing import Dict, List, Optional, Sequence, Set, Tuple

from dal_runner.run_folders import ReportError, Run, _group_of, _key_order, _natural_key, group_file


def parse_reference(items: Optional[Sequence[str]]) -> Dict[str, str]:
    spec = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ReportError(f"--reference {item}: accepted: KEY=VALUE, e.g. query=random or search=fixed arch=resnet18")
        if key.strip() == "seed":
            raise ReportError(f"--reference {item}: the seed is what a group averages over (gains are paired by "
                              f"seed), not part of a strategy; accepted: strategy keys, e.g. query=random")
        if key.strip() in spec and spec[key.strip()] != value.strip():
            raise ReportError(f"--reference {item}: {key.strip()} is given twice ({key.strip()}="
                              f"{spec[key.strip()]} before); accepted: one value per key")
        spec[key.strip()] = value.strip()
    return spec


def _matches(run: Run, spec: Dict[str, str]) -> bool:
    return all(run.attrs.get(k) == v for k, v in spec.items())


class BadReference(ReportError):
    """A --reference that names no reference strategy among the runs."""


def _names_every_strategy(runs: Sequence[Run], spec: Dict[str, str]) -> bool:
    """Whether every run matches `spec` while there are several strategies: each would be its own
    reference, with gains of 0 (--reference dataset=digits; query=random when only the search varies)."""
    return all(_matches(r, spec) for r in runs) and len({r.strategy for r in runs}) > 1


def choose_reference(runs: Sequence[Run], given: Dict[str, str], search_compared: bool,
                     env_keys: Sequence[str] = (), strategy_keys: Sequence[str] = ()) -> Dict[str, str]:
    if given:
        for key, value in given.items():
            if key not in strategy_keys and (key in env_keys or _group_of(key) in env_keys):
                # a key of the environment: each environment's groups would be compared with themselves
                raise BadReference(
                    f"--reference {key}={value}: {key} tells environments apart, and runs of different "
                    f"environments are never compared; accepted: keys of the compared strategies "
                    f"({', '.join(strategy_keys) or 'query'}; dal-report --strategy adds one)")
            values = sorted({r.attrs[key] for r in runs if key in r.attrs})
            if not values:
                known = sorted({k for r in runs for k in r.attrs}, key=_key_order)
                raise BadReference(f"--reference {key}={value}: unknown key; accepted: one of {', '.join(known)}")
            if value not in values:
                raise BadReference(f"--reference {key}={value}: no completed run has it; accepted: one of {', '.join(values)}")
        if not any(_matches(r, given) for r in runs):
            raise BadReference(f"--reference {' '.join(f'{k}={v}' for k, v in given.items())}: no completed run matches all")
        if _names_every_strategy(runs, given):
            raise BadReference(f"--reference {_spec(given)}: every run has it, so it names no one strategy; accepted: "
                                 f"keys of the compared strategies ({', '.join(strategy_keys) or 'query'}; "
                                 f"dal-report --strategy adds one)")
        return dict(given)
    fixed_resnet18 = {"search": "fixed", "arch": "resnet18"}
    if search_compared and any(_matches(r, fixed_resnet18) for r in runs):
        return fixed_resnet18
    if _names_every_strategy(runs, {"query": "random"}) or not any(_matches(r, {"query": "random"}) for r in runs):
        return {}  # iNAS against random search, each with query=random; or no random at all: none, and a note
    return {"query": "random"}


def _spec(spec: Dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.items())


def _reference_of(run: Run, spec: Dict[str, str], strategy_keys: Sequence[str],
                  env_groups: Sequence[List[Run]]) -> Optional[List[Run]]:
    """The runs of the reference of `run`'s strategy: the strategy matching `spec` that agrees with
    `run` on every other strategy key (so iNAS + margin is compared with fixed ResNet-18 + margin)."""
    spec_groups = {_group_of(k) for k in spec}
    free = [k for k in strategy_keys if _group_of(k) not in spec_groups]
    found = [g for g in env_groups
             if _matches(g[0], spec) and all(g[0].attrs.get(k) == run.attrs.get(k) for k in free)]
    return found[0] if len(found) == 1 else None


def sweep_settings(paths: Sequence[Path]) -> Optional[Tuple[List[str], List[str], str]]:
    """(--strategy, --reference, where from) that the sweeps under `paths` were to be reported with:
    each sweep's report callback (multirun.yaml), else the report settings of the experiment it ran
    (+experiment=NAME's hydra.callbacks.report), so that `dal-report SWEEP` gives the report the sweep
    made or would have made. None where a path is no sweep, none has settings, or they differ."""
    from importlib.resources import as_file

    from omegaconf import OmegaConf

    found = set()
    for path in paths:
        try:
            hydra = OmegaConf.load(Path(path) / "multirun.yaml").hydra
            settings = OmegaConf.select(hydra, "callbacks.report", default=None)
            source = "the sweep's report callback"
            if settings is None:
                name = OmegaConf.select(hydra, "runtime.choices.experiment", default=None)
                settings, source = None, f"+experiment={name}"
                for c in OmegaConf.to_container(hydra.runtime.config_sources) if name else []:
                    file = group_file(str(c.get("schema")), str(c.get("path")), str(hydra.runtime.cwd),
                                      "experiment", str(name))
                    if file is not None:
                        with as_file(file) as local:
                            settings = OmegaConf.select(OmegaConf.load(local), "hydra.callbacks.report", default=None)
                        break
            strategy = tuple(map(str, (settings or {}).get("strategy") or ()))
            reference = tuple(map(str, (settings or {}).get("reference") or ()))
        except Exception:  # not a sweep (no multirun.yaml), or one written by hand
            return None
        found.add((strategy, reference, source))
    if len({(s, r) for s, r, _ in found}) != 1:
        return None
    (strategy, reference, source), *_ = sorted(found)
    return (list(strategy), list(reference), source) if strategy or reference else None


def parse_names(given: Sequence[Sequence[str]], known: Set[str]) -> Dict[str, str]:
    """dal-report --name LABEL NAME pairs, each LABEL one of `known` (the report's strategies and
    environments), each NAME shown for no other label (figures draw by name)."""
    labels = sorted(known, key=_natural_key)
    names: Dict[str, str] = {}
    for label, name in given:
        if label not in labels:
            raise ReportError(f"--name {label!r} {name!r}: no strategy or environment of these runs is labelled "
                              f"{label!r}; accepted: one of {', '.join(repr(x) for x in labels)}")
        if label in names:
            raise ReportError(f"--name {label!r} {name!r}: {label!r} is named twice; accepted: one name per label")
        if not name.strip() or name.startswith("_"):  # matplotlib leaves such a label out of a legend
            raise ReportError(f"--name {label!r} {name!r}: a legend leaves out an empty name or one that starts "
                              f"with _; accepted: a name with other characters first")
        names[label] = name
    shown = Counter(names.get(label, label) for label in labels)
    for label, name in names.items():  # one name for two labels would draw two strategies as one curve
        if shown[name] > 1:
            other = next(x for x in labels if x != label and names.get(x, x) == name)
            raise ReportError(f"--name {label!r} {name!r}: {other!r} is shown as {name!r} too; accepted: a name "
                              f"of its own for each label")
    return names


def check_strategy_keys(runs: Sequence[Run], strategy: Sequence[str]) -> None:
    """Every --strategy KEY must be a config key or group of the runs (a typo would silently leave
    the grouping as it was)."""
    # a key the runs do not read counts (trainer.entropy_lambda of cross-entropy runs alone, which
    # ranganathan_digits' end-of-sweep report names): it tells none of them apart
    known = {k for r in runs for k in (*r.attrs, *r.unread)}
    for key in strategy:
        if key == "seed":
            raise ReportError("--strategy seed: the seed is what a group averages over, not part of a strategy; "
                              "accepted: a config key or group of the runs other than seed, e.g. trainer.objective")
        if key not in known and key not in {_group_of(k) for k in known}:
            varying = sorted((k for k in known if k != "seed" and not (k.endswith(".name") and _group_of(k) in known)
                              and len({r.attrs.get(k) for r in runs}) > 1), key=_key_order)
            hint = f"; keys that differ between these runs: {', '.join(varying)}" if varying else ""
            raise ReportError(f"--strategy {key}: unknown key; accepted: a config key or group of the runs, "
                              f"e.g. trainer.objective or budget{hint}")


def strategy_keys_unused(given: Sequence[str], strategy_keys: Sequence[str]) -> List[str]:
    """A note for each --strategy KEY that tells none of the included runs apart (the same value in
    all, or read by none): it was accepted, so the reader should know it changed nothing."""
    return [f"--strategy {key}: the same in every run reported (or read by none), so it tells no strategies "
            f"apart and changed nothing" for key in given
            if not any(k == key or _group_of(k) == key for k in strategy_keys)]
