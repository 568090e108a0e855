"""`dal-run --help`: every config group, its options (each file's first sentence) and keys."""

from __future__ import annotations

from importlib.resources import files

CONFIG_MODULE = "dal_runner.conf"
GROUPS = ["dataset", "arch", "search", "query", "budget", "trainer", "experiment"]


def _first_comment(text: str) -> str:
    """The first sentence of a config file's leading comment, over as many lines as it takes."""
    import re

    words = []
    for line in text.splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#") or line.startswith("#  ") or not line.strip("# "):
            if words:
                break
            continue
        words.append(line.lstrip("# ").strip())
        for end in re.finditer(r"(\S*)\.(\s|$)", " ".join(words)):
            if end.group(1).lower() not in ("al", "e.g", "i.e", "cf", "vs"):  # not an abbreviation's point
                return " ".join(words)[:end.start(2)]
    return " ".join(words)


def group_options() -> dict:
    conf = files(CONFIG_MODULE)
    out = {}
    for group in GROUPS:
        folder = conf / group
        if folder.is_dir():
            out[group] = {p.name[:-5]: _first_comment(p.read_text())
                          for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")}
    return out


def option_keys(group: str, option: str) -> dict:
    """The keys of `group=option` with their values in conf/ (the option's YAML over its schema,
    without presets or the command line); {} for a group without schemas (budget, trainer).

    Read from the files rather than composed by Hydra: a compose per option took about 3 s for
    the 25 options --help lists. conf/'s defaults lists name a schema (/schema/<group>/<name>)
    or a sibling option, nothing else."""
    from omegaconf import OmegaConf

    from dal_runner.config import SCHEMAS

    if group not in SCHEMAS:
        return {}
    folder = files(CONFIG_MODULE) / group

    def load(name: str):
        node = OmegaConf.create((folder / f"{name}.yaml").read_text())
        merged = OmegaConf.create({})
        for entry in node.pop("defaults", []):  # schema or sibling option first, then the file itself
            if entry == "_self_" or not isinstance(entry, str):  # dict entries: not used by conf/ today
                continue
            if str(entry).startswith("/schema/"):
                schema = str(entry).split("@")[0].rsplit("/", 1)[1]
                merged = OmegaConf.merge(merged, OmegaConf.structured(SCHEMAS[group][schema]))
            else:
                merged = OmegaConf.merge(merged, load(str(entry)))
        return OmegaConf.merge(merged, node)

    return OmegaConf.to_container(load(option), resolve=False)


def _shown(value):
    from dal_runner.config import DEFAULT_DATA_ROOT

    return "$DAL_DATA_ROOT or ~/.cache/dal-runner" if value == DEFAULT_DATA_ROOT else value


def common_keys(group: str) -> set:
    """Keys every option of `group` has (its base schema's fields)."""
    import dataclasses

    from dal_runner.config import SCHEMAS

    fields = [{f.name for f in dataclasses.fields(c)} for c in SCHEMAS.get(group, {}).values()]
    return set.intersection(*fields) if fields else set()


def help_text() -> str:
    from hydra import compose, initialize_config_module

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    chosen = cfg.hydra.runtime.choices
    lines = ["dal-run: one deep active-learning experiment (the active loop of active-iNAS), configured",
             "with Hydra. Results go to outputs/runs/<date>/<time>/ (multirun: outputs/multirun/...):",
             "rounds.csv, selected.csv, summary.json, status.json, dal-run.log, learning_curve.png,",
             "arch_growth.png, state/ (for resume), and search.csv with a search.", "",
             "usage: dal-run [group=option ...] [key=value ...]      one run",
             "       dal-run -m key=a,b ...                          a sweep (Hydra multirun)",
             "       dal-run --cfg job [...]                         print the composed config (its types",
             "                                                       are checked, not its ranges)", "",
             "Values of the default run include presets (conf/preset/: on digits with arch=resnet, a",
             "CPU-sized space: arch.width=16, search.epochs=15); `dal-run --cfg job [...]` shows any config.", ""]
    for group, options in group_options().items():
        default = chosen.get(group)
        head = f"{group}" + (f" (default: {default})" if default else "")
        prefix = "+experiment=" if group == "experiment" else f"{group}="
        lines.append(f"== {head}: choose with {prefix}<option> ==")
        common = common_keys(group)
        for name, doc in options.items():
            lines.append(f"  {name:<22} {doc}")
            own = {k: v for k, v in option_keys(group, name).items() if k not in common}
            if own:
                lines.append(f"  {'':<22} keys: " + ", ".join(f"{k}={_shown(v)}" for k, v in own.items()))
        if group not in ("experiment",) and group in cfg:
            shared = [k for k in cfg[group] if k != "name" and (not common or k in common)]
            keys = ", ".join(f"{k}={cfg[group][k]}" for k in shared)
            if keys:
                what = "keys of every option" if common else "keys"
                lines.append(f"  {what} (values of the default run): {keys}")
        lines.append("")
    lines += ["== top-level keys ==",
              "  " + ", ".join(f"{k}={cfg[k]}" for k in ("seed", "device", "output_root", "resume")), "",
              "examples:",
              "  dal-run                                       # the default: active-iNAS on digits, softmax response",
              "  dal-run query=margin budget.batch=50 seed=1   # change an option and keys",
              "  dal-run -m query=random,entropy seed=0,1,2    # a sweep of 6 runs",
              "  dal-report outputs/multirun/<date>/<time>     # tables and figures of a sweep",
              "  dal-run -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 seed=0,1,2",
              "                                                # the sweep as SLURM jobs (hydra/launcher=local: subprocesses)",
              "  dal-run resume=outputs/runs/<date>/<time>     # continue a stopped run after its last complete round", "",
              "Hydra's own flags: dal-run --hydra-help"]
    return "\n".join(lines)
