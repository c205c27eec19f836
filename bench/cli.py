"""The main job from a cold start: `poolscore score POOL --strategy entropy -k 1000` as a user
runs it (a new process, no server running), against the plain script a user would write
instead (pyarrow or NumPy + SciPy, a dozen lines), on the shipped 5,000-row sample and on a
2M-row Parquet pool (C = 10). Both write the top-K to a CSV; both are timed as whole
processes, best of a few runs (the first run is printed too: it pays the page cache).

    python bench/cli.py            # the sample and 2M rows
    python bench/cli.py --quick    # the sample and 200k rows
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import make_pool  # noqa: E402

PLAIN = '''
import sys, numpy as np, pyarrow.parquet as pq
from scipy.special import log_softmax
path, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if path.endswith(".npz"):
    d = np.load(path); ids, z = d["ids"], d["logits"]
else:
    t = pq.read_table(path); ids = t.column("id").to_numpy()
    z = t.column("logits").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
lp = log_softmax(z.astype(np.float32), axis=1)
h = -(np.exp(lp) * lp).sum(1)
top = np.argpartition(-h, k - 1)[:k]
top = top[np.lexsort((ids[top], -h[top]))]
np.savetxt(out, np.c_[np.arange(1, k + 1), ids[top], h[top]], fmt=["%d", "%d", "%.9g"], delimiter=",",
           header="rank,id,score", comments="")
'''


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """(first, best) seconds of a whole process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed: {done.stderr[-2000:]}")
    return times[0], min(times)


def top_ids(csv: Path) -> list[int]:
    return [int(float(line.split(",")[1])) for line in csv.read_text().splitlines()[1:]]


def compare(name: str, pool: Path, k: int, repeats: int, scratch: Path) -> None:
    ours, plain = scratch / "ours.csv", scratch / "plain.csv"
    poolscore = [sys.executable, "-m", "poolscore.client.cli", "score", str(pool), "--strategy", "entropy",
                 "-k", str(k), "--out", str(ours), "--no-progress"]
    script = [sys.executable, "-c", PLAIN, str(pool), str(k), str(plain)]
    first_p, best_p = timed(poolscore, repeats)
    first_s, best_s = timed(script, repeats)
    same = len(set(top_ids(ours)) & set(top_ids(plain)))
    print(f"{name}:")
    print(f"  poolscore score: first {first_p:.2f} s, best {best_p:.2f} s")
    print(f"  plain script:    first {first_s:.2f} s, best {best_s:.2f} s")
    print(f"  poolscore / script speed: {best_s / best_p:.2f}x (goal >= 1.0x); top-{k} agreement {same}/{k}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        compare("sample_pool.npz (5,000 x 10)", ROOT / "examples" / "sample_pool.npz", 1000, repeats, scratch)
        rows = 200_000 if args.quick else 2_000_000
        big = scratch / "pool.parquet"
        make_pool.write(big, *make_pool.make(rows, 10, seed=0))
        compare(f"pool.parquet ({rows:,} x 10)", big, 1000, repeats, scratch)


if __name__ == "__main__":
    main()
