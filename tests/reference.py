"""Float64 NumPy references of every strategy, written straight from DESIGN.md's table."""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, xlogy


def probs(x: np.ndarray, kind: str = "logits", temperature: float = 1.0) -> np.ndarray:
    x = x.astype(np.float64)
    z = np.log(x) if kind == "probabilities" else x
    with np.errstate(invalid="ignore"):
        return np.exp(log_softmax(z / temperature, axis=-1))


def entropy(p: np.ndarray) -> np.ndarray:
    return -xlogy(p, p).sum(-1)


def least_confidence(p: np.ndarray) -> np.ndarray:
    return 1 - p.max(-1)


def margin(p: np.ndarray) -> np.ndarray:
    top = np.sort(p, -1)
    return 1 - (top[..., -1] - top[..., -2])


def ratio(p: np.ndarray) -> np.ndarray:
    top = np.sort(p, -1)
    return top[..., -2] / top[..., -1]


def votes(p: np.ndarray) -> np.ndarray:
    """[N, T, C] → [N, C] counts of each class as a sample's argmax."""
    arg = p.argmax(-1)
    return np.stack([(arg == c).sum(1) for c in range(p.shape[-1])], -1)


def variation_ratios(p: np.ndarray) -> np.ndarray:
    return 1 - votes(p).max(-1) / p.shape[1]


def predictive_entropy(p: np.ndarray) -> np.ndarray:
    return entropy(p.mean(1))


def bald(p: np.ndarray) -> np.ndarray:
    return entropy(p.mean(1)) - entropy(p).mean(1)


def vote_entropy(p: np.ndarray) -> np.ndarray:
    return entropy(votes(p) / p.shape[1])


def _kl_to_mean(p: np.ndarray) -> np.ndarray:
    mean = p.mean(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * (np.log(p) - np.log(mean)), 0).sum(-1)


def kl_disagreement(p: np.ndarray) -> np.ndarray:
    return _kl_to_mean(p).mean(1)


def kl_max_disagreement(p: np.ndarray) -> np.ndarray:
    return _kl_to_mean(p).max(1)


def expected_gradient_length(p: np.ndarray, h: np.ndarray) -> np.ndarray:
    """‖h‖ Σ_c p_c ‖p - e_c‖, with 1 - p_c taken as the sum of the other classes (no cancellation)."""
    diff = np.repeat(p[:, None, :], p.shape[-1], axis=1)  # [N, C, C]: row c is p - e_c
    eye = np.eye(p.shape[-1], dtype=bool)
    diff[:, eye] = -np.where(eye[None], 0.0, diff).sum(-1)  # p_c - 1 = -Σ_{j≠c} p_j, summed directly
    dist = np.linalg.norm(diff, axis=-1)
    return np.linalg.norm(h.astype(np.float64), axis=-1) * (p * dist).sum(-1)


def splitmix64(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    v = (v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    v = (v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return v ^ (v >> np.uint64(31))


def random(ids: np.ndarray, seed: int) -> np.ndarray:
    key = splitmix64(np.array([seed]).astype(np.int64).view(np.uint64))
    h = splitmix64(ids.astype(np.int64).view(np.uint64) ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


POINTWISE = {"least_confidence": least_confidence, "margin": margin, "ratio": ratio, "entropy": entropy}
SAMPLED = {"variation_ratios": variation_ratios, "predictive_entropy": predictive_entropy, "bald": bald,
           "vote_entropy": vote_entropy, "kl_disagreement": kl_disagreement,
           "kl_max_disagreement": kl_max_disagreement}
