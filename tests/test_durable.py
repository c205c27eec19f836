"""Durable sessions (--state-dir): what was acked durable survives a stop, a SIGKILL and a torn
file is refused by name; a resumed session ends exactly where an uninterrupted one does."""
from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import reference as ref
from poolscore.client import Batch, Client, DataLoss, NotFound, SequenceGap, Unavailable
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.sessions import codec

# (strategy, options, what the batches carry): one of each kind of session state
KINDS = {
    "entropy": ("entropy", {}, "ids"),
    "entropy-keyed": ("entropy", {}, "keys"),
    "class_balanced": ("class_balanced", {"pre_score": "margin"}, "ids"),
    "stochastic": ("stochastic", {"pre_score": "entropy", "beta": 2.0, "seed": 3}, "ids"),
    "softrank": ("stochastic", {"sampling": "softrank", "pre_score": "entropy", "beta": 1.5, "seed": 4}, "ids"),
    "coreset": ("coreset", {"candidates": 300}, "embedding"),
    "badge": ("badge", {"candidates": 200, "seed": 5}, "embedding"),
    "expected_error_reduction": ("expected_error_reduction", {"candidates": 120, "reference": 80}, "embedding"),
}


def serve(tmp: Path, **config) -> object:
    return build_server(ServeConfig(port=0, metrics_port=-1, compile="off", warm="", state_dir=str(tmp),
                                    **config)).start()


def batches_for(carry: str, rng: np.random.Generator, n: int = 3000, per: int = 250) -> list[Batch]:
    z = rng.normal(size=(n, 5)).astype(np.float32)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    out = []
    for i in range(0, n, per):
        rows = slice(i, i + per)
        if carry == "keys":
            out.append(Batch(z[rows], keys=[f"item-{j:05d}" for j in range(i, min(n, i + per))]))
        else:
            out.append(Batch(z[rows], np.arange(i, min(n, i + per)), emb[rows] if carry == "embedding" else None))
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_session_goes_on_after_a_restart_as_if_it_never_stopped(tmp_path: Path, kind: str,
                                                                             rng: np.random.Generator) -> None:
    strategy, options, carry = KINDS[kind]
    batches = batches_for(carry, rng)
    labeled = rng.normal(size=(4, 8)).astype(np.float32) if strategy == "coreset" else None  # its seeds, kept too

    def begin(c: Client, sid: str) -> None:
        c.session(strategy, k=12, session_id=sid, **options)
        if labeled is not None:
            c.add_labeled(sid, labeled)

    clean = serve(tmp_path / "clean")
    with Client(clean.target) as c:
        begin(c, "whole")
        c.stream("whole", batches)
        want = c.top_k("whole")
    want_classes = clean.scorer.sessions.get("whole", "").state.selected_classes()
    clean.stop()
    first = serve(tmp_path / "state")
    with Client(first.target) as c:
        begin(c, "s")
        c.stream("s", batches[:5])
        stopped_at = c.get_session("s").next_seq
    first.stop()  # a clean stop writes every committed batch
    again = serve(tmp_path / "state")
    with Client(again.target) as c:
        assert (info := c.get_session("s")).next_seq == stopped_at and info.durable_seq == stopped_at
        c.stream("s", batches[5:])  # a new client asks the server where to go on
        got = c.top_k("s")
    got_classes = again.scorer.sessions.get("s", "").state.selected_classes()
    again.stop()
    np.testing.assert_array_equal(got_classes, want_classes)  # the class map is restored too
    assert (want_classes >= 0).all() and len(want_classes) == 12
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)  # bit for bit
    assert got.keys == want.keys and got.items == want.items == 3000


def test_acks_report_what_is_durable_and_every_batch_gets_there(tmp_path: Path, rng: np.random.Generator) -> None:
    app = serve(tmp_path, checkpoint_batches=4, checkpoint_s=0.2)
    with Client(app.target) as c:
        assert c.info().limits.checkpoint_batches == 4
        acks = []
        sid = c.create_session("margin", k=5)
        for b in batches_for("ids", rng, 2000, 100):
            acks.append(c.score(sid, b.logits, ids=b.ids))
        assert all(a.durable_seq <= a.seq + 1 for a in acks)  # never ahead of what is committed
        assert all(a.seq + 1 - a.durable_seq <= 8 for a in acks)  # 2 × --checkpoint-batches at most behind
        deadline = time.monotonic() + 30
        while c.get_session(sid).durable_seq < 20 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition: the writer's timer is 0.2 s
        assert c.get_session(sid).durable_seq == 20  # the last batches too, once --checkpoint-s passed
    app.stop()


