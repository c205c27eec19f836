"""`poolscore demo`: the active-learning loop end to end, through a real poolscore server.

Per dataset (scikit-learn's bundled digits and breast cancer: nothing is downloaded), per
strategy and seed: a small seed set, then rounds of
  train a small torch MLP with dropout on the labeled items
  → export it (TorchScript) to the server's model repository, and ReloadModels
  → score the unlabeled pool on raw inputs through the server (the hosted path; BALD with
    MC-dropout passes, the set-level strategies on the model's embedding)
  → "label" the selected items from the held-back labels, and train again.
Once per seed, the first round's margin picks are also made from logits computed here (the
client-side path) and checked to be the hosted path's. Learning curves (mean ± std over seeds)
go to a PNG and a CSV; a table gives the labels needed to reach target accuracies and the
area under the budget curve, each against random.

Needs the server and demo extras (torch, scikit-learn, matplotlib)."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


# --- the learner -------------------------------------------------------------------------------------

def make_mlp(inputs: int, classes: int):
    import torch

    class MLP(torch.nn.Module):
        """inputs → 64 → classes, dropout on the hidden layer; returns (logits, hidden)."""

        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.drop, self.fc2 = torch.nn.Linear(inputs, 64), torch.nn.Dropout(0.3), torch.nn.Linear(64, classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.drop(torch.relu(self.fc1(x)))
            return self.fc2(h), h

    return MLP()


def train(x: np.ndarray, y: np.ndarray, classes: int, seed: int, epochs: int = 150):
    import torch

    torch.manual_seed(seed)
    model = make_mlp(x.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):  # full batch: a few hundred rows at most
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt)[0], yt).backward()
        opt.step()
    return model.eval()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x))[0].argmax(1).numpy() == y).mean())


def export(model, repo: Path, name: str, inputs: int) -> None:
    """The round's model into the server's repository, as a TorchScript folder."""
    import torch

    folder = repo / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(model), str(folder / "model.pt"))
    (folder / "config.json").write_text(json.dumps({"input": {"name": "x", "dtype": "float32", "shape": [-1, inputs]},
                                                    "outputs": {"logits": "0", "embedding": "1"}}))


# --- the loop ----------------------------------------------------------------------------------------

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


# --- results ----------------------------------------------------------------------------------------

def curves(rows: list[dict], dataset: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """strategy → (labels, mean accuracy, std) over seeds."""
    out = {}
    for s in dict.fromkeys(r["strategy"] for r in rows if r["dataset"] == dataset):
        mine = [r for r in rows if r["dataset"] == dataset and r["strategy"] == s]
        labels = np.array(sorted({r["labels"] for r in mine}))
        acc = np.array([[r["accuracy"] for r in mine if r["labels"] == n] for n in labels])
        out[s] = (labels, acc.mean(1), acc.std(1))
    return out


def labels_to_reach(labels: np.ndarray, mean: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(mean >= target)
    return int(labels[hit[0]]) if len(hit) else None


def summary(rows: list[dict], task: Task) -> list[str]:
    """The table: labels to reach each target (mean curve) and the area under the budget curve,
    each against random."""
    got = curves(rows, task.name)
    base_labels, base_mean, _ = got["random"]
    base_auc = float(np.mean(base_mean))
    head = " ".join(f"{'→ ' + format(t, '.0%'):>16}" for t in task.targets)
    lines = [f"{task.name}: labels to reach a test accuracy (mean over seeds; in brackets, random's labels / "
             f"the strategy's), and the area under the curve", f"  {'strategy':<26}{head}   {'AUC':>6} {'vs random':>9}"]
    for s, (labels, mean, _) in got.items():
        cells = []
        for t in task.targets:
            n, base = labels_to_reach(labels, mean, t), labels_to_reach(base_labels, base_mean, t)
            if n is None:
                cells.append(f"> {labels[-1]}".rjust(16))
            elif base is None:
                cells.append(f"{n} (random > {base_labels[-1]})".rjust(16))
            else:
                cells.append(f"{n} ({base / n:.2f}×)".rjust(16))
        auc = float(np.mean(mean))
        lines.append(f"  {s:<26}{' '.join(cells)}   {auc:6.3f} {auc / base_auc:8.3f}×")
    return lines


def plot(rows: list[dict], task_list: list[Task], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(task_list), figsize=(6.5 * len(task_list), 4.5), squeeze=False)
    for ax, task in zip(axes[0], task_list):
        for s, (labels, mean, std) in curves(rows, task.name).items():
            style = {"color": "black", "linestyle": "--"} if s == "random" else {}
            ax.plot(labels, mean, label=s, linewidth=1.6, **style)
            ax.fill_between(labels, mean - std, mean + std, alpha=0.12, **({"color": "black"} if s == "random" else {}))
        seeds = len({r["seed"] for r in rows})
        ax.set(title=f"{task.name}: test accuracy vs labels ({seeds} seeds, mean ± std)", xlabel="labels",
               ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# --- entry points -----------------------------------------------------------------------------------

def run(client, repo: Path, *, quick: bool = False, seeds: int | None = None, strategies: tuple[str, ...] | None = None,
        task_list: list[Task] | None = None, log=print) -> tuple[list[dict], list[Task]]:
    """The whole comparison against the server behind `client`, whose --model-repo is `repo`."""
    import torch

    torch.set_num_threads(1)  # the server scores beside us on the same cores
    task_list = task_list if task_list is not None else tasks(quick)
    strategies = strategies or (QUICK if quick else STRATEGIES)
    seeds = seeds or (3 if quick else 5)
    rows = []
    for task in task_list:
        log(f"{'dataset':<14} {'round':>5} {'labels':>6}  " + "  ".join(s[:5] for s in strategies))
        rows += run_task(client, repo, task, strategies, seeds, log)
    return rows, task_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolscore demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, 3 seeds, 5 strategies, 10 rounds")
    parser.add_argument("--seeds", type=int, help="seeds per strategy (default 5; 3 with --quick)")
    parser.add_argument("--out", type=Path, default=Path("demo-results"), help="folder for the PNG and the CSV")
    parser.add_argument("--target", help="a running server whose --model-repo is --model-repo (default: an embedded one)")
    parser.add_argument("--model-repo", type=Path, help="with --target: that server's model repository")
    args = parser.parse_args(argv)
    if bool(args.target) != bool(args.model_repo):
        parser.error("--target and --model-repo go together")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    from poolscore.client import Client

    with tempfile.TemporaryDirectory() as scratch, _server(args, Path(scratch)) as (target, repo):
        with Client(target) as client:
            client.wait_ready()
            rows, task_list = run(client, repo, quick=args.quick, seeds=args.seeds)
    write_csv(rows, args.out / "learning_curves.csv")
    plot(rows, task_list, args.out / "learning_curves.png")
    for task in task_list:
        print("\n" + "\n".join(summary(rows, task)))
    print(f"\nwrote {args.out / 'learning_curves.png'} and {args.out / 'learning_curves.csv'} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


class _server:
    """The server the demo talks to: --target, or an embedded one with a scratch model repository."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch, self.app = args, scratch, None

    def __enter__(self) -> tuple[str, Path]:
        if self.args.target:
            return self.args.target, self.args.model_repo
        from poolscore.server.app import build_server
        from poolscore.server.config import ServeConfig

        repo = self.scratch / "models"
        repo.mkdir()
        self.app = build_server(ServeConfig(port=0, metrics_port=-1, compile="off", warm="", model_repo=str(repo))).start()
        return self.app.target, repo

    def __exit__(self, *exc) -> None:
        if self.app is not None:
            self.app.stop(grace=None)


if __name__ == "__main__":
    sys.exit(main())
