"""Small real models made in the tests: an MLP trained for a moment on scikit-learn's bundled
digits, written as ONNX (by hand, with the trained weights), torch.export and TorchScript."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits


def digits() -> np.ndarray:
    x = load_digits().data.astype(np.float32)
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


class MLP(torch.nn.Module):
    """64 → hidden → 10; returns (logits, hidden): the hidden layer is the embedding."""

    def __init__(self, hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.fc1, self.drop, self.fc2 = torch.nn.Linear(64, hidden), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.drop(torch.relu(self.fc1(x)))
        return self.fc2(h), h


def train(seed: int, steps: int = 40) -> MLP:
    torch.manual_seed(seed)
    data = load_digits()
    x, y = torch.from_numpy(digits()), torch.from_numpy(data.target).long()
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):  # full batch: well under a second
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    return model.eval()


def write_onnx(model: MLP, path: Path, mc: bool) -> None:
    """The MLP as an ONNX graph; with mc, its Dropout runs in training mode (random each run)."""
    w = {n: numpy_helper.from_array(p.detach().numpy().T.copy() if "weight" in n else p.detach().numpy(), n)
         for n, p in model.named_parameters()}
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["a"]), helper.make_node("Add", ["a", "fc1.bias"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"])]
    extra = []
    if mc:
        extra = [numpy_helper.from_array(np.array(model.drop.p, np.float32), "ratio"),
                 numpy_helper.from_array(np.array(True), "training")]
        nodes.append(helper.make_node("Dropout", ["r", "ratio", "training"], ["hidden"]))
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["hidden"]))
    nodes += [helper.make_node("MatMul", ["hidden", "fc2.weight"], ["c"]), helper.make_node("Add", ["c", "fc2.bias"], ["logits"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                               helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["N", 32])],
                              list(w.values()) + extra)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def write_pt2(model: MLP, path: Path, mc: bool) -> None:
    model = model.train() if mc else model.eval()
    ep = torch.export.export(model, (torch.randn(4, 64),), dynamic_shapes=({0: torch.export.Dim("n")},))
    torch.export.save(ep, str(path))
    model.eval()


def config(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields))


def make_repo(root: Path) -> dict[str, MLP]:
    """digits_onnx, digits_pt2, digits_ts, members m1-m3, a committee of them, and a broken folder."""
    nets = {name: train(seed) for seed, name in enumerate(["digits", "m1", "m2", "m3"])}
    signature = {"input": {"name": "x", "dtype": "float32", "shape": [-1, 64]}}
    config(root / "digits_onnx", **signature, outputs={"logits": "logits", "embedding": "hidden"}, max_batch_rows=500)
    write_onnx(nets["digits"], root / "digits_onnx" / "model.onnx", mc=False)
    write_onnx(nets["digits"], root / "digits_onnx" / "model_mc.onnx", mc=True)
    config(root / "digits_pt2", **signature, outputs={"logits": "0", "embedding": "1"}, strategy="bald")
    write_pt2(nets["digits"], root / "digits_pt2" / "model.pt2", mc=False)
    write_pt2(nets["digits"], root / "digits_pt2" / "model_mc.pt2", mc=True)
    config(root / "digits_ts", **signature, outputs={"logits": "0"})
    torch.jit.save(torch.jit.script(nets["digits"]), str(root / "digits_ts" / "model.pt"))
    for name in ("m1", "m2", "m3"):
        config(root / name, **signature)
        write_onnx(nets[name], root / name / "model.onnx", mc=False)
    config(root / "committee", committee=["m1", "m2", "m3"], strategy="vote_entropy")
    config(root / "broken", input={"name": "x", "dtype": "float31", "shape": [-1, 64]})
    write_onnx(nets["digits"], root / "broken" / "model.onnx", mc=False)
    return nets


class Slow(torch.nn.Module):
    """256 → 10 through `rounds` tanh layers of one 256 × 256 matrix: a model that takes its time
    (≈ 1 ms per round for 2048 rows on one core), to hold a batch in the server while others call."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.w = torch.nn.Parameter(torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) / 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for _ in range(self.rounds):
            h = torch.tanh(h @ self.w)
        return h[:, :10] * 5


def write_slow(root: Path, rounds: int) -> None:
    config(root / "slow", input={"name": "x", "dtype": "float32", "shape": [-1, 256]}, max_batch_rows=1 << 20)
    torch.jit.save(torch.jit.script(Slow(rounds).eval()), str(root / "slow" / "model.pt"))