def test_a_torn_or_altered_state_file_is_refused_by_name_and_never_loaded(tmp_path: Path, rng: np.random.Generator) -> None:
    app = serve(tmp_path)
    with Client(app.target) as c:
        for sid in ("torn", "altered", "fine"):
            c.session("entropy", k=5, session_id=sid).stream(batches_for("ids", rng, 500, 100))
    app.stop()
    files = {p.name: p for p in tmp_path.glob("*.session")}
    assert len(files) == 3
    name = lambda sid: tmp_path / _name(sid)  # noqa: E731
    torn, altered = name("torn"), name("altered")
    torn.write_bytes(torn.read_bytes()[:-100])  # a write cut short by a failing disk
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped
    altered.write_bytes(bytes(data))
    (tmp_path / (_name("fine") + ".partial")).write_bytes(b"half a checkpoint")  # a crash mid-write
    app = serve(tmp_path)
    with Client(app.target) as c:
        errors = dict(c.info().state_errors)
        print(f"\nrefused at start: {errors}")
        assert set(errors) == {str(torn), str(altered)}
        assert all("checksum mismatch" in why for why in errors.values())
        with pytest.raises(DataLoss, match=re.escape(str(torn))):
            c.get_session("torn")
        with pytest.raises(DataLoss, match=re.escape(str(altered))):
            c.create_session("entropy", k=5, session_id="altered")  # never written over silently
        assert c.get_session("fine").next_seq == 5  # the good one loaded; the partial write was removed
        assert not list(tmp_path.glob("*.partial"))
        c.delete_session("torn")  # deleting it on purpose frees the id
        assert not torn.exists()
        with pytest.raises(NotFound):
            c.get_session("torn")
        assert c.session("entropy", k=5, session_id="torn").info().next_seq == 0
    app.stop()


def test_a_restored_session_still_belongs_to_its_principal(tmp_path: Path, rng: np.random.Generator) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("team-a tok-a\nteam-b tok-b\n")
    app = serve(tmp_path / "state", tokens_file=str(tokens))
    with Client(app.target, token="tok-a") as a:
        a.session("entropy", k=5, session_id="nightly").stream(batches_for("ids", rng, 500, 100))
    app.stop()
    app = serve(tmp_path / "state", tokens_file=str(tokens))
    with Client(app.target, token="tok-a") as a, Client(app.target, token="tok-b") as b:
        assert a.get_session("nightly").items == 500
        with pytest.raises(NotFound):
            b.get_session("nightly")
        with pytest.raises(NotFound):
            b.delete_session("nightly")
        assert a.top_k("nightly").items == 500
    app.stop()


def test_a_state_dir_that_fails_holds_the_stream_back_then_says_unavailable(tmp_path: Path, rng: np.random.Generator) -> None:
    state = tmp_path / "state"
    app = serve(state, checkpoint_batches=2, checkpoint_s=0.05, checkpoint_stall_s=0.5)
    with Client(app.target, retry_s=0) as c:
        sid = c.create_session("entropy", k=5)
        shutil.rmtree(state)
        state.write_text("not a directory any more")  # every write fails from now on
        with pytest.raises(Unavailable, match="ahead of its last checkpoint.*NotADirectoryError"):
            c.stream(sid, batches_for("ids", rng, 2000, 100))
        assert c.get_session(sid).next_seq == 4  # held back at 2 × --checkpoint-batches; nothing half-done
    app.stop()


def test_a_resumed_stream_skips_what_the_server_holds_and_refuses_another_writer(tmp_path: Path, rng) -> None:
    app = serve(tmp_path)
    batches = batches_for("ids", rng, 1000, 100)
    with Client(app.target) as c, Client(app.target) as other:
        sid = c.create_session("entropy", k=5)
        c.stream(sid, batches[:3])
        other.stream(sid, batches[3:5])  # a second writer moves the session on
        with pytest.raises(SequenceGap):
            c.stream(sid, batches[3:5])  # this client's next seq was 3: the server says 5
    app.stop()


# --- SIGKILL, three times, mid-pool ----------------------------------------------------------------

CLASSES, PER_BATCH = 10, 20_000


