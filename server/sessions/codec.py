"""A session's state as parts (a JSON-able header and named arrays) and as bytes, and back.

The file layout: MAGIC, an 8-byte little-endian header length, the UTF-8 JSON header (which
names each array: dtype, shape, offset), the arrays' raw bytes back to back, and last the
SHA-256 of everything before it. So a torn, truncated or altered file is refused with what is
wrong, and nothing is unpickled: a state directory never runs code.

Restoring gives back the same value, not an approximation: every array bit for bit, so the
session goes on as if it had never stopped (same merges, same ties, same picks).

A candidate set's rows live in append-only chunks that never change once made; the state names
each chunk (`ChunkName`: a reference the checkpointer chooses) and the checkpointer writes a
chunk once, so a checkpoint writes only the rows that entered since the last one, not the set."""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np

from poolscore.server.setlevel.candidates import Candidates
from poolscore.server.setlevel.pool import CandidatePool
from poolscore.server.setlevel.rows import Widths
from poolscore.server.topk.balanced import BalancedTopK
from poolscore.server.topk.classes import ClassMap
from poolscore.server.topk.numpy_topk import NumpyTopK

MAGIC = b"POOLSCORE-SESSION v1\n"
_DIGEST = 32  # SHA-256


class Corrupt(ValueError):
    """The bytes are not a whole, unaltered session file: says what is wrong with them."""


ChunkName = Callable[[Mapping[str, np.ndarray]], str]  # a candidate set's chunk → where it is on disk
ChunkRead = Callable[[str], Mapping[str, np.ndarray]]  # and back


# --- bytes ------------------------------------------------------------------------------------------

