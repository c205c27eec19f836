"""The active-learning loop against a poolscore server, for one strategy: the readable version.

    python examples/active_learning_loop.py                  # an embedded server, margin, digits
    python examples/active_learning_loop.py --strategy bald  # MC-dropout passes on the server
    python examples/active_learning_loop.py --target host:50051 --model-repo /models   # a server of yours

Each round: train a small MLP on what is labeled, put it in the server's model repository and
reload it, let the server score the unlabeled pool on raw features and pick the next items,
"label" them from the held-back labels. `poolscore demo` runs the same loop for every strategy
over several seeds and datasets, and draws the learning curves (poolscore.client.demo, whose
helpers this file uses for the model)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from poolscore.client import Client
from poolscore.client.demo import accuracy, export, split, tasks, train


def loop(client: Client, repo: Path, strategy: str, rounds: int, seed: int = 0) -> list[tuple[int, float]]:
    task = tasks(quick=True)[0]  # scikit-learn's digits: 1,797 images of 8 x 8 pixels, 10 classes
    pool, test, labeled = split(task, seed)  # 30% held out to test; 20 random seed labels
    curve = []
    for r in range(rounds + 1):
        model = train(task.x[labeled], task.y[labeled], task.classes, seed=r)
        curve.append((len(labeled), accuracy(model, task.x[test], task.y[test])))
        print(f"round {r:>2}: {len(labeled):>4} labels, test accuracy {curve[-1][1]:.3f}")
        if r == rounds:
            return curve
        export(model, repo, "learner", task.x.shape[1])  # model.pt + config.json
        client.reload_models()
        unlabeled = np.setdiff1d(pool, labeled)
        top = client.score_pool(task.x[unlabeled], strategy, k=task.per_round, ids=unlabeled, model="learner",
                                samples=10 if strategy == "bald" else 0)  # the server runs the model, then scores
        labeled = labeled + [int(i) for i in top.ids]  # the oracle: task.y holds every label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="margin")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--target", help="a running server (with --model-repo: its repository folder)")
    parser.add_argument("--model-repo", type=Path)
    args = parser.parse_args()
    if args.target:
        with Client(args.target) as client:
            loop(client, args.model_repo, args.strategy, args.rounds)
        return
    from poolscore.server.app import build_server
    from poolscore.server.config import ServeConfig

    with tempfile.TemporaryDirectory() as repo:
        app = build_server(ServeConfig(port=0, metrics_port=-1, compile="off", model_repo=repo)).start()
        try:
            with Client(app.target) as client:
                loop(client, Path(repo), args.strategy, args.rounds)
        finally:
            app.stop(grace=None)


if __name__ == "__main__":
    main()
