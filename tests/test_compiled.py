"""torch.compile'd kernels give the eager kernels' scores, and never make a caller wait."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions, strategy_named
from poolscore.server.backends.torch.compiled import key_of
from poolscore.server.backends.torch.kernels import KERNELS

pytestmark = pytest.mark.compiled
COMPILED = ["entropy", "margin", "bald"]  # a reduction, a topk, a sample axis: ~5-20 s each


@pytest.fixture(scope="module")
def compiled_scorer() -> Scorer:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    s = Scorer(device, compile="background")
    s.kernels.warm([strategy_named(n) for n in COMPILED], "logits", torch.float32, s.device, classes=10)
    s.kernels.wait()
    yield s
    s.close()


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_kernels_match_eager_for_new_shapes(compiled_scorer: Scorer, scorer: Scorer, name: str) -> None:
    rng = np.random.default_rng(3)
    for shape in ([(1000, 10), (33, 1000), (2, 2)] if name != "bald" else [(100, 7, 10), (5, 2, 3)]):
        x = torch.from_numpy((rng.normal(size=shape) * 5).astype(np.float32))
        got = compiled_scorer.score(name, x, options=ScoreOptions(temperature=0.7))
        want = scorer.score(name, x, options=ScoreOptions(temperature=0.7)).cpu()
        np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=2e-5, atol=1e-6)
    key = key_of(strategy_named(name), "logits", x.to(compiled_scorer.device), None)
    assert key in compiled_scorer.kernels.ready_keys()


def test_compiled_kernel_still_names_the_bad_row(compiled_scorer: Scorer) -> None:
    x = torch.randn(500, 10)
    x[321, 4] = float("nan")
    with pytest.raises(ValueError, match="logits: NaN in row 321"):
        compiled_scorer.score("entropy", x)


def test_first_use_serves_eagerly_while_compiling_in_the_background() -> None:
    counts: list[int] = []
    s = Scorer("cpu", compile="background", on_compiled=counts.append)  # the server's gauge hook
    try:
        x = torch.randn(64, 6, dtype=torch.float64)  # a key nothing else compiled
        strategy = strategy_named("least_confidence")
        key = key_of(strategy, "logits", x, None)
        # the first ask starts the compilation and answers at once with the eager kernel
        assert s.kernels.kernel_for(strategy, "logits", x, None) is KERNELS["least_confidence"]
        first = s.score("least_confidence", x)
        s.kernels.wait()
        assert key in s.kernels.ready_keys() and counts == [1]
        assert s.kernels.kernel_for(strategy, "logits", x, None) is not KERNELS["least_confidence"]
        torch.testing.assert_close(s.score("least_confidence", x), first, rtol=1e-12, atol=0)
    finally:
        s.close()


def test_close_waits_for_the_compilation_in_progress_and_starts_none_after() -> None:
    """A process that exits while inductor compiles aborts; close() leaves nothing running."""
    s = Scorer("cpu", compile="background")
    x = torch.randn(64, 5, dtype=torch.float64)
    for name in ("margin", "ratio", "entropy"):  # queue a few compilations
        s.score(name, x)
    worker = s.kernels._worker
    s.close()
    assert not worker.is_alive()
    assert all(f.done() for f in s.kernels._pending.values())  # finished, or cancelled before starting
    pending = len(s.kernels._pending)
    strategy = strategy_named("least_confidence")
    assert s.kernels.kernel_for(strategy, "logits", x, None) is KERNELS["least_confidence"]
    s.kernels.wait()  # a cancelled compilation is not an error
    assert len(s.kernels._pending) == pending and not worker.is_alive()


def test_close_while_sync_requests_wait_lets_them_finish_with_the_code_at_hand() -> None:
    import threading

    s = Scorer("cpu", compile="sync")
    x = torch.randn(256, 30)  # C = 30: a bucket the other tests do not compile
    results: dict[str, object] = {}

    def score(name: str) -> None:
        try:
            results[name] = s.score(name, x)
        except Exception as err:  # noqa: BLE001 - the assertion below reports it
            results[name] = err

    threads = [threading.Thread(target=score, args=(n,)) for n in ("entropy", "margin", "ratio")]
    for t in threads:
        t.start()
    s.close()  # cancels what is queued behind the compilation in progress
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 3
    for name, got in results.items():
        assert isinstance(got, torch.Tensor), f"{name}: {got!r}"
        torch.testing.assert_close(got, KERNELS[name](x, None, torch.tensor(1.0, dtype=torch.float64), "logits"),
                                   rtol=2e-6, atol=1e-7)


def test_sync_mode_scores_a_new_class_count_with_its_own_compilations_at_once() -> None:
    from poolscore.server.backends.torch.relayout import RowsInnerKernel
    s = Scorer("cpu", compile="sync")
    try:
        # float64: float32 and half precision are scored natively (test_native.py)
        x = torch.from_numpy(np.random.default_rng(8).normal(size=(500, 5)))
        got = s.score("margin", x)  # one call: the any-C kernel, then C = 5's relayout and columns
        kernel = s.kernels.kernel_for(strategy_named("margin"), "logits", x, None)
        assert isinstance(kernel, RowsInnerKernel)
        assert kernel.relayout.tuned_for(x) and kernel.columns.ready(x, "logits")
        np.testing.assert_allclose(got.numpy(), KERNELS["margin"](x, None, torch.tensor(1.0, dtype=torch.float64),
                                                                    "logits").numpy(), rtol=2e-6, atol=1e-7)
    finally:
        s.close()


def test_few_classes_run_rows_inner_on_the_cpu_with_the_same_scores(compiled_scorer: Scorer, scorer: Scorer) -> None:
    """C ≤ 16 goes through the relayout on the CPU; a NaN still names its row there."""
    from poolscore.server.backends.torch.relayout import RowsInnerKernel
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(4099, 3)))  # float64: float32 and half are native
    x = x.to(compiled_scorer.device)
    compiled_scorer.kernels.warm([strategy_named("entropy")], "logits", torch.float64, x.device, classes=3)
    compiled_scorer.kernels.wait()
    kernel = compiled_scorer.kernels.kernel_for(strategy_named("entropy"), "logits", x, None)
    assert isinstance(kernel, RowsInnerKernel) == (x.device.type == "cpu")
    want = scorer.score("entropy", x.cpu()).numpy()
    np.testing.assert_allclose(compiled_scorer.score("entropy", x).cpu().numpy(), want, rtol=2e-5, atol=1e-6)
    compiled_scorer.kernels.wait()  # the first batch started the relayout compiled for C = 3
    np.testing.assert_allclose(compiled_scorer.score("entropy", x).cpu().numpy(), want, rtol=2e-5, atol=1e-6)
    if isinstance(kernel, RowsInnerKernel):  # and now C = 3 has its own relayout and column kernel
        assert kernel.relayout.tuned_for(x) and kernel.columns.ready(x, "logits")
        assert not kernel.columns.ready(x, "probabilities")  # each input kind is its own compilation
        compiled_scorer.kernels.wait()
        assert kernel.columns.ready(x, "probabilities")
    x[4000, 1] = float("inf")
    with pytest.raises(ValueError, match="row 4000"):
        compiled_scorer.score("entropy", x)


def test_a_batch_larger_than_the_cache_block_is_scored_in_blocks_alike(compiled_scorer: Scorer, scorer: Scorer) -> None:
    from poolscore.server.backends.torch.relayout import CHUNK_BYTES_PER_THREAD
    rows = 3 * CHUNK_BYTES_PER_THREAD * torch.get_num_threads() // 40 + 7  # three blocks and a bit, at C = 10
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(rows, 10)).astype(np.float32) * 4)
    x = x.to(compiled_scorer.device)
    compiled_scorer.score("entropy", x[:100])
    compiled_scorer.kernels.wait()
    np.testing.assert_allclose(compiled_scorer.score("entropy", x).cpu().numpy(),
                               scorer.score("entropy", x.cpu()).numpy(), rtol=2e-5, atol=1e-6)
    x[rows - 3, 9] = float("nan")  # in the last block: the row is still counted from the batch's start
    with pytest.raises(ValueError, match=f"logits: NaN in row {rows - 3}"):
        compiled_scorer.score("entropy", x)


@pytest.mark.parametrize("name, shape, dtype", [("bald", (4, 300), np.float32), ("entropy", (300,), np.float64)])
def test_many_classes_are_scored_in_cache_blocks_alike(compiled_scorer: Scorer, scorer: Scorer, name: str,
                                                      shape: tuple[int, ...], dtype) -> None:
    """Past the rows-inner bucket (C > 16) a compiled CPU kernel runs blocked too (float32
    sample-axis ones past C = 256, below it native; pointwise float32 is native at any C): the
    same scores as one eager call, a bad row named from the batch's start."""
    from poolscore.server.backends.torch.relayout import CHUNK_BYTES_PER_THREAD, Blocked
    row = 4 * int(np.prod(shape))
    rows = 2 * CHUNK_BYTES_PER_THREAD * torch.get_num_threads() // row + 5  # two blocks and a bit
    x = torch.from_numpy((np.random.default_rng(7).normal(size=(rows, *shape)) * 3).astype(dtype))
    compiled_scorer.score(name, x[:64])
    compiled_scorer.kernels.wait()
    kernel = compiled_scorer.kernels.kernel_for(strategy_named(name), "logits", x.to(compiled_scorer.device), None)
    assert isinstance(kernel, Blocked) or compiled_scorer.device.type != "cpu"
    np.testing.assert_allclose(compiled_scorer.score(name, x).cpu().numpy(), scorer.score(name, x).numpy(),
                               rtol=2e-5, atol=1e-6)
    x[rows - 2, -1] = float("nan")
    with pytest.raises(ValueError, match=f"NaN in row {rows - 2}"):
        compiled_scorer.score(name, x)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_kernels_score_a_row_the_same_bits_at_any_position(compiled_scorer: Scorer, name: str) -> None:
    """Rows-inner vectors, their tails and the cache blocks: a row's score does not depend on
    where it sits (nor on which compiled code, any-C or per-class-count, served it)."""
    rng = np.random.default_rng(12)
    x = torch.from_numpy((rng.normal(size=(20011, 6, 7) if name == "bald" else (20011, 10)) * 3).astype(np.float32))
    compiled_scorer.score(name, x)
    compiled_scorer.kernels.wait()  # the per-class-count code too, once it exists
    base = compiled_scorer.score(name, x).cpu()
    for order in (torch.roll(torch.arange(20011), 1), torch.roll(torch.arange(20011), 7), torch.randperm(20011)):
        np.testing.assert_array_equal(compiled_scorer.score(name, x[order]).cpu().numpy(), base[order].numpy())