def write(out: BinaryIO, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> int:
    """Write one file's bytes to `out` (arrays straight from their buffers: no joined copy); its size."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    specs, offset = {}, 0
    for name, a in arrays.items():
        specs[name] = [a.dtype.str, list(a.shape), offset]
        offset += a.nbytes
    head = json.dumps({**header, "arrays": specs}, separators=(",", ":")).encode()
    digest, size = hashlib.sha256(), 0
    for part in (MAGIC, struct.pack("<Q", len(head)), head, *(memoryview(a).cast("B") for a in arrays.values() if a.nbytes)):
        digest.update(part)
        out.write(part)
        size += len(part)
    out.write(digest.digest())
    return size + _DIGEST


def read(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of one file's bytes; Corrupt says why they are not a whole file. The
    arrays are read-only views of `data`."""
    fixed = len(MAGIC) + 8
    if len(data) < fixed + _DIGEST or not data.startswith(MAGIC):
        raise Corrupt("not a poolscore session file (bad magic)" if not data.startswith(MAGIC[:len(data)])
                      or len(data) >= fixed else f"truncated: {len(data)} bytes")
    if hashlib.sha256(memoryview(data)[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise Corrupt(f"checksum mismatch over its {len(data)} bytes: the file is torn or was altered")
    (length,) = struct.unpack_from("<Q", data, len(MAGIC))
    body = fixed + length
    try:
        header = json.loads(data[fixed:body])
        arrays = {name: _array(data, body, len(data) - _DIGEST, dtype, shape, offset)
                  for name, (dtype, shape, offset) in header.pop("arrays").items()}
    except (ValueError, TypeError, KeyError) as err:
        raise Corrupt(f"unreadable header: {err}") from None
    return header, arrays


def _array(data: bytes, start: int, end: int, dtype: str, shape: list[int], offset: int) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise ValueError(f"array of {dtype}")
    count = int(np.prod(shape, dtype=np.int64))
    if start + offset + count * dt.itemsize > end:
        raise ValueError("an array runs past the end")
    return np.frombuffer(data, dt, count, start + offset).reshape(shape)


# --- state → parts ------------------------------------------------------------------------------------

def state_parts(state, chunk_name: ChunkName) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A sessions.State as (header fields, arrays); a candidate set's chunks are named, not included."""
    header = {"next_seq": state.next_seq, "items": state.items, "keyed": state.keyed,
              "width": None if state.width is None else list(state.width)}
    arrays = {"digests": state.digests}
    if state.keys:
        arrays.update(_keys_parts(state.keys))
    if len(state.classes):
        arrays.update({"classes.ids": state.classes.ids, "classes.scores": state.classes.scores,
                       "classes.of": state.classes.classes})
    kind, top_header, top_arrays = _top_parts(state.top, chunk_name)
    header["top"] = {"kind": kind, **top_header}
    arrays.update({f"top.{name}": a for name, a in top_arrays.items()})
    return header, arrays


def _keys_parts(keys: Mapping[int, str]) -> dict[str, np.ndarray]:
    encoded = [k.encode() for k in keys.values()]
    return {"keys.ids": np.fromiter(keys.keys(), np.int64, len(keys)),
            "keys.ends": np.cumsum([len(e) for e in encoded], dtype=np.int64),
            "keys.text": np.frombuffer(b"".join(encoded), np.uint8)}


def _top_parts(top, chunk_name: ChunkName) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    if isinstance(top, BalancedTopK):
        return "balanced", {"classes": top.classes}, {
            "scores": top.held_scores, "ids": top.held_ids_, "classes": top.held_classes}
    if isinstance(top, CandidatePool):
        w = top.widths
        header = {"widths": None if w is None else [w.embedding, w.classes, w.samples]}
        arrays = {}
        for prefix, cands in (("candidates", top.candidates), ("reference", top.reference)):
            if cands is not None:
                header[prefix] = {"chunks": [chunk_name(c) for c in cands.chunks], "stored": cands.stored}
                arrays.update({f"{prefix}.{name}": getattr(cands, name) for name in ("scores", "ids", "chunk", "row")})
        if top.labeled is not None:
            arrays["labeled"] = top.labeled
        return "pool", header, arrays
    # NumpyTopK, or TorchTopK (on its device): brought to the host
    return "topk", {}, {name: _host(getattr(top, name))
                        for name in ("best_scores", "best_ids", "pending_scores", "pending_ids")}


def _host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.detach().cpu().numpy()


# --- parts → state ------------------------------------------------------------------------------------

def restored_state(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], empty, read_chunk: ChunkRead) -> Any:
    """The State saved as (header, arrays), built on `empty`: the session's first state (whose
    top-K says where its arrays live). Raises Corrupt when the parts do not fit the session."""
    try:
        top = _top_restored(header["top"], arrays, empty.top, read_chunk)
        keys = {}
        if "keys.ids" in arrays:
            text, ends = arrays["keys.text"].tobytes(), arrays["keys.ends"]
            starts = np.concatenate([[0], ends[:-1]])
            keys = {int(i): text[s:e].decode() for i, s, e in zip(arrays["keys.ids"], starts, ends)}
        sizes = [len(k.encode()) for k in keys.values()]
        digests = arrays["digests"].copy()
        if digests.shape != empty.digests.shape:
            raise ValueError(f"{digests.shape[0]} resend digests, expected {empty.digests.shape[0]}")
        width = header["width"]
        classes = empty.classes
        if "classes.ids" in arrays:  # older files have none: their held items' classes answer -1
            classes = ClassMap(*(arrays[f"classes.{n}"].astype(t) for n, t in
                                 (("ids", np.int64), ("scores", np.float64), ("of", np.int32))))
            if not classes.ids.shape == classes.scores.shape == classes.classes.shape or classes.ids.ndim != 1:
                raise ValueError(f"{classes.ids.shape} class-map ids for {classes.classes.shape} classes")
        return replace(empty, top=top, classes=classes, next_seq=int(header["next_seq"]), items=int(header["items"]),
                       keyed=header["keyed"], keys=keys, key_bytes=(sum(sizes), max(sizes, default=0)),
                       width=None if width is None else tuple(width), digests=digests)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise Corrupt(f"does not fit its session: {err}") from None


def _top_restored(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], empty, read_chunk: ChunkRead):
    part = {name[4:]: a for name, a in arrays.items() if name.startswith("top.")}
    kind = header["kind"]
    if kind == "balanced" and isinstance(empty, BalancedTopK):
        return replace(empty, classes=int(header["classes"]), held_scores=part["scores"].copy(),
                       held_ids_=part["ids"].copy(), held_classes=part["classes"].copy())
    if kind == "pool" and isinstance(empty, CandidatePool):
        w = header["widths"]
        restored = lambda prefix, m: _candidates_restored(header[prefix], prefix, part, m, read_chunk)  # noqa: E731
        return replace(empty, candidates=restored("candidates", empty.candidates.m),
                       reference=None if empty.reference is None else restored("reference", empty.reference.m),
                       labeled=part["labeled"].copy() if "labeled" in part else None,
                       widths=None if w is None else Widths(*w))
    if kind == "topk" and not isinstance(empty, (BalancedTopK, CandidatePool)):
        names = ("best_scores", "best_ids", "pending_scores", "pending_ids")
        if isinstance(empty, NumpyTopK):
            return NumpyTopK(empty.k, *(part[n].copy() for n in names))
        return type(empty)(empty.k, *(_like(part[n], getattr(empty, n)) for n in names))
    raise ValueError(f"a {kind} top-K, but the session's strategy keeps a {type(empty).__name__}")


def _candidates_restored(header: Mapping[str, Any], prefix: str, part: Mapping[str, np.ndarray], m: int,
                         read_chunk: ChunkRead) -> Candidates:
    scores, ids, chunk, row = (part[f"{prefix}.{name}"].copy() for name in ("scores", "ids", "chunk", "row"))
    chunks = tuple(dict(read_chunk(name)) for name in header["chunks"])
    if len(ids) > m or not len(scores) == len(ids) == len(chunk) == len(row):
        raise ValueError(f"{len(ids)} {prefix} held for at most {m}, with {len(scores)} scores")
    if len(ids) and (chunk.min() < 0 or chunk.max() >= len(chunks)
                     or any(row[chunk == c].max(initial=-1) >= _rows_in(chunks[c]) for c in np.unique(chunk))):
        raise ValueError(f"the {prefix} point past their chunks")
    return Candidates(m, scores, ids, chunk, row, chunks, int(header["stored"]))


def _rows_in(chunk: Mapping[str, np.ndarray]) -> int:
    return min((len(a) for a in chunk.values()), default=2**62)  # a chunk of no columns holds any row


def _like(a: np.ndarray, template: Any) -> Any:
    """`a` as a tensor where `template` lives (a TorchTopK on its device); torch is imported
    only when the session's top-K is a torch one."""
    import torch

    return torch.from_numpy(a.copy()).to(template.device)

