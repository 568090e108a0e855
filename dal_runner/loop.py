"""Algorithm 2 of active-iNAS (Geifman & El-Yaniv 2019): the active learning loop.

    S_1 <- k random points of U                                  (line 3)
    loop: A_t <- search(S, A_{t-1});  train f in A_t on S        (lines 6-7)
          stop if the budget is exhausted or U is empty           (line 8)
          S' <- Q(f, S, U, b);  S <- S u S';  U <- U \\ S'         (lines 11-13)

Everything here takes plain Python objects; `run.py` builds them from the config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import torch

from dal_runner import state
from dal_runner import train as training
from dal_runner.arch import ArchSpec, Network, n_parameters, resnet
from dal_runner.config import TrainerConfig
from dal_runner.data import Dataset
from dal_runner.figures import arch_growth, learning_curve
from dal_runner.io import RunFolder
from dal_runner.job_control import raise_lost_stop
from dal_runner.metrics.auc import auc
from dal_runner.pool import Pool
from dal_runner.progress import Heartbeat, round_progress
from dal_runner.provenance import source_commit
from dal_runner.query import QueryContext
from dal_runner.search import SearchStrategy
from dal_runner.seeding import derive_seed, torch_generator

log = logging.getLogger("dal_runner")


@dataclass
class Budget:
    initial: int
    batch: Union[int, Dict[int, int]]  # an int, or a schedule {from_labels: batch}
    max_labels: int
    max_rounds: Optional[int] = None

    def batch_at(self, n_labeled: int) -> int:
        """The batch size once |S| = n_labeled: the schedule entry with the largest threshold <= n."""
        if isinstance(self.batch, int):
            return self.batch
        return self.batch[max(t for t in self.batch if t <= n_labeled)]

    def n_rounds(self, pool_size: int) -> int:
        """The rounds the loop trains: one per labeled-set size until max_labels, max_rounds or the pool ends."""
        n, rounds, end = self.initial, 1, min(self.max_labels, pool_size)
        while n < end and (self.max_rounds is None or rounds < self.max_rounds):
            n, rounds = n + min(self.batch_at(n), end - n), rounds + 1
        return rounds


def _rounded(value):
    """An accuracy as the CSV shows it: 6 decimals (float32 scores would print 0.20000000298...)."""
    return round(value, 6) if isinstance(value, float) else value


def initial_set(pool_size: int, k: int, seed: int) -> torch.Tensor:
    """Line 3 of Algorithm 2: k pool indices drawn uniformly at random, from the run seed alone."""
    return torch.randperm(pool_size, generator=torch_generator(seed, "initial"))[:k]


SEARCH_FIELDS = ["round", "step", "candidate", "n_blocks", "n_stacks", "n_params", "val_accuracy", "seconds",
                 "reused", "chosen", "epochs", "n_train", "stopped_early", "diverged"]


class BestCandidates:
    """The weights (on the CPU) of this round's candidates, for ``search.inherit``.

    The next round's candidates start from the CHOSEN candidate, which trained on this round's S'
    only; with the nested split (estimation.nested_split) no later V' holds a point it trained on,
    so inherited scores stay honest. (The round's final model trained on all of S, V' included:
    inheriting from it would score candidates on points they memorised.) The latest weights of
    every architecture trained to the end are kept (a retrained one replaces its first run, as the
    search's score does), so the choice is there whatever rule picked it; a round trains a few.
    """

    def __init__(self):
        self.weights: Dict[str, Dict[str, torch.Tensor]] = {}  # repr(spec) -> state dict

    def offer(self, spec: ArchSpec, model: Network, stopped_early: bool) -> None:
        if stopped_early:  # never chosen: and its latest estimate replaces any earlier one
            self.weights.pop(repr(spec), None)
        else:
            self.weights[repr(spec)] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def take(self, spec: ArchSpec) -> Optional[Dict[str, torch.Tensor]]:
        """The chosen candidate's weights (None if it was stopped early or not trained); clears the rest."""
        weights = self.weights.get(repr(spec))
        self.clear()
        return weights

    def clear(self) -> None:
        self.weights = {}


def run_active_learning(
    data: Dataset,
    search: SearchStrategy,
    query,
    trainer: TrainerConfig,
    budget: Budget,
    build_model: Callable[[ArchSpec], Network],
    seed: int,
    folder: RunFolder,
    title: str = "",
    search_trainer: Optional[TrainerConfig] = None,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    config: Optional[Dict] = None,
    resume: Optional[Dict] = None,
    inherit_weights: bool = False,
) -> Dict:
    """Run Algorithm 2; with `resume` (a `dal_runner.state` dict), continue after its last round.

    `config` (the resolved run config) is stored in the state so a resumption can be checked.
    """
    device = data.x_train.device
    pool = Pool(data.x_train.shape[0])

    def new_model(spec: ArchSpec) -> Network:
        return training.prepare(build_model(spec), device, data.is_image, trainer.precision, trainer.channels_last)

    log.info("data: %s, pool %d, test %d, %d classes, input %s %s", data.name, pool.size, data.x_test.shape[0],
             data.n_classes, " x ".join(map(str, data.input_shape)), str(data.x_train.dtype).replace("torch.", ""))
    if resume is None:
        # line 3: S_1 <- k points sampled at random from U
        first = initial_set(pool.size, budget.initial, seed)
        pool.add(first.tolist())
        selected = [{"round": 0, "pool_index": int(i)} for i in first]
        rounds: List[Dict] = []
        search_rows: List[Dict] = []
        previous: Optional[ArchSpec] = None
        t, elapsed = 0, 0.0
        parent = None  # search.inherit: the weights (CPU) the next round's candidates start from
        machines = [{"machine": state.machine(device), "from_round": 0}]
        code_at_start = source_commit()
    else:
        selected, rounds, search_rows = resume["selected"], resume["rounds"], resume["search"]
        # state written before search.csv's column took DESIGN.md's name (2026-12-03): arch -> candidate
        search_rows = [{("candidate" if k == "arch" else k): v for k, v in row.items()} for row in search_rows]
        pool.add([row["pool_index"] for row in selected])
        previous = ArchSpec(resume["arch"]["name"], **resume["arch"]["params"])
        t, elapsed = resume["next_round"], resume["elapsed"]
        state.restore_component(search, resume.get("search_state"), "search")
        state.restore_component(query, resume.get("query_state"), "query")
        state.restore_rng(resume["rng"], device)
        parent = resume.get("parent")
        if not resume.get("finished"):  # else: "all N rounds were done already", below
            log.info("resuming at round %d with %d labels (%s)", t, pool.n_labeled, previous)
        before, here = resume.get("machine"), state.machine(device)
        # every machine the run's rounds ran on, with the round each began at (summary.json says so)
        machines = list(resume.get("machines") or ([{"machine": before, "from_round": 0}] if before else []))
        if (not machines or machines[-1]["machine"] != here) and not resume.get("finished"):  # a round runs here
            machines.append({"machine": here, "from_round": t})
        code_at_start = resume.get("commit")  # the code the run began with (None: before it was recorded)
        if code_at_start not in (None, source_commit()) and not resume.get("finished"):
            log.warning("resuming with dal-runner at commit %s; the run began at %s: its rounds from here on may "
                        "differ from an uninterrupted run's (summary.json: versions)", source_commit(), code_at_start)
        if before is not None and before != here and not resume.get("finished"):  # OMP_NUM_THREADS, SLURM, a GPU
            log.warning("resuming on %s; before this stop the run ran on %s: the rounds from here on may differ "
                        "in their last bits (and then in the labels they pick) from those of a run left "
                        "uninterrupted there",
                        state.describe_machine(here), state.describe_machine(before))
    started = time.perf_counter() - elapsed

    def regulariser(params: TrainerConfig) -> Optional[Callable]:
        """The joint objective's unlabeled term (Ranganathan et al.) over U, for final models and
        search estimates alike, so the search scores architectures under the objective it trains."""
        if params.objective != "joint_entropy" or pool.n_unlabeled == 0:
            return None
        return training.entropy_regulariser(data.x_train, pool.unlabeled(), params.entropy_lambda, params.batch_size)

    best = BestCandidates()  # search.inherit: the next round's parent comes from these

    def estimate(spec: ArchSpec, train_idx: torch.Tensor, val_idx: torch.Tensor, est_seed: int,
                 on_epoch: Optional[Callable[[int, Callable[[], float]], bool]] = None) -> float:
        started_at = time.perf_counter()  # building the network too, as search.csv's seconds count it
        model = new_model(spec)
        if inherit_weights and parent is not None and spec.name == "resnet":
            resnet.inherit(model, parent)
        t_idx, v_idx = train_idx.to(device), val_idx.to(device)
        stopped = []

        def score() -> float:
            return training.evaluate(model, data.x_train[v_idx], data.y_train[v_idx], trainer.eval_batch_size)[0]

        def epoch_end(epoch: int) -> bool:
            stop = bool(on_epoch(epoch, score))
            stopped.append(stop)
            return stop

        params = search_trainer or trainer
        progress.update(t, f"round {t}: search {spec}")
        try:
            training.fit(model, data.x_train[t_idx], data.y_train[t_idx], params, est_seed, augment,
                         extra_loss=regulariser(params), on_epoch=None if on_epoch is None else epoch_end,
                         heartbeat=Heartbeat(f"round {t}: candidate {spec}", params.epochs))
        except training.TrainingDiverged:
            if inherit_weights:
                best.offer(spec, model, True)  # never a parent
            raise
        accuracy = score()
        if inherit_weights:
            best.offer(spec, model, any(stopped))
        log.info("round %d: candidate %s  V' accuracy %.4f  %.1fs%s", t, spec, accuracy,
                 time.perf_counter() - started_at, "  (stopped early)" if any(stopped) else "")
        return accuracy

    def write_results(final: bool) -> None:
        folder.rounds(rounds)
        folder.selected(selected)
        if search_rows:
            folder.search(search_rows, SEARCH_FIELDS)
        # a run that stops (or is stopped) before its last round leaves figures that say so
        unfinished = f"unfinished: {len(rounds)} of {budget.n_rounds(pool.size)} rounds"
        shown = title if final else f"{title}\n{unfinished}" if title else unfinished
        learning_curve(rounds, shown, folder.path / "learning_curve.png")
        arch_growth(rounds, shown, folder.path / "arch_growth.png")

    data_fingerprint = data.fingerprint()
    finished = resume is not None and bool(resume.get("finished"))
    if finished:
        log.info("all %d rounds were done already; the results are written from them", len(rounds))
        write_results(True)  # the process that saved the state may have stopped before it wrote them
    with round_progress(budget.n_rounds(pool.size), t) as progress:
        while not finished:
            raise_lost_stop()  # a stop that Python dropped inside a callback during the last round's query
            folder.status("running", round=t, n_labeled=pool.n_labeled)  # the round in progress
            t0 = time.perf_counter()
            labeled = pool.labeled()
            # line 6: A_t <- search(S, A_{t-1})
            progress.update(t, f"round {t}: search")
            best.clear()
            result = search.select(t, labeled, previous, estimate)
            if result.candidates and all(row.get("diverged") for row in result.candidates):
                raise training.TrainingDiverged(
                    f"round {t}: every candidate's training diverged ({len(result.candidates)}; why, in the log "
                    "above); a smaller trainer.lr usually helps")
            if inherit_weights:
                parent = best.take(result.spec)
                if parent is None:
                    log.info("round %d: %s was not trained to the end this round; the next candidates start from scratch",
                             t, result.spec)
            if previous is None:
                log.info("round %d: architecture %s", t, result.spec)
            elif result.spec != previous:
                log.info("round %d: architecture %s -> %s", t, previous, result.spec)
            previous = result.spec
            search_rows += [{"round": t, **row, "val_accuracy": _rounded(row.get("val_accuracy"))}
                            for row in result.candidates]
            t1 = time.perf_counter()
            # line 7: train f in A_t using S (from scratch)
            progress.update(t, f"round {t}: train")
            model = new_model(result.spec)
            idx = labeled.to(device)
            losses = training.fit(model, data.x_train[idx], data.y_train[idx], trainer, derive_seed(seed, "train", t),
                                  augment, extra_loss=regulariser(trainer),
                                  heartbeat=Heartbeat(f"round {t}: train {result.spec}", trainer.epochs))
            t2 = time.perf_counter()
            acc, loss = training.evaluate(model, data.x_test, data.y_test, trainer.eval_batch_size)
            t3 = time.perf_counter()
            record = {
                "round": t, "n_labeled": pool.n_labeled, "test_accuracy": round(acc, 6),
                "test_loss": round(loss, 6), "arch": repr(result.spec), "n_params": n_parameters(model),
                "train_epochs": len(losses),  # trainer.epochs, or fewer with trainer.stop_at_train_accuracy
                "search_seconds": round(t1 - t0, 3), "train_seconds": round(t2 - t1, 3),
                "eval_seconds": round(t3 - t2, 3), "query_seconds": 0.0, "infer_seconds": 0.0, "select_seconds": 0.0,
            }
            # line 8: stop when the budget is exhausted or U is empty
            done = (pool.n_labeled >= budget.max_labels or pool.n_unlabeled == 0
                    or (budget.max_rounds is not None and t + 1 >= budget.max_rounds))
            if not done:
                # lines 11-13: S' <- Q(f, S, U, b); S <- S u S'; U <- U \ S'
                progress.update(t, f"round {t}: query")
                k = min(budget.batch_at(pool.n_labeled), budget.max_labels - pool.n_labeled, pool.n_unlabeled)
                unlabeled = pool.unlabeled()
                ctx = QueryContext(model, data.x_train, pool.labeled(), unlabeled,
                                   torch_generator(seed, "query", t), trainer.eval_batch_size, y=data.y_train)
                picked = unlabeled[query.select(ctx, k).cpu()]
                pool.add(picked.tolist())
                selected += [{"round": t + 1, "pool_index": int(i)} for i in picked]
                record["query_seconds"] = round(time.perf_counter() - t3, 3)
                record["infer_seconds"] = round(ctx.infer_seconds, 3)
                record["select_seconds"] = round(record["query_seconds"] - ctx.infer_seconds, 3)
            record["round_seconds"] = round(time.perf_counter() - t0, 3)
            rounds.append(record)
            log.info("round %d  labels %d  accuracy %.4f  arch %s  %.1fs", t, record["n_labeled"], acc,
                     record["arch"], record["round_seconds"])
            # what a resumption needs to start round t + 1; after the last round, the mark that
            # nothing is left (a run launched again into its folder is then not run again). Saved
            # before the files: a stop between the two leaves files one round behind a state that
            # rewrites them, never a round in the files that no state can continue from
            state.save(folder.path, {
                "next_round": t + 1, "finished": done, "config": config or {}, "selected": selected, "rounds": rounds,
                "search": search_rows, "arch": {"name": previous.name, "params": dict(previous.params)},
                "search_state": state.component_state(search), "query_state": state.component_state(query),
                "rng": state.rng_states(device), "elapsed": time.perf_counter() - started,
                # with inheritance the next candidates start from these weights: part of the state
                "parent": parent if inherit_weights else None,
                "data": data_fingerprint,  # a resumption checks that its data are these
                "machine": state.machine(device),  # a resumption elsewhere says so
                "machines": machines,
                "commit": code_at_start,
            })
            if not done:  # round t is saved: a stop from here on is one a resumption continues at round t + 1
                folder.status("running", round=t + 1, n_labeled=pool.n_labeled)
            write_results(done)
            progress.update(t + 1, f"round {t}: done")
            if done:
                break
            t += 1
    return {
        "final_accuracy": rounds[-1]["test_accuracy"],
        "final_n_labeled": rounds[-1]["n_labeled"],
        "auc": round(auc([r["n_labeled"] for r in rounds], [r["test_accuracy"] for r in rounds]), 6),  # as rounds.csv
        "n_rounds": len(rounds),
        "loop_seconds": round(time.perf_counter() - started, 3),
        # where the rounds ran: one entry, or one per machine / thread count a resumption changed to
        "machines": [f"{state.describe_machine(m['machine'])} from round {m['from_round']}" for m in machines],
        "commit_at_start": code_at_start,
    }