def test_a_kernel_a_request_needs_compiles_before_the_queued_warm_ups() -> None:
    """warm() queues speculative compilations; a request's kernel (new, or one of them still
    queued) goes to the front, so a first pool does not wait behind kernels nobody asked for."""
    from poolscore.server.backends.torch.compiled import CompiledKernels

    import threading

    kernels = CompiledKernels("background")
    gate = threading.Event()
    kernels._submit(("hold the compile thread",), gate.wait)  # so the queue's order alone decides
    try:
        warm = [strategy_named(n) for n in ("margin", "least_confidence")]
        kernels.warm(warm, "logits", torch.float32, torch.device("cpu"), classes=(10, 100))  # 4 queued
        asked = torch.zeros(64, 1000)  # entropy at C = 1000: no warm-up covers it
        assert kernels.kernel_for(strategy_named("entropy"), "logits", asked, None) is KERNELS["entropy"]  # eager now
        queued_last = torch.zeros(64, 100)  # least_confidence at C = 100: the last warm-up queued
        kernels.kernel_for(strategy_named("least_confidence"), "logits", queued_last, None)
        gate.set()
        kernels.wait()
        order = kernels.ready_keys()
        assert len(order) == 5
        asked_keys = [key_of(strategy_named("entropy"), "logits", asked, None),
                      key_of(strategy_named("least_confidence"), "logits", queued_last, None)]
        assert order[:2] == asked_keys, order  # in the order asked, before every warm-up
    finally:
        gate.set()
        kernels.close()


