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
import tempfile
import time
from pathlib import Path

from poolscore.client.demo.learner import accuracy, export, train
from poolscore.client.demo.loop import QUICK, STRATEGIES, Task, run_task, split, tasks
from poolscore.client.demo.results import plot, summary, write_csv

__all__ = ["main", "run", "tasks", "split", "train", "accuracy", "export", "Task", "STRATEGIES", "QUICK"]


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

