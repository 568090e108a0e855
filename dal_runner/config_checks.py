"""The composed config's checks before a run starts, and one line for what Hydra or OmegaConf
reject: the key, the value given and what is accepted (`dal-run`'s preflight calls these)."""

from __future__ import annotations

import re
from typing import Any, List, Optional

from omegaconf import DictConfig

from dal_runner.errors import ConfigError, as_config_error


def explain(exc: BaseException, overrides: List[str]) -> str:
    """One line for a Hydra/OmegaConf composition error: the key, the value, what is accepted."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        m = re.search(r"Could not find '([^']*)'", str(exc))
        missing = m.group(1) if m else str(exc)
        group, _, option = missing.rpartition("/")
        if exc.options:
            return f"{group}={option}: unknown option; accepted: one of {', '.join(exc.options)}"
        return f"{missing}: config not found"
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    full_key = getattr(cause, "full_key", None)
    if full_key:
        matching = [o for o in overrides if o.lstrip("+~").split("=")[0] == full_key]
        # a sweep's job overrides come escaped (\\$\\{...\\}): shown as typed
        given = re.sub(r"\\(.)", r"\1", matching[-1].partition("=")[2]) if matching else None
        item = re.fullmatch(r"(.+)\[(\d+)\]", full_key)
        if not matching and item:  # an item of a list given whole: trainer.lr_milestones=[a] -> [0]=a
            whole = [o for o in overrides if o.lstrip("+~").split("=")[0] == item.group(1)]
            items = whole[-1].partition("=")[2].strip().strip("[]").split(",") if whole else []
            given = items[int(item.group(2))].strip() if int(item.group(2)) < len(items) else None
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            append = _append_hint(str(exc))
            if "not in struct" in str(cause) and "Dict[" in str(cause) and append:
                # a free-form mapping (hydra.launcher.additional_parameters): Hydra adds its keys with +
                return (f"{full_key}: not a key of {full_key.rpartition('.')[0]} yet; accepted: {append} "
                        f"(+ adds a key to a mapping)")
            return f"{full_key}: unknown key{_accepted_keys(full_key, overrides)}"
        msg = str(cause).splitlines()[0]
        if matching and matching[-1].startswith("~"):
            return _deleted(full_key)
        wanted = re.search(r"converted to (\w+)", msg) or re.search(r"is not a valid (bool)", msg)
        if wanted:
            # a key given twice: OmegaConf stops at the first value it cannot convert, not the last
            converts = {"Integer": r"[-+]?\d+", "Float": r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?inf|nan",
                        "Boolean": r"true|false|yes|no|on|off|1|0", "bool": r"true|false|yes|no|on|off|1|0"}.get(
                wanted.group(1))
            values = [o.partition("=")[2] for o in matching]
            if converts and len(values) > 1:
                given = next((v for v in values if not re.fullmatch(converts, v.strip(), re.IGNORECASE)), given)
            kind = {"Integer": "an integer", "Float": "a number (Float)", "Boolean": "true or false", "bool": "true or false",
                    "String": "a string"}.get(wanted.group(1), wanted.group(1))
            return f"{full_key}={given}: wrong type; accepted: {kind}"
        if given and "${hydra:job." in given and "Incompatible value 'None'" in msg:  # a single run has no job number
            example = f", e.g. {full_key}=0" if full_key == "seed" else ""
            return (f"{full_key}={given}: only a sweep's jobs have a number (a single run's is None); accepted: "
                    f"a value{example}, or the sweep: dal-run -m {full_key}='{given}' ...")
        if "Interpolation key" in msg or "Unsupported interpolation" in msg:
            return f"{full_key}={given}: {msg}; accepted: a value, or ${{key}} naming a key of the config"
        if "is not Optional" in msg:
            return f"{full_key}=null: this key needs a value; accepted: {full_key}=<value> (see dal-run --help)"
        if re.match(r"Cannot convert '(list|dict)' to string", msg):  # device=[cpu]
            return f"{full_key}={given}: wrong type; accepted: one value, not a list or mapping (dal-run --help)"
        if "is not a ListConfig" in msg:
            return f"{full_key}={given}: wrong type; accepted: a list, e.g. {full_key}=[1,2]"
        if re.search(r"Cannot assign \w+ to Dict\[", msg):  # a free-form mapping (query.params) given a value
            return (f"{full_key}={given}: wrong type; accepted: a mapping, e.g. +{full_key}={{a:1,b:2}} (+ adds "
                    f"keys to it), or its keys one by one, +{full_key}.<key>=<value>")
        schema = re.search(r"is not a subclass of (\w+)", msg)
        if schema:
            return f"{full_key}={given}: wrong type; accepted: its keys one by one, e.g. {full_key}.<key>=<value> " \
                   f"(dal-run --cfg job shows them)"
        return f"{full_key}={given}: {msg}" if given is not None else f"{full_key}: {msg}"
    return hydra_message(exc, overrides)


def _append_hint(text: str) -> Optional[str]:
    """The override Hydra suggests in "To append to your config use +key=value", if it does."""
    found = re.search(r"use (\+\S.*)$", text, re.MULTILINE)
    return found.group(1) if found else None


def _deleted(key: str) -> str:
    """`~key` of a key every run needs (Hydra refuses some deletions itself, check_schema the rest)."""
    return f"~{key}: a key dal-run needs cannot be deleted; accepted: {key}=<value> to change it"


_GROUPS = ("dataset", "arch", "search", "query", "budget", "trainer")


def hydra_message(exc: BaseException, overrides: List[str]) -> str:
    """One line for an override Hydra cannot parse or apply, with what is accepted."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    no_match = re.match(r"Could not override '([^']+)'\. No match in the defaults list", first)
    if no_match:  # a group the defaults do not hold: experiment=X for +experiment=X
        group = no_match.group(1)
        typed = next((o for o in overrides if o.split("=", 1)[0] == group), group)
        append = _append_hint(text)
        if group == "experiment":
            from dal_runner.cli_help import group_options

            known = list(group_options()["experiment"])
            option = typed.partition("=")[2]
            accepted = f"+{typed}" if option in known else "+experiment=<one of them>"
            return (f"{typed}: an experiment is added to the run's configs with +; accepted: {accepted} "
                    f"(experiments: {', '.join(known)})")
        if append:
            return f"{typed}: {group} is not chosen by default; accepted: {append} to add it"
    already = re.match(r"Could not append to config\. An item is already at '([^']+)'", first)
    if already:  # +seed=3: seed is there already
        key = already.group(1)
        given = next((o for o in overrides if o.startswith("+") and not o.startswith("++")
                      and o[1:].split("=", 1)[0] == key), f"+{key}=<value>")
        value = given.partition("=")[2]
        return (f"{given}: {key} is already in the config (+ adds a key that is not); accepted: {key}={value}, "
                f"or ++{key}={value} (sets it whether or not it is there)")
    multiple = re.match(r"Multiple values for (\w+)\.", first)
    if multiple:  # +experiment=a +experiment=b
        group = multiple.group(1)
        given = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == group]
        values = ",".join(o.partition("=")[2] for o in given)
        return (f"{' '.join(given) or group}: one {group} per run; accepted: one of them, or dal-run -m "
                f"+{group}={values} for a run of each")
    if first.startswith("Ambiguous value for argument"):
        given = first.split("'", 1)[1].rsplit("'", 1)[0] if "'" in first else first
        return (f"{given}: a comma-separated value; accepted: dal-run -m ... to sweep over it (one run per "
                f"value), key=[a,b] for a list, or key='a,b' for a string")
    if first.startswith("Error parsing override"):
        given = first.split("'", 1)[1].rsplit("'", 1)[0] if "'" in first else first
        if "=" not in given:
            return f"{given}: no value; accepted: key=value, +key=value to add a key, ~key to delete one"
        return f"{given}: Hydra cannot parse this override; accepted: key=value, a value with special " \
               f"characters in quotes (key='...')"
    from hydra.errors import OverrideParseException

    if isinstance(exc, OverrideParseException):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        def parses(o: str) -> bool:
            try:
                OverridesParser.create().parse_overrides([o])
                return True
            except OverrideParseException:
                return False

        given = next((o for o in overrides if not parses(o)), first)
        if "~" in given.partition("=")[2]:
            return f"{given}: Hydra cannot parse this override ({first}); accepted: a full path (Hydra does not " \
                   f"expand ~; from a shell, unquoted: key=$HOME/...)"
        return f"{given}: Hydra cannot parse this override ({first}); accepted: key=value, a value with " \
               f"special characters (, [ ] {{ }} $ ...) in quotes, e.g. key='a,b'"
    wrong_key = re.search(r"In '([^']+)': \w+ raised while composing config:\nKey '(\w+)' not in '(\w+)'\n\s+"
                          r"full_key: ([\w.]+)", text)
    if wrong_key:
        source, full_key = wrong_key.group(1), wrong_key.group(4)
        group, _, leaf = full_key.rpartition(".")
        src = f"+{source.replace('/', '=', 1)}" if source.startswith("experiment/") else source
        chosen = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == group), None)
        which = f"{group}={chosen}" if chosen else f"the chosen {group}"
        return (f"{src}: sets {full_key}, a key {which} does not have{_options_having(group, leaf)}; accepted: "
                f"{'an' if group[:1] in 'aeiou' else 'a'} {group} option with that key, or {src} with its own {group}")
    if first.startswith("Config group override must be a string"):
        bad = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") in _GROUPS
                    and re.fullmatch(r"[-+.\d]+|true|false|null", o.partition("=")[2].lower())), None)
        if bad:
            from dal_runner.cli_help import group_options

            group = bad.split("=", 1)[0].lstrip("+~")
            return f"{bad}: unknown option; accepted: one of {', '.join(group_options()[group])}"
    return first