def test_a_class_counts_own_kernels_compile_in_a_pause_not_beside_a_pool() -> None:
    """C ≤ 16 on the CPU: a class count warm() named has its own relayout at once; for another
    the any-C relayout serves, and its own (faster) one compiles once no kernel has been asked
    for in IDLE_S, since compiling slows the pool beside it (a pool that never pauses gets it
    after TUNE_AFTER_S)."""
    import time

    from poolscore.server.backends.torch.compiled import IDLE_S, TUNE_AFTER_S, CompiledKernels
    from poolscore.server.backends.torch.relayout import RowsInnerKernel

    kernels = CompiledKernels("background")
    try:
        entropy = strategy_named("entropy")
        kernels.warm([entropy], "logits", torch.float64, torch.device("cpu"), classes=7)  # float32, half: native
        kernels.wait()
        warmed = torch.zeros(10, 7, dtype=torch.float64)
        assert kernels.kernel_for(entropy, "logits", warmed, None).relayout.tuned_for(warmed)  # warm tunes its C too
        x = torch.from_numpy(np.random.default_rng(6).normal(size=(5000, 5)))  # a C not warmed
        kernel = kernels.kernel_for(entropy, "logits", x, None)
        assert isinstance(kernel, RowsInnerKernel)
        busy_until = time.monotonic() + 3 * IDLE_S
        assert 3 * IDLE_S < TUNE_AFTER_S
        while time.monotonic() < busy_until:  # a pool's batches, one every 50 ms
            kernel = kernels.kernel_for(entropy, "logits", x, None)
            kernel(x, None, torch.ones((), dtype=torch.float64), "logits")
            assert not kernel.relayout.tuned_for(x)
            time.sleep(0.05)
        kernels.wait()  # no kernel asked for now: the tuning compiles
        assert kernel.relayout.tuned_for(x)
    finally:
        kernels.close()


