"""`random`: a reproducible uniform score per id, from a seeded SplitMix64 hash."""
from __future__ import annotations

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _shift_right(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (v >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(v: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors; multiplication wraps as in uint64."""
    v = v + _GOLDEN
    v = (v ^ _shift_right(v, 30)) * _MIX1
    v = (v ^ _shift_right(v, 27)) * _MIX2
    return v ^ _shift_right(v, 31)


def random_scores(ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Uniform in [0, 1) as float64 from the top 53 bits of hash(hash(seed) ^ id)."""
    key = splitmix64(torch.tensor(seed, dtype=torch.int64, device=ids.device))
    h = splitmix64(ids.to(torch.int64) ^ key)
    return _shift_right(h, 11).to(torch.float64) * (2.0 ** -53)