def _options_having(group: str, key: str) -> str:
    """' (a key of group=a, group=b)' for the options of `group` that have `key`, else ''."""
    from dal_runner.cli_help import group_options, option_keys
    from dal_runner.config import SCHEMAS

    if group not in SCHEMAS:
        return ""
    try:
        having = [o for o in group_options().get(group, {}) if key in option_keys(group, o)]
    except Exception:  # a conf file option_keys cannot read: the message goes without the hint
        return ""
    return f" (a key of {', '.join(f'{group}={o}' for o in having)})" if having else ""


def _accepted_keys(full_key: str, overrides: List[str]) -> str:
    """'; accepted: ...' for an unknown key: the keys of the option chosen for its group (and the
    options that have the key, if any), else those of a fixed schema."""
    import dataclasses

    from dal_runner.config import SCHEMAS, BudgetConfig, RunConfig, TrainerConfig

    parent, _, leaf = full_key.rpartition(".")
    cls = {"": RunConfig, "budget": BudgetConfig, "trainer": TrainerConfig}.get(parent)
    if cls is not None:
        return "; accepted: one of " + ", ".join(f.name for f in dataclasses.fields(cls))
    if parent not in SCHEMAS:  # e.g. hydra.launcher: the keys the composed config has there
        try:
            from hydra import compose
            from omegaconf import DictConfig, OmegaConf

            kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{parent}.")]
            node = OmegaConf.select(compose("config", overrides=kept, return_hydra_config=True), parent)
        except Exception:
            node = None
        basic = isinstance(node, DictConfig) and "basic_launcher" in str(node.get("_target_"))
        if parent == "hydra.launcher" and basic:
            # the default launcher runs the jobs here, one after another, and has no resources
            return (" of hydra.launcher: the default launcher (jobs one after another in this process) has none; "
                    f"accepted: hydra/launcher=local or hydra/launcher=slurm before {full_key} (their keys: "
                    "timeout_min, cpus_per_task, gpus_per_node, mem_gb, ...)")
        if isinstance(node, DictConfig) and len(node):
            return f" of {parent}; accepted: one of " + ", ".join(str(k) for k in node.keys())
        return "; accepted: see dal-run --help"
    elsewhere = _options_having(parent, leaf)
    try:  # the option this command line chooses, composed without the keys it cannot take
        from hydra import compose

        kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{parent}.")]
        option = str(compose("config", overrides=kept, return_hydra_config=True).hydra.runtime.choices[parent])
        accepted = _option_accepts(parent, option)
    except Exception:
        keys = sorted({f.name for c in SCHEMAS[parent].values() for f in dataclasses.fields(c)} - {"name"})
        return f"{elsewhere}; accepted: keys of the chosen {parent} option, e.g. " + ", ".join(keys)
    return f" for {parent}={option}{elsewhere}; accepted: {accepted}"