def test_every_sample_axis_strategy_compiles(scorer: Scorer) -> None:
    """The sample axis is marked ≤ 4095: vote_entropy counts M + 1 vote levels, which inductor
    guards at ≤ 4096, and a range up to 4096 had made its compilation fail (it stayed eager)."""
    from poolscore.server.backends.torch.compiled import CompiledKernels

    kernels = CompiledKernels("background")
    try:
        chosen = [strategy_named(n) for n in ("vote_entropy", "kl_disagreement", "bald", "variation_ratios")]
        kernels.warm(chosen, "logits", torch.float32, scorer.device, classes=10)
        kernels.wait()
        x = torch.from_numpy(np.random.default_rng(8).normal(size=(3000, 20, 10)).astype(np.float32)).to(scorer.device)
        for s in chosen:
            assert key_of(s, "logits", x, None) in kernels.ready_keys(), s.name
            got = kernels.kernel_for(s, "logits", x, None)(x, None, torch.ones((), dtype=torch.float64,
                                                                                device=x.device), "logits")
            np.testing.assert_allclose(got.cpu().numpy(), scorer.score(s.name, x).cpu().numpy(), rtol=2e-5, atol=1e-6)
    finally:
        kernels.close()


def test_first_argmax_is_torch_argmax_with_ties_and_stands_in_for_nan_rows() -> None:
    """The vectorised argmax the vote kernels use: the first of tied maxima, eager and compiled;
    a row with NaN gets a valid class (its row guard marks it)."""
    from poolscore.server.backends.torch.softmax import first_argmax

    z = torch.from_numpy(np.random.default_rng(8).integers(0, 3, size=(500, 7, 5)).astype(np.float32))  # many ties
    z[3, 2] = -float("inf")
    z[4, 1, 2] = float("inf")
    compiled = torch.compile(first_argmax, dynamic=False)
    from poolscore.server.backends.torch.relayout import rows_inner

    for fn in (first_argmax, compiled):
        assert torch.equal(fn(z, z.amax(-1)), z.argmax(-1))
        inner = rows_inner(z)  # the classes strided: torch's own argmax, the same answer
        assert torch.equal(fn(inner, inner.amax(-1)), z.argmax(-1))
    z[5, 0, 1] = float("nan")
    got = first_argmax(z, z.amax(-1))
    assert got[5, 0] == 4 and torch.equal(got[6:], z[6:].argmax(-1))