@pytest.mark.parametrize("rows, kills", [(1_000_000, 3), pytest.param(4_000_000, 10, marks=pytest.mark.slow)],
                         ids=["1M-rows-3-kills", "4M-rows-10-kills"])
def test_sigkill_mid_pool_and_the_top_k_is_a_clean_runs(tmp_path: Path, rows: int, kills: int) -> None:
    rng = np.random.default_rng(2026)
    z = rng.normal(size=(rows, CLASSES)).astype(np.float32)
    port = _free_port()
    server = _Server(tmp_path, port)
    killed, sent = [], [0]
    points = sorted(rng.uniform(0.05, 0.95, size=kills) * rows)  # where the server dies, in rows handed over

    def killer() -> None:
        for point in points:
            while sent[0] < point:
                time.sleep(0.005)  # polling the client's progress, not waiting for readiness
            killed.append(sent[0])
            server.kill_and_restart()

    def pool():
        for i in range(0, rows, PER_BATCH):
            yield np.arange(i, i + PER_BATCH), z[i:i + PER_BATCH]

    def progress(n: int) -> None:
        sent[0] += n

    start = time.monotonic()
    try:
        with Client(f"127.0.0.1:{port}", retry_s=120) as c:
            c.wait_ready(timeout=120)
            sid = c.create_session("entropy", k=1000, session_id="billion")
            thread = threading.Thread(target=killer, daemon=True)
            thread.start()
            ack = c.stream(sid, pool(), progress=progress)
            thread.join(timeout=120)
            got = c.top_k(sid)
            clean = c.score_pool(z, "entropy", k=1000)  # the same server, never interrupted
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    print(f"\nSIGKILL at rows {[int(k) for k in killed]} of {rows:,}; "
          f"{server.starts} starts; {elapsed:.1f} s in all; final ack seq {ack.seq}, items {ack.items:,}")
    assert len(killed) == kills and server.starts == kills + 1
    assert ack.items == got.items == rows  # no batch lost, none counted twice
    np.testing.assert_array_equal(got.ids, clean.ids)
    np.testing.assert_array_equal(got.scores, clean.scores)
    want = np.lexsort((np.arange(rows), -ref.entropy(ref.probs(z))))[:1000]
    assert len(np.intersect1d(got.ids, want)) >= 995  # float32 kernels against float64 NumPy: ties at the edge


def test_sigterm_writes_every_committed_batch_before_it_exits(tmp_path: Path, rng: np.random.Generator) -> None:
    port = _free_port()
    server = _Server(tmp_path, port, "--checkpoint-batches", "1000", "--checkpoint-s", "600")  # only the drain writes
    try:
        with Client(f"127.0.0.1:{port}") as c:
            c.wait_ready(timeout=120)
            s = c.session("entropy", k=5, session_id="s")
            for b in batches_for("ids", rng, 2000, 100):  # one stream per batch: each ends, and writes its tail
                s.score(b.logits, ids=b.ids)
            assert c.get_session("s").durable_seq == 20
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=60) == 0
        server.proc = server._start()
        with Client(f"127.0.0.1:{port}") as c:
            c.wait_ready(timeout=120)
            info = c.get_session("s")
            assert (info.next_seq, info.durable_seq, info.items) == (20, 20, 2000)
    finally:
        server.stop()


