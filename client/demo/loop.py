"""The demo's loop: per dataset, strategy and seed, train → export → ReloadModels → score the
unlabeled pool on the server → label → train again."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolscore.client.demo.learner import accuracy, export, train

STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge", "cluster_margin",
              "expected_error_reduction")
QUICK = ("random", "margin", "entropy", "bald", "coreset")
SAMPLES = 10  # MC-dropout passes for bald
OPTIONS = {"random": {"seed": 0}, "badge": {"seed": 0}}
WHOLE_POOL = ("coreset", "badge", "cluster_margin", "expected_error_reduction")  # every unlabeled item a candidate


@dataclass(frozen=True)
class Task:
    name: str
    x: np.ndarray  # [N, D] float32, standardised
    y: np.ndarray  # [N] int64
    classes: int
    seed_labels: int
    per_round: int
    rounds: int
    targets: tuple[float, ...]  # accuracies the table asks "labels to reach"


def tasks(quick: bool) -> list[Task]:
    from sklearn.datasets import load_breast_cancer, load_digits

    def standard(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return (x - x.mean(0)) / (x.std(0) + 1e-6)

    d = load_digits()
    digits = Task("digits", standard(d.data), d.target.astype(np.int64), 10, 20, 10, 10 if quick else 15,
                  (0.80, 0.85, 0.90))
    if quick:
        return [digits]
    b = load_breast_cancer()
    cancer = Task("breast_cancer", standard(b.data), b.target.astype(np.int64), 2, 6, 4, 10, (0.92, 0.95))
    return [digits, cancer]


@dataclass
class Run:
    strategy: str
    seed: int
    labeled: list[int]
    curve: list[tuple[int, float]]  # (labels, test accuracy) per round
    model: object = None


def split(task: Task, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(pool indices, test indices, seed labels): a stratified 30% test set, a random seed set."""
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(task.y == c))[: int(0.3 * (task.y == c).sum())]
                           for c in range(task.classes)])
    pool = np.setdiff1d(np.arange(len(task.y)), test)
    return pool, np.sort(test), sorted(rng.choice(pool, task.seed_labels, replace=False).tolist())


def run_task(client, repo: Path, task: Task, strategies: tuple[str, ...], seeds: int, log) -> list[dict]:
    rows: list[dict] = []
    splits = {seed: split(task, seed) for seed in range(seeds)}
    runs = [Run(s, seed, list(splits[seed][2]), []) for s in strategies for seed in range(seeds)]
    for r in range(task.rounds + 1):
        for run in runs:  # train and export every run's model, then reload the repository once
            pool, test, _ = splits[run.seed]
            run.model = train(task.x[run.labeled], task.y[run.labeled], task.classes, seed=1000 * run.seed + r)
            acc = accuracy(run.model, task.x[test], task.y[test])
            run.curve.append((len(run.labeled), acc))
            rows.append({"dataset": task.name, "strategy": run.strategy, "seed": run.seed, "round": r,
                         "labels": len(run.labeled), "accuracy": round(acc, 5)})
            export(run.model, repo, _model_name(task, run), task.x.shape[1])
        log(_round_line(task, r, runs))
        if r == task.rounds:
            break
        info = client.reload_models()
        if info.model_errors:
            raise RuntimeError(f"the server refused the round's models: {dict(info.model_errors)}")
        for run in runs:
            run.labeled += _selected(client, task, run, splits[run.seed][0], check=(r == 0 and run.strategy == "margin"))
    for run in runs:
        shutil.rmtree(repo / _model_name(task, run), ignore_errors=True)  # the next task's reloads skip them
    client.reload_models()
    return rows


def _selected(client, task: Task, run: Run, pool: np.ndarray, check: bool) -> list[int]:
    """The next items to label: the strategy's top-k of the unlabeled pool, scored on the server."""
    unlabeled = np.setdiff1d(pool, run.labeled)
    samples = SAMPLES if run.strategy == "bald" else 0
    extra = {}
    if run.strategy == "coreset":  # the labeled items are its first centers (Sener & Savarese)
        import torch

        with torch.no_grad():
            extra["labeled"] = run.model(torch.from_numpy(task.x[run.labeled]))[1].numpy()
    top = client.score_pool(task.x[unlabeled], run.strategy, k=task.per_round, ids=unlabeled, **extra,
                            model=_model_name(task, run), samples=samples, model_seed=run.seed,
                            **OPTIONS.get(run.strategy, {}),
                            **({"candidates": len(unlabeled)} if run.strategy in WHOLE_POOL else {}))
    picked = [int(i) for i in top.ids]
    if check:  # the client-side path: logits made here, scored on the server
        import torch

        with torch.no_grad():
            logits = run.model(torch.from_numpy(task.x[unlabeled]))[0].numpy()
        mine = client.score_pool(logits, "margin", k=task.per_round, ids=unlabeled)
        if [int(i) for i in mine.ids] != picked:
            raise AssertionError(f"{task.name} seed {run.seed}: client-side logits picked {list(mine.ids)}, "
                                 f"the hosted model {picked}")
    return picked


def _model_name(task: Task, run: Run) -> str:
    return f"{task.name}-{run.strategy}-{run.seed}"


def _round_line(task: Task, r: int, runs: list[Run]) -> str:
    by = {}
    for run in runs:
        by.setdefault(run.strategy, []).append(run.curve[-1][1])
    labels = runs[0].curve[-1][0]
    cells = "  ".join(f"{np.mean(v):.3f}" for v in by.values())
    return f"{task.name:<14} {r:>5} {labels:>6}  {cells}"