def _option_accepts(group: str, option: str) -> str:
    """What `group=option` takes, in the order of its file: 'one of a, b' or 'none (...)'. Its
    name is not among them: the option sets it."""
    from dal_runner.cli_help import option_keys

    keys = [k for k in option_keys(group, option) if k != "name"]
    return "one of " + ", ".join(keys) if keys else f"none ({group}={option} has no keys of its own)"


def check_overrides(overrides: List[str]) -> List[str]:
    """The command line's overrides before Hydra reads them: a preset Hydra would take by any name
    (preset is an optional group: dataset x arch defaults where a file exists) is refused; a key
    given twice with two values is a warning, returned: Hydra takes the last, which a script's
    defaults followed by "$@" rely on, but `-m seed=0,1 seed=2` running one job is a slip."""
    from importlib.resources import files

    from dal_runner.cli_help import CONFIG_MODULE

    given: dict = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        name = key.lstrip("+")
        if sep and not key.startswith("~") and name != "experiment":  # two experiments: Hydra's refusal, explained
            given.setdefault(name, []).append(override)
        if name == "preset" and sep:
            known = sorted(p.name[:-5] for p in (files(CONFIG_MODULE) / "preset").iterdir() if p.name.endswith(".yaml"))
            for option in value.split(","):
                if option.strip() not in (*known, "null"):
                    raise ConfigError("preset", option.strip(), f"one of {', '.join(known)}, or null (none; by default "
                                      f"preset/<dataset>_<arch>.yaml applies where it exists)", "unknown option")
    warnings = []
    for name, typed in given.items():
        values = [o.partition("=")[2] for o in typed]
        if len(set(values)) < 2:
            continue
        # a run of each, where the values join into one sweep: not Hydra's own keys (hydra/launcher, hydra.run.dir),
        # nor sweeps written as range(...) or choice(...); lists and mappings as written, others each once
        joined = ",".join(values if re.search(r"[\[{]", "".join(values))
                          else dict.fromkeys(v.strip() for v in ",".join(values).split(",")))
        sweepable = re.split(r"[./]", name)[0] not in ("hydra", "resume") and "" not in values \
            and not re.search(r"[('\"]", joined)
        sweep = f"; a run of each: dal-run -m {name}={joined}" if sweepable else ""
        times = "twice" if len(typed) == 2 else f"{len(typed)} times"
        warnings.append(f"{' '.join(typed)}: {name} is given {times}; the last counts ({typed[-1]}){sweep}")
    return warnings


