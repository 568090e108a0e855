"""Bad inputs: one line naming the key, the value and what is accepted; exit != 0; no run folder.

The README's table of bad inputs lists these cases (and those of test_resume.py) with their
messages. They run dal-run's entry point in-process (the same code as the console script):
every case is rejected before a round runs, so no subprocess is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN, run_cli_inprocess


def _corrupt_npz(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    return ["dataset=npz", f"dataset.path={path}"]


def _npz_nan(tmp_path):
    path = tmp_path / "nan.npz"
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    x[3, 1] = np.nan
    np.savez(path, x=x, y=np.arange(40) % 2)
    return ["dataset=npz", f"dataset.path={path}", "arch=mlp", "search=fixed"]


def _npz_table(*extra):
    def make(tmp_path):
        path = tmp_path / "table.npz"
        np.savez(path, x=np.random.default_rng(0).normal(size=(90, 12)).astype(np.float32), y=np.arange(90) % 3)
        return ["dataset=npz", f"dataset.path={path}", "search=fixed", "budget.initial=20", "budget.batch=20",
                "budget.max_labels=40", *extra]
    return make


def _missing_cifar(tmp_path):
    return ["dataset=cifar10", f"dataset.root={tmp_path / 'no-data-here'}", "dataset.download=false"]


CASES = {
    "unknown group option": (["query=nope"], ["query=nope", "entropy", "margin", "random", "softmax_response"]),
    "unknown key": (["trainer.lrr=0.1"], ["trainer.lrr", "unknown key", "lr"]),
    "unknown key added with +": (["+typo=1"], ["typo", "unknown key", "seed"]),
    "unknown key added to a group": (["+dataset.colour=1"], ["dataset.colour", "unknown key", "test_fraction"]),
    "wrong type": (["trainer.lr=abc"], ["trainer.lr=abc", "wrong type", "number"]),
    "wrong type int": (["budget.batch=ten"], ["budget.batch=ten", "integer"]),
    "max_labels larger than the pool": (["budget.max_labels=5000"], ["budget.max_labels=5000", "1257"]),
    "initial larger than max_labels": (["budget.initial=700"], ["budget.initial=700", "budget.max_labels=600"]),
    "batch zero": (["budget.batch=0"], ["budget.batch=0", "> 0"]),
    "batch negative": (["budget.batch=-5"], ["budget.batch=-5", "> 0"]),
    "wrong type bool": (["dataset=cifar10", "dataset.download=maybe"], ["dataset.download=maybe", "true or false"]),
    "unknown device": (["device=tpu"], ["device=tpu", "auto", "cpu", "cuda"]),
    "unknown optimizer": (["trainer.optimizer=lbfgs"], ["trainer.optimizer=lbfgs", "adam", "sgd"]),
    "unknown precision": (["trainer.precision=fp16"], ["trainer.precision=fp16", "auto", "bf16", "fp32"]),
    "negative core-set block": (["query=coreset", "query.block=-1"], ["query.block=-1", ">= 0"]),
    "unknown dataset": (["dataset=imagenet"], ["dataset=imagenet", "cifar10", "digits"]),
    "negative learning rate": (["trainer.lr=-0.1"], ["trainer.lr=-0.1", "> 0"]),
    "dropout out of range": (["arch.dropout=1.5"], ["arch.dropout=1.5", "[0, 1)"]),
    "validation fraction out of range": (["search.val_fraction=1.5"], ["search.val_fraction=1.5", "(0, 1)"]),
    "search start outside the space": (["search.start=[20,1]"],
                                       ["search.start=[20, 1]", "outside the search space", "[1..12, 1..4]"]),  # digits: 4 stacks
    "unknown tie break": (["search.tie_break=foo"], ["search.tie_break=foo", "unknown option", "smaller, larger"]),
    "negative seed": (["seed=-1"], ["seed=-1", "an integer >= 0"]),
    "data file not given": (["dataset=npz"], ["dataset.path=???", "no value given", "required with dataset=npz"]),
    "empty output root": (["output_root="], ["output_root=''", "empty"]),
    "empty resume": (["resume="], ["resume=", "no run folder given", "resume=null"]),
    "momentum of 1 or more": (["trainer.optimizer=sgd", "trainer.momentum=1.5"], ["trainer.momentum=1.5", "[0, 1)"]),
    "negative lr decay": (["trainer.lr_gamma=-1"], ["trainer.lr_gamma=-1.0", "> 0"]),
    "milestone never reached": (["trainer.epochs=2", "trainer.lr_milestones=[100]"],
                                ["trainer.lr_milestones=[100]", "never lowers", "1..1 (trainer.epochs=2)"]),
    "candidates' milestone never reached": (["search.epochs=5", "search.lr_milestones=[3,8]"],
                                            ["search.lr_milestones=[3, 8]", "1..4 (search.epochs=5)"]),
    "too many stacks for the input": (["search=fixed", "arch=resnet18", "arch.stem=paper"],
                                      ["arch.n_stacks=4", "at most 3", "8x8"]),
    "iNAS over an MLP": (["arch=mlp"], ["arch=mlp", "search=inas searches residual nets"]),
    "more CNN widths than the input can halve": (["search=fixed", "arch=cnn", "arch.channels=[8,8,8,8,8]"],
                                                 ["arch.channels=[8, 8, 8, 8, 8]", "8x8 halves 3 times", "at most 4 widths"]),
    "batch schedule without 0": (["budget.batch={100:5}"], ["budget.batch", "{0: b0"]),
    "zero rounds": (["budget.max_rounds=0"], ["budget.max_rounds=0", "> 0"]),
    "MC-dropout with no passes": (["query=mc_dropout", "query.passes=0", "arch.dropout=0.5"], ["query.passes=0", "> 0"]),
    "MC-dropout without dropout": (["query=mc_dropout"], ["arch.dropout=0.0", "passes are identical", "arch.dropout=0.5"]),
    "ALBL with an MC-dropout expert without dropout": (["query=albl", "query.strategies=[random,mc_dropout]"],
                                                       ["arch.dropout=0.0", "mc_dropout in query.strategies"]),
    "ALBL delta out of range": (["query=albl", "query.delta=1.5"], ["query.delta=1.5", "(0, 1)"]),
    "ALBL p_min above 1/K": (["query=albl", "query.arms=points", "query.p_min=0.01"],
                             ["query.p_min=0.01", "(0, 1 / K]", "the pool size 1257"]),
    "ALBL p_min above 1/N strategies": (["query=albl", "query.p_min=0.6"],
                                        ["query.p_min=0.6", "(0, 0.5]", "the number of strategies 2"]),
    "ALBL unknown arms": (["query=albl", "query.arms=examples"], ["query.arms=examples", "points, strategies"]),
    "ALBL unknown variant": (["query=albl", "query.variant=update"], ["query.variant=update", "badge_code, exp4p"]),
    "ALBL badge_code over points": (["query=albl", "query.arms=points", "query.variant=badge_code"],
                                    ["query.variant=badge_code", "query.arms=strategies", "accepted: exp4p"]),
    "ALBL zero horizon": (["query=albl", "query.horizon=0"], ["query.horizon=0", "> 0"]),
    "ALBL with an expert twice": (["query=albl", "query.strategies=[random,random]"], ["query.strategies=", "each once"]),
    "a fraction in a batch schedule": (["budget.batch={0: 50, 100.5: 5}"], ["budget.batch=", "of integers > 0"]),
    "test split too small for the classes": (["search=fixed", "arch=mlp", "dataset.test_fraction=0.001"],
                                             ["dataset.test_fraction=0.001", "cannot split digits stratified"]),
    "one initial label with a search": (["budget.initial=1"], ["budget.initial=1", "at least 2 with search=inas"]),
    "random split with inheritance": (["search.inherit=true", "search.split=random"],
                                      ["search.split=random", "nested or null"]),
    "negative weight decay": (["trainer.weight_decay=-0.1"], ["trainer.weight_decay=-0.1", "a finite number >= 0"]),
    "momentum out of range with adam": (["trainer.momentum=5"], ["trainer.momentum=5", "[0, 1)",
                                                                 "trainer.optimizer=sgd only"]),
    "conv-only weight decay of an MLP": (["search=fixed", "arch=mlp", "trainer.weight_decay=0.5",
                                          "trainer.weight_decay_scope=conv"],
                                         ["trainer.weight_decay_scope=conv", "no convolution kernels", "all"]),
    "a sweep of pools smaller than the budget": (["-m", "dataset.pool_size=300,400"],
                                                 ["budget.max_labels=600", "at most dataset.pool_size=300"]),
    "unknown weight decay scope": (["trainer.weight_decay_scope=bn"], ["trainer.weight_decay_scope=bn", "all, conv"]),
    "MC-dropout rate of 1": (["query=mc_dropout", "arch.mc_dropout=1.0"],
                             ["arch.mc_dropout=1.0", "a probability in (0, 1)"]),
    "unknown candidate score": (["search.score=mean"], ["search.score=mean", "null or last", "best"]),
    "an empty pool": (["dataset.pool_size=0"], ["dataset.pool_size=0", "an integer > 0"]),
    "a pool larger than the data set": (["search=fixed", "arch=mlp", "dataset.pool_size=5000"],
                                        ["dataset.pool_size=5000", "at most the 1257 training examples"]),
    "zero epochs": (["trainer.epochs=0"], ["trainer.epochs=0", "an integer > 0"]),
    "divergence factor below 1": (["trainer.divergence_factor=0.5"], ["trainer.divergence_factor=0.5", "> 1"]),
    "missing data, download off": (_missing_cifar, ["dataset.root", "download=true"]),
    "missing data file": (["dataset=npz", "dataset.path=/no/such/file.npz"], ["dataset.path", "file not found"]),
    "an empty data root": (["dataset=cifar10", "dataset.root="], ["dataset.root='': empty", "~/.cache/dal-runner"]),
    "an empty npz path": (["dataset=npz", "dataset.path="], ["dataset.path='': empty", "the path of an .npz file"]),
    "corrupt data file": (_corrupt_npz, ["dataset.path", "not an .npz file"]),
    "NaN in the data": (_npz_nan, ["dataset.path", "NaN"]),
    # before: in a sweep, the good jobs ran and the bad one failed in its job (the file's contents
    # and the split were the job's to read); now loaded once before any job starts
    "NaN in the data of a sweep": (lambda tmp: ["-m", *_npz_nan(tmp), "seed=0,1"], ["dataset.path", "NaN"]),
    "a sweep with a split the classes cannot take": (
        ["-m", "search=fixed", "arch=mlp", "dataset.test_fraction=0.3,0.999"],
        ["dataset.test_fraction=0.999: cannot split digits stratified"]),
    "resume of a folder that is not a run": (["resume=/no/such/run"], ["resume=/no/such/run", "not a dal-run run"]),
    "resume in a sweep": (["-m", "resume=/no/such/run", "seed=1,2"], ["resume=", "without -m"]),
    "NaN learning rate": (["trainer.lr=nan"], ["trainer.lr=nan", "a finite number > 0"]),
    "infinite learning rate": (["trainer.lr=inf"], ["trainer.lr=inf", "a finite number > 0"]),
    "NaN divergence factor": (["trainer.divergence_factor=nan"], ["trainer.divergence_factor=nan", "> 1"]),
    "negative crop padding": (["dataset.augment.crop_padding=-1"], ["dataset.augment.crop_padding=-1", ">= 0"]),
    "shift out of range": (["dataset.augment.shift=1.5"], ["dataset.augment.shift=1.5", "[0, 1)"]),
    "unknown fill": (["dataset.augment.fill=wrap"], ["dataset.augment.fill=wrap", "one of nearest, reflect, zeros"]),
    "crop padding of the whole image": (["dataset.augment.crop_padding=8"],  # digits: 8 x 8
                                        ["dataset.augment.crop_padding=8", "0 .. 7 for images of side 8"]),
    "an image model for an npz table": (_npz_table("arch=resnet18"),
                                        ["arch=resnet18: a resnet needs image data", "the input is 12 features",
                                         "accepted: mlp (with search=fixed) for a table (dataset=npz)"]),
    "augmentation on an npz table": (_npz_table("arch=mlp", "dataset.augment.hflip=true"),
                                     ["dataset.augment.hflip=true: image augmentation on a table",
                                      "accepted: dataset.augment.hflip=false"]),
    "a needed key deleted": (["~budget.batch"], ["~budget.batch", "cannot be deleted", "budget.batch=<value>"]),
    "interpolation of no key": (["seed=${oops}"], ["seed=${oops}", "'oops' not found", "${key}"]),
    "a sweep without -m": (["query=random,margin"], ["query=random,margin", "dal-run -m", "key=[a,b]"]),
    "an override Hydra cannot parse": (["trainer.lr=[1"], ["trainer.lr=[1", "cannot parse", "key='a,b'"]),
    "a ~ Hydra cannot read": (["output_root=~/x"], ["output_root=~/x", "cannot parse", "does not expand ~"]),
    "an experiment with an arch it does not fit": (["+experiment=active_inas_cifar10_smoke", "arch=mlp"],
                                                   ["sets arch.stem, a key arch=mlp does not have", "arch=resnet18"]),
    "a needed top-level key deleted": (["~seed"], ["~seed", "cannot be deleted", "seed=<value>"]),
    # were taken: the run went on with the schema's bare trainer values, or Hydra's interpolation error
    "a needed group deleted": (["~trainer"], ["~trainer: every run needs one trainer option", "cannot be deleted",
                                              "trainer=<option> to choose another (active_inas, badge, default)"]),
    "a needed group deleted, in a sweep": (["-m", "~dataset", "seed=0,1"],
                                           ["~dataset: every run needs one dataset option", "dataset=<option>"]),
    "a key of another arch option": (["arch=resnet18", "arch.hidden=5"],
                                     ["arch.hidden", "for arch=resnet18", "a key of arch=mlp"]),
    "an override without a value": (["trainer.lr"], ["trainer.lr: no value", "key=value"]),
    "a key of another option": (["query.passes=5"],
                                ["query.passes", "for query=softmax_response", "a key of query=mc_dropout"]),
    "a key of the chosen option misspelt": (["query=mc_dropout", "query.pases=5"],
                                            ["query.pases", "for query=mc_dropout", "passes, acquisition"]),
    "null for a key that needs a value": (["budget.max_labels=null"], ["budget.max_labels=null", "needs a value"]),
    "a number for a list": (["trainer.lr_milestones=5"], ["trainer.lr_milestones=5", "a list"]),
    "a number for a group": (["trainer=5"], ["trainer=5", "unknown option", "active_inas, badge, default"]),
    "empty run folder": (["hydra.run.dir="], ["hydra.run.dir=''", "empty"]),
    "empty sweep folder": (["-m", "seed=0,1", "hydra.sweep.dir="], ["hydra.sweep.dir=''", "empty"]),
    "--cfg with -m": (["--cfg", "job", "-m", "seed=0,1"], ["--cfg with -m", "dal-run --cfg job"]),
    # a sweep's values are checked for every job before any starts (or is submitted to SLURM)
    "a sweep with one bad value": (["-m", "trainer.lr=0.1,-1"], ["trainer.lr=-1.0", "a finite number > 0"]),
    "a sweep with one bad value and its seeds from Hydra": (["-m", "seed=${hydra:job.num}", "trainer.lr=0.1,-1"],
                                                            ["trainer.lr=-1.0", "a finite number > 0"]),
    # before: OmegaConf's "While dereferencing interpolation ... Incompatible value 'None'", nothing accepted
    "a sweep's job number as a single run's seed": (["seed=${hydra:job.num}"],
                                                    ["seed=${hydra:job.num}: only a sweep's jobs have a number",
                                                     "accepted: a value, e.g. seed=0, or the sweep: dal-run -m "]),
    "a launcher without -m": (["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                              ["hydra/launcher=slurm: a launcher runs the jobs of a sweep, and without -m Hydra runs "
                               "this one here", "accepted: dal-run -m hydra/launcher=slurm ..."]),
    "a launcher for a new run (resume=null)": (["hydra/launcher=local", "resume=null"],
                                               ["hydra/launcher=local: a launcher runs the jobs of a sweep",
                                                "accepted: dal-run -m hydra/launcher=local ..."]),
    "a launcher for a resumed run": (["hydra/launcher=slurm", "resume=/no/such/run"],
                                     ["hydra/launcher=slurm: resume= continues one run here", "without hydra/launcher"]),
    "an image model for an OpenML table": (["-m", "dataset=openml", "dataset.id=6", "arch=mlp,resnet18", "search=fixed"],
                                           ["arch=resnet18: a resnet needs image data", "OpenML data sets are tables", "mlp"]),
    "a sweep with MC-dropout and no dropout": (["-m", "query=mc_dropout", "arch.dropout=0.5,0"],
                                               ["arch.dropout=0.0", "passes are identical"]),
    "a sweep with a bad ALBL expert": (["-m", "query=albl", "query.strategies=[coreset,nope]", "seed=0,1"],
                                       ["query.strategies=nope", "unknown option"]),
    # the files a sweep's jobs read: every job would fail the same way
    "a sweep over data files that are not there": (
        lambda tmp: ["-m", "dataset=svhn", f"dataset.root={tmp}/nope", "search=fixed", "arch=mlp", "seed=0,1"],
        ["dataset.root=", "no svhn files there", "SVHN/train_32x32.mat"]),
    "a sweep over an npz file that is not there": (
        lambda tmp: ["-m", "dataset=npz", f"dataset.path={tmp}/none.npz", "search=fixed", "arch=mlp", "seed=0,1"],
        ["dataset.path=", "none.npz: file not found"]),
    # the search's keys too (before: job 0 ran to its end, then job 1 failed)
    "a sweep with no iNAS steps in one job": (["-m", "search.max_steps=1,0"], ["search.max_steps=0", "> 0"]),
    "a sweep with a REINFORCE budget its children do not divide": (
        ["-m", "search=reinforce", "search.children=3,2"], ["search.children=2", "dividing search.budget=3"]),
    "a sweep with one initial label and a search": (["-m", "budget.initial=10,1"], ["budget.initial=1", "at least 2"]),
    "a sweep with a search over an MLP": (["-m", "arch=resnet,mlp"], ["arch=mlp", "searches residual nets"]),
    "a sweep with a candidates' milestone past their epochs": (["-m", "search.epochs=10", "search.lr_milestones=[5],[12]"],
                                                                ["search.lr_milestones=[12]", "1..9"]),
    "shell completion without a command": (["--shell-completion"], ["--shell-completion: no command given", "install=bash"]),
    "a gradient clamp of zero": (["trainer.grad_clip_value=0"], ["trainer.grad_clip_value=0", "> 0"]),
    # a key given twice: the bad value is named, wherever it is (OmegaConf stops at the first)
    "a bad value before a good one": (["trainer.epochs=five", "trainer.epochs=3"], ["trainer.epochs=five", "integer"]),
    "a bad value after a good one": (["trainer.epochs=3", "trainer.epochs=five"], ["trainer.epochs=five", "integer"]),
    "an experiment without its +": (["experiment=active_inas_cifar10_smoke"],
                                    ["experiment=active_inas_cifar10_smoke", "accepted: +experiment=active_inas_cifar10_smoke",
                                     "ranganathan_digits"]),
    "an sbatch option without its +": (["-m", "hydra/launcher=slurm", "hydra.launcher.additional_parameters={qos: high}"],
                                       ["hydra.launcher.additional_parameters.qos",
                                        "accepted: +hydra.launcher.additional_parameters={qos: high}"]),
    "an unknown launcher key": (["-m", "hydra/launcher=slurm", "hydra.launcher.partitio=gpu"],
                                ["hydra.launcher.partitio", "unknown key", "partition", "timeout_min"]),
    # before: "trainer.lr_milestones[1]=None"
    "a list item of the wrong type": (["trainer.lr_milestones=[3,1.5]"],
                                      ["trainer.lr_milestones[1]=1.5: wrong type", "an integer"]),
    # before: Hydra's own words ("Could not append to config", "use 'override experiment: ...'"), or
    # its config search path for --config-name
    "a key that is there given with +": (["+seed=3"], ["+seed=3", "already in the config", "accepted: seed=3",
                                                      "++seed=3"]),
    "two experiments in one run": (["+experiment=active_inas_cifar10_smoke", "+experiment=ranganathan_digits"],
                                   ["one experiment per run",
                                    "dal-run -m +experiment=active_inas_cifar10_smoke,ranganathan_digits"]),
    # before: OmegaConf took 2 as true
    "a number for a boolean": (["trainer.nesterov=2"], ["trainer.nesterov=2", "accepted: true or false"]),
    "a number for a boolean in a sweep": (["-m", "search.inherit=false,2"], ["search.inherit=2", "true or false"]),
    "an unknown primary config": (["--config-name", "nope"], ["--config-name nope: no such config",
                                                              "accepted: config"]),
    "an unknown primary config with =": (["-cn=nope"], ["-cn=nope: no such config"]),
    # before: Hydra's own lines (its search path, "HYDRA_FULL_ERROR"), or a traceback, and exit status 1
    "a config dir that is not there": (["--config-dir", "/no/such/dir"], ["--config-dir /no/such/dir: no such folder"]),
    "an unknown primary config in one's own config dir": (
        lambda tmp: (tmp / "mine").mkdir() or ["--config-dir", str(tmp / "mine"), "-cn=nope"],
        ["-cn=nope: no nope.yaml in ", "or config (dal-run's own)"]),
    "a relative config path": (["--config-path", "confs"], ["--config-path confs: a relative --config-path is read "
                                                            "from dal-run's package", "--config-dir confs"]),
    "a config path without config.yaml": (lambda tmp: ["--config-path", str(tmp)],
                                          ["no config.yaml there", "--config-name NAME"]),
    "a rerun of a file that is not there": (["--experimental-rerun", "no.pickle"],
                                            ["--experimental-rerun no.pickle: no such file", "config.pickle"]),
    # before: an optional group, so Hydra ran without it
    "an unknown preset": (["preset=foo"], ["preset=foo: unknown option", "digits_resnet"]),
    # before: "1: Hydra cannot parse this override", or Hydra's usage block for --seed=1
    "an argparse-style option": (["--seed", "1"], ["--seed 1", "key=value, not --options", "accepted: seed=1"]),
    "an argparse-style option with =": (["--trainer.lr=0.1"], ["--trainer.lr=0.1", "accepted: trainer.lr=0.1"]),
    # before: the jobs with the good value ran, then the bad one failed in its own job (exit 1)
    "a sweep with one bad test fraction": (["-m", "search=fixed", "arch=mlp", "dataset.test_fraction=0.3,-1"],
                                           ["dataset.test_fraction=-1.0", "a fraction in (0, 1)"]),
    "a sweep with one bad OpenML id": (["-m", "dataset=openml", "dataset.id=6,-1", "arch=mlp", "search=fixed"],
                                       ["dataset.id=-1", "a positive OpenML data id"]),
    # before: accepted, and every point scored 0 (random sampling) or, for REINFORCE, a crash in round 1
    "MC-dropout with one pass": (["query=mc_dropout", "arch.dropout=0.5", "query.passes=1"],
                                 ["query.passes=1", "an integer >= 2", "max_entropy alone takes 1"]),
    "REINFORCE with an infinite learning rate": (["search=reinforce", "search.lr=inf"],
                                                 ["search.lr=inf", "a finite number > 0"]),
    "early stopping with a NaN margin": (["search.epochs=10", "search.stop_at=0.5", "search.stop_margin=nan"],
                                         ["search.stop_margin=nan", ">= 0"]),
    # before: every job 'killed' at once, "0 of 0 runs completed", exit 0
    "a launcher key with the default launcher": (["-m", "seed=0,1", "hydra.launcher.timeout_min=5"],
                                                 ["hydra.launcher.timeout_min", "hydra/launcher=local or "
                                                  "hydra/launcher=slurm"]),
    "a sweep with no tasks per node": (["-m", "seed=0,1", "hydra/launcher=local", "hydra.launcher.tasks_per_node=0"],
                                       ["hydra.launcher.tasks_per_node=0", "an integer >= 1"]),
    "a SLURM sweep with negative memory": (["-m", "seed=0,1", "hydra/launcher=slurm", "hydra.launcher.mem_gb=-1"],
                                           ["hydra.launcher.mem_gb=-1", "an integer >= 1"]),
    "a sweep with negative GPUs": (["-m", "seed=0,1", "hydra/launcher=local", "hydra.launcher.gpus_per_node=-1"],
                                   ["hydra.launcher.gpus_per_node=-1", "an integer >= 0"]),
    # before: job 0 ran, then job 1 failed in its job (the input's side is known without the data)
    "a sweep with a network too deep for the input": (
        ["-m", "search=fixed", "arch=cnn", "arch.channels=[8],[8,8,8,8,8]"],
        ["arch.channels=[8, 8, 8, 8, 8]", "8x8 halves 3 times at most", "at most 4 widths"]),
    # before: Hydra's own lines and its HYDRA_FULL_ERROR hint
    "a sweep over a launcher key": (["-m", "hydra/launcher=local", "hydra.launcher.timeout_min=5,10"],
                                    ["hydra.launcher.timeout_min=5,10: Hydra cannot sweep its own settings",
                                     "one dal-run -m for each value"]),
    # before: "Cannot convert 'list' to string" and nothing accepted
    "a list for a string key": (["device=[cpu]"], ["device=[cpu]: wrong type", "one value, not a list"]),
    # before: "accepted: dal-run -m hydra/launcher=nope ...", itself refused
    "an unknown launcher without -m": (["hydra/launcher=nope"], ["hydra/launcher=nope: unknown option",
                                                                 "basic, local, slurm"]),
    # before: an IndexError traceback
    "a sweep of no jobs": (["-m", "query=margin,random", "seed=range(0,0)"],
                           ["error: seed=range(0,0): the sweep has no jobs", "seed=range(0,3)"]),
    "a sweep with no time to run": (["-m", "seed=0,1", "hydra/launcher=local", "hydra.launcher.timeout_min=0"],
                                    ["hydra.launcher.timeout_min=0", "minutes > 0"]),
    # before: USR2 came as each attempt started; submitit requeued it until max_num_timeout, then failed it
    "a SLURM sweep requeued before it runs": (["-m", "seed=0,1", "hydra/launcher=slurm", "hydra.launcher.timeout_min=1"],
                                              ["hydra.launcher.signal_delay_s=120", "timeout_min=1: 60 s"]),
    # before: job 1 overwrote job 0's folder, which then said failed over job 0's results
    "a sweep whose jobs share a folder": (["-m", "seed=0,1", "hydra.sweep.subdir=same"],
                                          ["hydra.sweep.subdir=same", "jobs 0 and 1 would share it",
                                           "${hydra.job.num}"]),
    # before: the sweep wrote its job folders among the user's files (hydra.run.dir was refused so)
    "a sweep into a folder of other files": (
        lambda tmp: (tmp / "project").mkdir() or (tmp / "project" / "notes.txt").write_text("mine") and
        ["-m", "seed=0,1", f"hydra.sweep.dir={tmp}/project"],
        ["hydra.sweep.dir=", "holds 1 entry and no sweep (notes.txt)"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_line_error_and_no_run_folder(tmp_path, monkeypatch, capsys, name):
    args, expected = CASES[name]
    if callable(args):
        args = args(tmp_path)
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    assert code == 2, (code, err)
    lines = [line for line in err.strip().splitlines() if line.startswith("dal-run: ")]
    assert len(lines) == 1 and lines[0].startswith("dal-run: error: "), err
    assert "Traceback" not in err + out
    for word in expected:
        assert word in lines[0], (word, lines[0])
    assert "[INFO]" not in out + err  # the error is the only output
    for folder in ("runs", "multirun"):  # no run folder, not even an empty <date>/ folder
        assert not (tmp_path / "outputs" / folder).exists(), list((tmp_path / "outputs").rglob("*"))
    assert not list(tmp_path.glob("**/.hydra")), "a run was written somewhere"


@pytest.mark.parametrize("key", ["typo", "trainer.foo", "dataset.colour", "query.foo"])
def test_an_unknown_key_lists_the_same_accepted_keys_with_or_without_plus(tmp_path, monkeypatch, capsys, key):
    # before: a key added with + listed its accepted keys sorted and with the option's name, one
    # given without + in the order of the config and without it
    accepted = []
    for override in (f"{key}=1", f"+{key}=1"):
        code, _, err = run_cli_inprocess([override], tmp_path, monkeypatch, capsys)
        assert code == 2 and "unknown key" in err, err
        accepted.append(err.strip().splitlines()[-1].partition("accepted: ")[2])
    assert accepted[0] == accepted[1] and "name" not in accepted[0].replace("one of", ""), accepted


@pytest.mark.parametrize("argv, warned", [
    # before: Hydra took the last value without a word (-m seed=0,1 seed=2 ran one job)
    (["seed=1", "seed=2"], "seed=1 seed=2: seed is given twice; the last counts (seed=2); a run of each: "
                           "dal-run -m seed=1,2"),
    (["budget.batch={0:50}", "budget.batch={0:60}"], "budget.batch={0:50} budget.batch={0:60}: budget.batch is given "
                                                     "twice; the last counts (budget.batch={0:60}); a run of each: "
                                                     "dal-run -m budget.batch={0:50},{0:60}"),
    (["hydra.run.dir=a", "hydra.run.dir=b"], "hydra.run.dir=a hydra.run.dir=b: hydra.run.dir is given twice; the last "
                                             "counts (hydra.run.dir=b)"),
    (["seed=3", "seed=3", "++trainer.epochs=4", "trainer.epochs=4"], None),  # the same value twice: nothing to say
])
def test_a_key_given_twice_is_warned_and_the_last_value_counts(tmp_path, monkeypatch, capsys, argv, warned):
    # a script's defaults followed by "$@" give keys twice on purpose: a warning, not a refusal
    code, out, err = run_cli_inprocess(["--cfg", "job", *argv], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("dal-run: warning: ")]
    assert warnings == ([f"dal-run: warning: {warned}"] if warned else []), err


def test_unwritable_output_directory_is_refused_before_running(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out, err = run_cli_inprocess([f"output_root={blocker}/results"], tmp_path, monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "output_root" in lines[0] and str(blocker) in lines[0]
    assert "Traceback" not in err


def test_a_failed_start_in_a_users_folder_removes_only_what_hydra_made(tmp_path, monkeypatch, capsys):
    """hydra.run.dir given by the user: a folder holding their files is refused before Hydra makes
    anything (a run's files would mix with theirs); in an empty one, a run that cannot start (the
    pool is checked only once the data set is loaded, inside Hydra's job) takes away .hydra/ and
    the log and leaves the folder; folders Hydra made below an existing one go too."""
    from dal_runner import cli

    undone = []  # the job started and was undone (not refused before Hydra made anything)
    real = cli.remove_failed_start
    monkeypatch.setattr(cli, "remove_failed_start", lambda run_dir, existing: (undone.append(run_dir),
                                                                              real(run_dir, existing)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a user's notes")
    code, out, err = run_cli_inprocess([f"hydra.run.dir={mine}", "budget.max_labels=5000"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 2 and err.strip() == (f"dal-run: error: hydra.run.dir={mine}: holds 1 entry and no run "
                                         "(keep.txt); accepted: a new or empty folder, or the folder of a dal-run "
                                         "run (kept or continued there)"), (code, err)
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"] and undone == []

    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli_inprocess([f"hydra.run.dir={empty}", "budget.max_labels=5000"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 2 and "budget.max_labels=5000" in err, (code, err)
    assert empty.is_dir() and not any(empty.iterdir()) and undone == [empty]

    deep = tmp_path / "new" / "deeper" / "run"
    code, out, err = run_cli_inprocess([f"hydra.run.dir={deep}", "budget.max_labels=5000"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 2, (code, err)
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))
    assert undone == [empty, deep]


def test_cfg_job_prints_a_config_whose_required_value_is_missing(tmp_path, monkeypatch, capsys):
    """`--cfg job dataset=npz` shows the config as composed, `???` included, and writes nothing."""
    code, out, err = run_cli_inprocess(["--cfg", "job", "dataset=npz"], tmp_path, monkeypatch, capsys)
    assert code == 0, (code, err)
    assert "path: ???" in out and "dal-run: error" not in err
    assert not (tmp_path / "outputs").exists()


def _as_given(hydra_argv):
    """The command line the preflight hands Hydra, without the sweep folder it pins (the default's
    ${now:...}, resolved once)."""
    pinned = [a for a in hydra_argv if a.startswith("hydra.sweep.dir='outputs/multirun/")]
    assert len(pinned) == 1 and hydra_argv[-1] == pinned[0], hydra_argv
    return hydra_argv[:-1]


def test_interpolations_only_a_launched_job_resolves_pass_the_preflight(tmp_path, monkeypatch):
    """`seed=${hydra:job.num}` gives each job of a sweep its own seed: Hydra's node is set only in
    the job, so the preflight must let it through (it still refuses `${oops}`)."""
    from dal_runner import cli

    monkeypatch.chdir(tmp_path)
    argv = ["-m", "search=fixed", "arch=mlp", "seed=${hydra:job.num}", "trainer.lr=0.001,0.002"]
    assert _as_given(cli.preflight(argv)) == argv
    with pytest.raises(SystemExit):
        cli.preflight(["-m", "search=fixed", "arch=mlp", "seed=${oops}", "trainer.lr=0.001,0.002"])


def test_the_jobs_of_a_sweep_in_a_folder_of_the_time_are_all_in_that_folder(tmp_path, monkeypatch):
    """${now:...} in the sweep's folder resolved again for each job: the preflight's job folders were
    each in a folder of its own time, milliseconds apart, so a stop of the sweep counted its jobs in
    folders that never existed, and a job that died was marked failed in a new folder. They are all
    in the folder Hydra is given, whether the default's or a given one with ${now:...}."""
    from dal_runner import callbacks, cli

    monkeypatch.chdir(tmp_path)
    for given in ([], ["hydra.sweep.dir=sweeps/${now:%H-%M-%S-%f}"]):
        hydra_argv = cli.preflight(["-m", "search=fixed", "arch=mlp", "seed=0,1,2,3", *given])
        (pinned,) = [a for a in hydra_argv if a.startswith("hydra.sweep.dir=")]
        sweep = os.path.abspath(pinned.split("=", 1)[1].strip("'"))
        assert "${now:" not in sweep and sweep.startswith(str(tmp_path / ("sweeps" if given else "outputs")))
        assert callbacks.LAUNCHED_JOBS == {sweep: [Path(sweep) / str(n) for n in range(4)]}
    # a subdir outside the sweep's folder stays where it points (a ValueError from the preflight)
    for subdir, where in (("../x", lambda sweep: sweep.parent / "x"), (f"{tmp_path}/abs", lambda sweep: tmp_path / "abs")):
        hydra_argv = cli.preflight(["-m", "search=fixed", "arch=mlp", "seed=0,1", f"hydra.sweep.subdir={subdir}"
                                    "${hydra.job.num}"])
        sweep = Path(os.path.abspath(hydra_argv[-1].split("=", 1)[1].strip("'")))
        assert callbacks.LAUNCHED_JOBS == {str(sweep): [Path(f"{where(sweep)}{n}") for n in (0, 1)]}, subdir
    # a given folder that interpolates a key of the job too: each job's folder is its own, not pinned
    hydra_argv = cli.preflight(["-m", "search=fixed", "arch=mlp", "query=margin,entropy",
                                "hydra.sweep.dir=sweeps/${now:%Y-%m-%d}/${query.name}"])
    assert hydra_argv[-1] == "hydra.sweep.dir=sweeps/${now:%Y-%m-%d}/${query.name}", hydra_argv
    # a folder without ${now:...} is as given
    hydra_argv = cli.preflight(["-m", "search=fixed", "arch=mlp", "seed=0,1", "hydra.sweep.dir=mine"])
    assert [a for a in hydra_argv if a.startswith("hydra.sweep.dir=")] == ["hydra.sweep.dir=mine"]
    assert callbacks.LAUNCHED_JOBS == {str(tmp_path / "mine"): [tmp_path / "mine" / "0", tmp_path / "mine" / "1"]}


def test_a_search_start_beyond_the_stacks_of_a_known_resolution_stops_the_sweep_before_any_job(
        tmp_path, monkeypatch, capsys):
    """digits is 8 x 8: 4 stacks with the cifar stem. The job clips the space to them; the checks
    before the sweep clip it too, so a start at 5 stacks starts no job (it failed in every job)."""
    from dal_runner import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli.preflight(["-m", "search.start=[1,5]", "seed=0,1"])
    err = capsys.readouterr().err
    assert "search.start=[1, 5]: outside the search space; accepted: [n_blocks, n_stacks] within [1..12, 1..4]" in err
    argv = ["-m", "search.start=[1,4]", "seed=0,1"]
    assert _as_given(cli.preflight(argv)) == argv  # the largest the input supports
    argv = ["-m", "dataset=cifar10", "dataset.download=true", "search.start=[1,5]", "seed=0,1"]  # 32 x 32: 6 stacks
    assert _as_given(cli.preflight(argv)) == argv
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()


def test_shell_completion_takes_its_command_before_or_after_the_flag(tmp_path, monkeypatch, capsys):
    for args in (["-sc", "install=bash"], ["install=bash", "-sc"]):
        code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
        assert code == 0 and "hydra_bash_completion" in out, (args, err)


def _preflight_sweep(argv, monkeypatch, capsys, processes):
    """dal_runner.preflight.preflight on `argv` with every sweep checked by `processes` processes
    (a threshold of 16 jobs, as many CPUs as asked for): (exit status, stderr, LAUNCHED_JOBS)."""
    from dal_runner import cli, in_processes, preflight  # noqa: F401 (cli registers the schemas)

    monkeypatch.setattr(in_processes, "POOL_MIN_JOBS", 16)
    monkeypatch.setattr(preflight.os, "sched_getaffinity", lambda pid: set(range(processes)))
    capsys.readouterr()
    try:
        preflight.preflight(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err, dict(preflight.LAUNCHED_JOBS)


def test_a_large_sweep_is_checked_in_several_processes_with_one_process_s_results(tmp_path, monkeypatch, capsys):
    """A sweep of many jobs is composed and checked by one process per CPU (forked): it reports
    the same first bad job, in the sweep's order, and the same job folders as one process."""
    monkeypatch.chdir(tmp_path)
    # jobs in Hydra's order (the last key varies fastest): job 6 has epochs=0, jobs 8-15 lr=-1
    bad = ["-m", "search=fixed", "arch=mlp", "trainer.lr=0.1,-1", "trainer.epochs=1,2,3,0", "seed=0,1",
           "hydra.sweep.dir=sweep"]
    code, err, _ = _preflight_sweep(bad, monkeypatch, capsys, processes=2)
    assert code == 2 and "checking the 16 jobs of the sweep before any starts (2 processes)" in err, err
    assert "trainer.epochs=0" in err and "trainer.lr" not in err, err
    assert _preflight_sweep(bad, monkeypatch, capsys, processes=1)[:2] == (2, err.replace(" (2 processes)", ""))

    good = ["-m", "search=fixed", "arch=mlp", "trainer.lr=0.1,0.2", "trainer.epochs=1,2,3,4", "seed=0,1",
            "hydra.sweep.dir=sweep"]
    code, err, launched = _preflight_sweep(good, monkeypatch, capsys, processes=2)
    assert code == 0 and "(2 processes)" in err, err
    sweep = str(tmp_path / "sweep")
    assert launched == {sweep: [tmp_path / "sweep" / str(n) for n in range(16)]}
    assert _preflight_sweep(good, monkeypatch, capsys, processes=1)[2] == launched
    assert not (tmp_path / "sweep").exists()  # checked, nothing written


def test_an_unexpected_error_while_a_run_starts_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    # not a bad input dal-run knows of (a library's error, a bug): still one line, and in a
    # sweep the job's status.json says it while the other jobs go on
    from dal_runner import run
    from dal_runner.io import read_json

    def broken(cfg, choices=None):
        if cfg.seed == 0:
            raise RuntimeError("boom\nin two lines")
        return real(cfg, choices)

    real = run.build
    monkeypatch.setattr(run, "build", broken)
    code, out, err = run_cli_inprocess(["seed=0", "hydra.run.dir=r"], tmp_path, monkeypatch, capsys)
    assert (code, err.strip()) == (1, "dal-run: error: could not start the run: RuntimeError: boom in two lines")
    assert not (tmp_path / "r").exists()
    code, out, err = run_cli_inprocess(["-m", "search=fixed", "arch=mlp", "trainer.epochs=1", "budget.max_rounds=1",
                                        "seed=0,1", "hydra.sweep.dir=s"], tmp_path, monkeypatch, capsys)
    assert code == 1 and "none of" not in err and "1 of 2 runs of the sweep did not complete" in err
    assert read_json(tmp_path / "s" / "0" / "status.json")["error"] == "RuntimeError: boom\nin two lines"
    assert read_json(tmp_path / "s" / "1" / "status.json")["state"] == "completed"


def test_m_after_the_overrides_runs_the_sweep_and_version_names_dal_runner(tmp_path, monkeypatch, capsys):
    from importlib.metadata import version

    code, out, err = run_cli_inprocess(["search=fixed", "arch=mlp", "trainer.epochs=1", "budget.max_rounds=1", "-m",
                                        "seed=0,1", "hydra.sweep.dir=s", "~hydra.callbacks.report"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir()) == ["0", "1"]
    code, out, err = run_cli_inprocess(["--version"], tmp_path, monkeypatch, capsys)
    from dal_runner.provenance import source_commit

    at = f" at commit {source_commit()}" if source_commit() else ""  # a checkout's (None: an installed copy)
    assert code == 0 and out.startswith(f"dal-runner {version('dal-runner')}{at} (Hydra "), out


def test_help_piped_into_a_pager_that_stops_early_ends_quietly(tmp_path):
    import subprocess

    # `true` closes the pipe at once, long before dal-run has imported its modules and writes
    res = subprocess.run(f"'{BIN / 'dal-run'}' --help | true; exit ${{PIPESTATUS[0]}}", shell=True,
                         executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_a_slurm_sweep_over_files_this_machine_lacks_is_warned_not_refused(tmp_path, capsys):
    # the SLURM nodes may see files the machine submitting the jobs does not
    from dal_runner.preflight import _check_data_files

    svhn = {"name": "svhn", "root": str(tmp_path / "nope"), "download": False, "extra": False}
    _check_data_files([(svhn, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")] * 2, set())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dal-run: warning: dataset.root=") and "SLURM" in err
    with pytest.raises(SystemExit) as stop:  # on this machine's launchers: refused
        _check_data_files([(svhn, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")], set())
    assert stop.value.code == 2 and "no svhn files there" in capsys.readouterr().err
    _check_data_files([({**svhn, "download": True}, "hydra._internal.core_plugins.basic_launcher.BasicLauncher")],
                      set())


def test_a_failed_start_with_a_config_dir_of_ones_own_removes_only_what_hydra_made(tmp_path, monkeypatch, capsys):
    # before: the preflight leaves a config tree of one's own to Hydra, and an empty outputs/runs/<date>
    # was left behind
    own = tmp_path / "my_configs"
    own.mkdir()
    code, out, err = run_cli_inprocess(["-cd", str(own), "trainer.lr=-1"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "trainer.lr=-1.0: accepted: a finite number > 0" in err and "Traceback" not in err + out
    assert not (tmp_path / "outputs").exists(), list(tmp_path.rglob("*"))
    (tmp_path / "outputs" / "runs").mkdir(parents=True)  # the user's: kept
    code, _, _ = run_cli_inprocess(["-cd", str(own), "trainer.lr=-1"], tmp_path, monkeypatch, capsys)
    assert code == 2 and [p.name for p in (tmp_path / "outputs").rglob("*")] == ["runs"]


def test_hydra_help_with_overrides_prints_hydras_help(tmp_path, monkeypatch, capsys):
    """Hydra's help is the same whatever the overrides; with one (seed=1) it was a traceback."""
    code, out, err = run_cli_inprocess(["--hydra-help", "seed=1"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "Hydra (" in out and "--cfg" in out and "Traceback" not in err, (out, err)