class _Server:
    """`poolscore serve --state-dir` as its own process, on a fixed port, killed and started again."""

    def __init__(self, state: Path, port: int, *flags: str) -> None:
        self.state, self.port, self.starts, self.flags = state, port, 0, flags
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        self.starts += 1
        proc = subprocess.Popen([sys.executable, "-m", "poolscore.client.cli", "serve", "--port", str(self.port),
                                 "--metrics-port", "-1", "--compile", "off", "--warm", "", "--state-dir", str(self.state),
                                 "--checkpoint-batches", "4", *self.flags], stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "listening on" in line:
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        return proc

    def kill_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(session_id: str, owner: str = "") -> str:
    from poolscore.server.sessions.state_dir import StateDir

    return StateDir.name(owner, session_id)


def test_the_file_format_refuses_what_is_not_a_whole_file() -> None:
    import io

    out = io.BytesIO()
    codec.write(out, {"owner": "", "id": "x"}, {"a": np.arange(5), "b": np.ones((2, 3), np.float32)})
    data = out.getvalue()
    header, arrays = codec.read(data)
    assert header == {"owner": "", "id": "x"} and arrays["a"].tolist() == list(range(5))
    for bad, why in ((data[:10], "truncated|bad magic"), (b"PK" + data[2:], "bad magic"),
                     (data[:-1] + bytes([data[-1] ^ 1]), "checksum mismatch")):
        with pytest.raises(codec.Corrupt, match=why):
            codec.read(bad)


def test_a_candidate_set_checkpoint_writes_only_the_rows_that_entered(tmp_path: Path, rng: np.random.Generator) -> None:
    app = serve(tmp_path, checkpoint_batches=1)
    written = app.scorer.metrics.checkpoint_bytes
    emb = rng.normal(size=(6000, 64)).astype(np.float32)
    batches = [Batch(np.zeros((500, 2), np.float32), np.arange(i, i + 500), emb[i:i + 500]) for i in range(0, 6000, 500)]
    with Client(app.target) as c:
        sid = c.create_session("coreset", k=10, candidates=1000)
        sizes = []
        for b in batches:
            before = written._value.get()
            c.score(sid, b.logits, ids=b.ids, embedding=b.embedding)
            deadline = time.monotonic() + 30
            while c.get_session(sid).durable_seq < len(sizes) + 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # polling the writer, one checkpoint per batch
            sizes.append(written._value.get() - before)
        want = c.top_k(sid)
    app.stop()
    whole = 1000 * 64 * 4  # the held set's rows
    print(f"\nbytes per checkpoint: {[int(s) for s in sizes]} (the set's rows: {whole})")
    assert sizes[0] > 500 * 64 * 4  # the first batch's 500 rows all entered
    assert np.median(sizes[4:]) < 0.3 * whole  # later ones: the rows that beat the held set, and the index
    chunks = sorted(tmp_path.glob("*.rows"))
    assert chunks and all(p.name.startswith(_name(sid).removesuffix(".session")) for p in chunks)
    stray = tmp_path / (_name(sid).removesuffix(".session") + ".999.rows")
    stray.write_bytes(b"from a checkpoint that never finished")
    app = serve(tmp_path)
    with Client(app.target) as c:
        got = c.top_k(sid)
    app.stop()
    assert not stray.exists()  # no index named it
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    chunks[0].unlink()  # a chunk lost under a durable index: refused by name, never half-loaded
    app = serve(tmp_path)
    with Client(app.target) as c:
        with pytest.raises(DataLoss, match=f"rows file {re.escape(chunks[0].name)} is missing"):
            c.top_k(sid)
        c.delete_session(sid)
        assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]  # its index and every chunk gone with it (lock files stay)
    app.stop()


def test_replicas_sharing_a_state_dir_hand_a_session_over_when_one_stops(tmp_path: Path, rng) -> None:
    batches = batches_for("ids", rng, 2000, 200)
    clean = serve(tmp_path / "clean")
    with Client(clean.target) as c:
        c.session("margin", k=10, session_id="nightly").stream(batches)
        want = c.top_k("nightly")
    clean.stop()
    a, b = serve(tmp_path / "shared"), serve(tmp_path / "shared")
    try:
        with Client(a.target) as on_a, Client(b.target, retry_s=0) as on_b:
            on_a.session("margin", k=10, session_id="nightly").stream(batches[:4])
            for call in (lambda: on_b.get_session("nightly"), lambda: on_b.create_session("margin", k=10, session_id="nightly"),
                         lambda: on_b.delete_session("nightly")):
                with pytest.raises(Unavailable, match="served by another replica"):
                    call()  # never two writers of one session
            a.stop()  # its sessions are written, and let go
            assert on_b.get_session("nightly").next_seq == 4  # taken over from the shared dir
            on_b.stream("nightly", batches[4:])
            got = on_b.top_k("nightly")
    finally:
        a.stop()
        b.stop()
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)


def test_when_a_stream_ends_its_tail_is_on_disk_and_the_last_ack_says_so(tmp_path: Path, rng) -> None:
    app = serve(tmp_path, checkpoint_batches=1000, checkpoint_s=600)  # only the end of the stream writes
    with Client(app.target) as c:
        sid = c.create_session("entropy", k=5)
        ack = c.stream(sid, batches_for("ids", rng, 1000, 100))
        assert (ack.seq, ack.durable_seq) == (9, 10)
        assert c.get_session(sid).durable_seq == 10
    app.stop()