def check_group_deletions(overrides: List[str]) -> None:
    """`~trainer` (or `~trainer=default`): a group every run needs, deleted from the defaults list.
    Hydra took it: the run went on with the schema's bare values (`~trainer`, `~budget`), or failed
    on an interpolation in Hydra's words (`~dataset`, `~arch`)."""
    for override in overrides:
        key = override[1:].split("=", 1)[0] if override.startswith("~") else None
        if key in _GROUPS:
            from dal_runner.cli_help import group_options

            options = ", ".join(group_options().get(key, {}))
            typed = f"~{key}" if override.partition("=")[2] in ("", "null") else override  # a sweep's job: ~key=null
            raise as_config_error(ValueError(f"{typed}: every run needs one {key} option, it cannot be deleted; "
                                             f"accepted: {key}=<option> to choose another ({options})"))


def check_schema(cfg: DictConfig) -> None:
    """Reject keys added with `+key=` that no schema knows (Hydra allows them), and keys a run
    needs that were deleted with `~key`."""
    import dataclasses

    from dal_runner.config import SCHEMAS, BudgetConfig, RunConfig, TrainerConfig

    fields = [f.name for f in dataclasses.fields(RunConfig)]  # listed in their order, as for quer=1
    for key in cfg:
        if key not in fields and key != "hydra":
            raise ConfigError(str(key), cfg[key], "one of " + ", ".join(fields), "unknown key")
    fixed = {"budget": BudgetConfig, "trainer": TrainerConfig}
    for prefix, cls in (("", RunConfig), *((f"{g}.", c) for g, c in fixed.items())):
        node = cfg if not prefix else cfg.get(prefix[:-1])
        for f in dataclasses.fields(cls):
            if node is not None and f.name not in node:
                raise as_config_error(ValueError(_deleted(f"{prefix}{f.name}")))
    choices = cfg.hydra.runtime.choices if "hydra" in cfg else {}
    for group in ("dataset", "arch", "search", "query", "budget", "trainer"):
        node = cfg.get(group)
        if node is None:
            continue
        cls = fixed.get(group) or SCHEMAS.get(group, {}).get(node.get("name"))
        if cls is None:
            continue
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in node:
            if key not in allowed:
                option = choices.get(group, node.get("name"))
                # the same list as for a key given without + (_accepted_keys)
                accepted = "one of " + ", ".join(k for k in allowed if k != "name" or group not in SCHEMAS)
                if group in SCHEMAS:
                    try:
                        accepted = _option_accepts(group, option)
                    except Exception:  # an option outside conf/ (a --config-dir of the user's): its schema's keys
                        pass
                where = f" for {group}={option}" if group in SCHEMAS else ""
                raise ConfigError(f"{group}.{key}", node[key], accepted,
                                  f"unknown key{where}{_options_having(group, str(key))}")


