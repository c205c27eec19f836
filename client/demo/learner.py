"""The demo's learner: a small torch MLP with dropout, trained full batch, exported as TorchScript
to a poolscore model repository (torch is imported only when one is made)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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


