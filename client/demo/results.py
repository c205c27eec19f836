"""The demo's results: curves (mean ± std over seeds), the labels-to-target and AUC table
against random, the PNG (matplotlib, imported when drawn) and the CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from poolscore.client.demo.loop import Task

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