def check_bool_overrides(cfg: DictConfig, overrides: List[str]) -> None:
    """`trainer.nesterov=2`: OmegaConf takes any integer for a boolean key (2 is true), which is a
    slip more often than a choice; true and false (and 0 and 1) are taken."""
    from omegaconf import BooleanNode

    for override in overrides:
        key, eq, value = override.partition("=")
        if not eq or key.startswith("~") or "/" in key:
            continue
        node: Any = cfg
        for part in key.lstrip("+").split("."):
            # `in` first: _get_node of a key a struct config lacks (+experiment=...) raises
            node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
            if node is None:
                break
        try:
            number = int(value.strip())
        except ValueError:
            continue
        if isinstance(node, BooleanNode) and number not in (0, 1):
            raise ConfigError(key.lstrip("+"), value, "true or false", "a number is no boolean")


def check_values_given(cfg: DictConfig) -> None:
    """Keys a run cannot do without: none left ??? by the chosen options, an output_root."""
    from omegaconf import OmegaConf

    for group in (k for k in cfg if k != "hydra"):  # keys left ??? (MISSING) by the chosen options
        node = cfg._get_node(group)
        missing = (OmegaConf.missing_keys(node) if isinstance(node, DictConfig)
                   else {group} if OmegaConf.is_missing(cfg, group) else set())
        for key in sorted(missing):
            option = node.get("name") if isinstance(node, DictConfig) else None
            needed = f" (required with {group}={option})" if option else ""
            raise ConfigError(key, "???", f"{key}=<value> on the command line{needed}", "no value given")
    if not str(cfg.output_root).strip():
        raise ConfigError("output_root", "''", "a folder for the run folders (the default: outputs)", "empty")


def check_resolvable(cfg: DictConfig) -> None:
    """Every interpolation of the run's config resolves (`seed=${oops}` fails here, with its key,
    not in the job); the hydra node, and ${hydra:...} in the run's keys, resolve in the job."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, InterpolationValidationError

    for key in cfg:
        if key == "hydra":
            continue
        try:
            if isinstance(cfg._get_node(key), DictConfig):
                OmegaConf.to_container(cfg[key], resolve=True)
            else:
                cfg[key]  # reading a value resolves it  # noqa: B018
        except (InterpolationResolutionError, InterpolationValidationError) as e:
            # ${hydra:job.num} & co resolve in the job, where Hydra's node is the job's
            if "HydraConfig was not set" not in str(e) and "${hydra:" not in str(e):
                raise


# submitit's resources (hydra/launcher=local, =slurm): the least each may be, where given (null:
# the scheduler's default). Unchecked, a bad one failed in submitit or sbatch after the sweep began
# (tracebacks, a sweep folder left behind) or, on this machine, ran as if it were not there.
_LAUNCHER_LEAST = {"nodes": 1, "tasks_per_node": 1, "cpus_per_task": 1, "gpus_per_node": 0, "mem_gb": 1,
                   "cpus_per_gpu": 1, "gpus_per_task": 0, "array_parallelism": 1, "max_num_timeout": 0,
                   "signal_delay_s": 0}


def check_launcher(launcher: DictConfig) -> None:
    """submitit's resources and time limits, each where given."""
    minutes = launcher.get("timeout_min")
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):  # nan too
        raise ConfigError("hydra.launcher.timeout_min", minutes, "a time limit in minutes > 0")
    for key, least in _LAUNCHER_LEAST.items():
        value = launcher.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"hydra.launcher.{key}", value,
                              f"null (the scheduler's default) or an integer >= {least}")
    delay = launcher.get("signal_delay_s")
    if minutes is not None and delay is not None and delay >= 60 * minutes:  # USR2 at the start of every try
        raise ConfigError("hydra.launcher.signal_delay_s", delay, f"fewer seconds than hydra.launcher.timeout_min="
                          f"{minutes:g}: {60 * minutes:g} s", "SLURM sends the requeue signal that long before the "
                          "time limit, so every attempt would be requeued as it starts")
