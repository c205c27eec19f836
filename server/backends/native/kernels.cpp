// Acquisition kernels for float32 x [N, T, C] (pointwise ones: [N, C] as T = 1) on the CPU, built by build.py.
//
// Why by hand: at few classes a row's statistics are reductions over C = 10 contiguous
// floats, which inductor's code runs at 10-16% of memcpy even laid out rows-inner. Here each
// vector lane is one row: a block of L rows is transposed in cache (8 x 8 shuffles) to
// [T][C][L], so every per-sample statistic is a vertical op over L rows, with one exp per
// element and no intermediate leaving L1. The math is the torch kernels' (softmax.py,
// bayesian.py, committee.py), op for op where it matters for rounding; tests hold the two
// together. GCC vector extensions, no intrinsics: the same source builds for any target.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int L = 16;  // rows per block, one per lane (two AVX2 or one AVX-512 register)
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

enum Strategy {
    BALD, PREDICTIVE_ENTROPY, KL_DISAGREEMENT, KL_MAX_DISAGREEMENT, VARIATION_RATIOS, VOTE_ENTROPY,
    LEAST_CONFIDENCE, MARGIN, RATIO, ENTROPY,
};
enum Kind { LOGITS, LOG_PROBABILITIES, PROBABILITIES };

const float INF = __builtin_inff();

inline vf splat(float v) { return vf{} + v; }
inline vf sel(vi mask, vf a, vf b) { return mask ? a : b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf clamp_min0(vf a) { return a < 0.f ? vf{} : a; }  // NaN stays NaN, as torch's clamp_min
inline vf as_float(vi v) { vf f; std::memcpy(&f, &v, sizeof f); return f; }
inline vi as_int(vf v) { vi i; std::memcpy(&i, &v, sizeof i); return i; }

// exp(x) for x <= 0, -inf or NaN: 2^n e^r, |r| <= ln2 / 2, Taylor to degree 7 (error < 1e-8
// relative). 2^n is applied in two halves, so results below float32's normal range come out
// subnormal as torch's do; below -103.98 (half the least subnormal) it is 0, and NaN stays NaN.
inline vf vexp(vf x) {
    vi zero = x < -103.98f;
    vf y = vmax(x, splat(-103.98f));
    vf n = (y * 1.44269504f + 12582912.f) - 12582912.f;  // round(x / ln2), by the 1.5 * 2^23 trick
    vf r = y - n * 0.693145751953125f - n * 1.428606765330187e-06f;  // ln2 in two parts: n * hi is exact
    vf p = splat(1.f / 5040);
    p = p * r + 1.f / 720; p = p * r + 1.f / 120; p = p * r + 1.f / 24;
    p = p * r + 1.f / 6; p = p * r + 0.5f; p = p * r + 1.f; p = p * r + 1.f;
    vi k = __builtin_convertvector(n, vi), half = k >> 1;
    vf out = p * as_float((half + 127) << 23) * as_float((k - half + 127) << 23);
    return x != x ? x : sel(zero, vf{}, out);
}

// log(x) for x > 0 finite (subnormals too): k ln2 + 2 atanh(s), s = (m - 1) / (m + 1), m in
// [sqrt(1/2), sqrt(2)), the series to s^11 (|s| <= 0.172: error < 1e-10 relative).
inline vf vlog(vf x) {
    vi tiny = x < 1.17549435e-38f;
    x = sel(tiny, x * 8388608.f, x);  // * 2^23 into the normal range
    vi b = as_int(x);
    vi k = ((b >> 23) & 0xff) - 127;
    vf m = as_float((b & 0x7fffff) | 0x3f800000);
    vi big = m > 1.41421356f;
    m = sel(big, m * 0.5f, m);
    vf kf = __builtin_convertvector(k - big, vf) - sel(tiny, splat(23.f), vf{});  // big is -1 where true
    vf s = (m - 1.f) / (m + 1.f), s2 = s * s;
    vf q = splat(1.f / 11);
    q = q * s2 + 1.f / 9; q = q * s2 + 1.f / 7; q = q * s2 + 1.f / 5; q = q * s2 + 1.f / 3; q = q * s2 + 1.f;
    return kf * 0.693147180559945f + 2.f * s * q;
}

// log1p(x) for x >= 0 to full relative precision for tiny x: log(u) * x / (u - 1), u = 1 + x.
inline vf vlog1p(vf x) {
    vf u = x + 1.f;
    vi exact = u == 1.f;
    return sel(exact, x, vlog(u) * x / sel(exact, splat(1.f), u - 1.f));
}

// log p of an input probability, as torch.log: 0 -> -inf, +inf -> +inf, < 0 or NaN -> NaN.
inline vf vlog_input(vf p) {
    vi normal = (p > 0.f) & (p < INF);
    vf out = vlog(sel(normal, p, splat(1.f)));
    out = sel(p == 0.f, splat(-INF), out);
    out = sel(p == INF, splat(INF), out);
    return sel(normal | (p == 0.f) | (p == INF), out, splat(__builtin_nanf("")));
}

inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof v); return v; }

// Eight rows r[0..7] at column k0 -> out[k * L] for k in 0..7: an 8 x 8 transpose in registers.
inline void transpose8(const float* const* r, int64_t k0, float* out) {
    v8 v0 = load8(r[0] + k0), v1 = load8(r[1] + k0), v2 = load8(r[2] + k0), v3 = load8(r[3] + k0);
    v8 v4 = load8(r[4] + k0), v5 = load8(r[5] + k0), v6 = load8(r[6] + k0), v7 = load8(r[7] + k0);
    const v8i lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    v8 t0 = __builtin_shuffle(v0, v1, lo), t1 = __builtin_shuffle(v0, v1, hi);
    v8 t2 = __builtin_shuffle(v2, v3, lo), t3 = __builtin_shuffle(v2, v3, hi);
    v8 t4 = __builtin_shuffle(v4, v5, lo), t5 = __builtin_shuffle(v4, v5, hi);
    v8 t6 = __builtin_shuffle(v6, v7, lo), t7 = __builtin_shuffle(v6, v7, hi);
    const v8i lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    v8 s0 = __builtin_shuffle(t0, t2, lo2), s1 = __builtin_shuffle(t0, t2, hi2);
    v8 s2 = __builtin_shuffle(t1, t3, lo2), s3 = __builtin_shuffle(t1, t3, hi2);
    v8 s4 = __builtin_shuffle(t4, t6, lo2), s5 = __builtin_shuffle(t4, t6, hi2);
    v8 s6 = __builtin_shuffle(t5, t7, lo2), s7 = __builtin_shuffle(t5, t7, hi2);
    const v8i lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    const v8 w[8] = {__builtin_shuffle(s0, s4, lo4), __builtin_shuffle(s1, s5, lo4), __builtin_shuffle(s2, s6, lo4),
                     __builtin_shuffle(s3, s7, lo4), __builtin_shuffle(s0, s4, hi4), __builtin_shuffle(s1, s5, hi4),
                     __builtin_shuffle(s2, s6, hi4), __builtin_shuffle(s3, s7, hi4)};
    for (int k = 0; k < 8; ++k) std::memcpy(out + k * L, &w[k], sizeof w[k]);
}

// A block of `rows` <= L consecutive rows of tc floats each -> buf [tc][L]; lanes past `rows`
// repeat row 0 (scored, never written out).
void gather(const float* x, int64_t rows, int64_t tc, float* buf) {
    const float* row[L];
    for (int j = 0; j < L; ++j) row[j] = x + (j < rows ? j : 0) * tc;
    int64_t k0 = 0;
    for (; k0 + 8 <= tc; k0 += 8) {
        transpose8(row, k0, buf + k0 * L);
        transpose8(row + 8, k0, buf + k0 * L + 8);
    }
    for (; k0 < tc; ++k0)
        for (int j = 0; j < L; ++j) buf[k0 * L + j] = row[j][k0];
}

struct Shape { int64_t T, C; float inv_t; Kind kind; };

// The next block's cache lines, requested a share per sample while this block is scored: they
// arrive in time (all at once after the gather, they did not: 3.7 against 5.9 GB/s a thread).
struct Prefetch {
    const float* next;
    int64_t floats, per, at;
    Prefetch(const float* next, int64_t floats, int64_t steps)
        : next(next), floats(floats), per((floats + steps - 1) / steps), at(0) {}
    void step() {
        for (int64_t end = at + per; at < end && at < floats; at += 16) __builtin_prefetch(next + at);
    }
};

// One sample's first pass: z as logits (log p for probabilities, in place, unless Raw), its
// max, and whether it is bad input (row_guard: NaN or +inf anywhere, -inf in logits, or all
// -inf). Raw keeps probabilities as they are, for an argmax: log is monotone, so the argmax of
// p is that of log p, exactly (a rounded log can merge two probabilities a float step apart);
// the bad rows are the same (p < 0 is log p = NaN, all p = 0 is all -inf).
template <bool Raw = false>
inline vf max_and_guard(vf* z, const Shape& s, vi& bad) {
    vf m = splat(-INF);
    for (int64_t c = 0; c < s.C; ++c) {
        vf v = z[c];
        if (s.kind == PROBABILITIES && Raw) {
            bad |= (v != v) | (v == INF) | (v < 0.f);
        } else {
            if (s.kind == PROBABILITIES) z[c] = v = vlog_input(v);
            bad |= s.kind == LOGITS ? ~((v - v) == 0.f) : (v != v) | (v == INF);
        }
        m = vmax(m, v);
    }
    bad |= m == (s.kind == PROBABILITIES && Raw ? 0.f : -INF);
    return m;
}

struct Sample { vf s, entropy, rest, second; vi tied; };  // Σe = 1 + rest, H, the runner-up's d

// softmax.py's statistics of one sample: d = (z - max) / T in place of z, e = exp(d) to `e`.
// rest = Σe over all but one maximum (Σe - 1 when the max is tied), H = log1p(rest) - Σe·d / s;
// with Second, the largest d < 0 (the runner-up, as Softmax.runner_up).
template <bool Second>
inline Sample softmax(vf* z, vf* e, const Shape& s, vf m) {
    vf below = vf{}, total = vf{}, ed = vf{}, second = splat(-INF);
    for (int64_t c = 0; c < s.C; ++c) {
        vf d = (z[c] - m) * s.inv_t;
        vf ec = vexp(d);
        total += ec;
        below += sel(d < 0.f, ec, vf{});
        ed += sel(ec > 0.f, ec * d, vf{});
        if (Second) second = vmax(second, sel(d < 0.f, d, splat(-INF)));
        z[c] = d;
        e[c] = ec;
    }
    vi tied = (total - below) > 1.5f;
    vf rest = sel(tied, total - 1.f, below);
    vf sum = rest + 1.f;
    return {sum, vlog1p(rest) - ed / sum, rest, second, tied};
}

// least_confidence, margin, ratio, entropy of one prediction (uncertainty.py). Scratch: e [C].
vf pointwise_block(Strategy strategy, vf* z, vf* e, const Shape& s, vi& bad, Prefetch& pf) {
    pf.step();
    Sample st = softmax<true>(z, e, s, max_and_guard(z, s, bad));
    vf runner_up = sel(st.tied, splat(1.f), vexp(st.second));  // p_(2) / p_(1)
    switch (strategy) {
        case LEAST_CONFIDENCE: return st.rest / st.s;
        case MARGIN: return (st.rest + runner_up) / st.s;
        case RATIO: return runner_up;
        default: return st.entropy;
    }
}

// -Σ p log p over C (0 log 0 = 0)
inline vf entropy_of(const vf* p, int64_t C) {
    vf h = vf{};
    for (int64_t c = 0; c < C; ++c) {
        vi pos = p[c] > 0.f;
        h -= sel(pos, p[c] * vlog(sel(pos, p[c], splat(1.f))), vf{});
    }
    return h;
}

// bald, predictive_entropy, kl_disagreement, kl_max_disagreement: one softmax per sample, p̄.
// Scratch: e [T][C], pbar [C], sums [T].
vf mean_softmax_block(Strategy strategy, vf* z, vf* e, vf* pbar, vf* sums, const Shape& s, vi& bad, Prefetch& pf) {
    vf mean_h = vf{};
    for (int64_t c = 0; c < s.C; ++c) pbar[c] = vf{};
    for (int64_t t = 0; t < s.T; ++t) {
        vf* zt = z + t * s.C;
        vf* et = e + t * s.C;
        pf.step();
        Sample st = softmax<false>(zt, et, s, max_and_guard(zt, s, bad));
        mean_h += st.entropy;
        sums[t] = st.s;
        for (int64_t c = 0; c < s.C; ++c) pbar[c] += et[c] / st.s;
    }
    for (int64_t c = 0; c < s.C; ++c) pbar[c] /= (float)s.T;
    if (strategy == PREDICTIVE_ENTROPY) return entropy_of(pbar, s.C);
    if (strategy == BALD) return clamp_min0(entropy_of(pbar, s.C) - mean_h / (float)s.T);
    // KL(p_t ‖ p̄) = Σ p (log p - log p̄), log p = d - log s, as committee.py (terms with p = 0 are 0)
    for (int64_t c = 0; c < s.C; ++c) pbar[c] = vlog(sel(pbar[c] > 0.f, pbar[c], splat(1.f)));
    vf kl_sum = vf{}, kl_max = splat(-INF);
    for (int64_t t = 0; t < s.T; ++t) {
        const vf* dt = z + t * s.C;
        const vf* et = e + t * s.C;
        vf log_s = vlog(sums[t]), kl = vf{};
        for (int64_t c = 0; c < s.C; ++c) {
            vf p = et[c] / sums[t];
            kl += sel(p > 0.f, p * ((dt[c] - log_s) - pbar[c]), vf{});
        }
        kl_sum += kl;
        kl_max = vmax(kl_max, kl);
    }
    return clamp_min0(strategy == KL_MAX_DISAGREEMENT ? kl_max : kl_sum / (float)s.T);
}

// variation_ratios, vote_entropy: each sample's argmax (the first of tied maxima) counted per
// class. Scratch: counts [C]; vote_entropy's -(v/T) log(v/T) by vote count v in `share`.
vf argmax_block(Strategy strategy, vf* z, vf* counts, const float* share, int32_t* hist, const Shape& s,
                vi& bad, Prefetch& pf) {
    for (int64_t c = 0; c < s.C; ++c) counts[c] = vf{};
    for (int64_t t = 0; t < s.T; ++t) {
        vf* zt = z + t * s.C;
        pf.step();
        max_and_guard<true>(zt, s, bad);
        vf best = zt[0];
        vi at = vi{};
        for (int64_t c = 1; c < s.C; ++c) {
            vi more = zt[c] > best;
            best = sel(more, zt[c], best);
            at = more ? vi{} + (int32_t)c : at;
        }
        for (int64_t c = 0; c < s.C; ++c) counts[c] += sel(at == (int32_t)c, splat(1.f), vf{});
    }
    if (strategy == VARIATION_RATIOS) {
        vf modal = vf{};
        for (int64_t c = 0; c < s.C; ++c) modal = vmax(modal, counts[c]);
        return 1.f - modal / (float)s.T;
    }
    // Σ_v h_v e_v by vote count, as committee.py: permuted vote patterns tie exactly
    vf out = vf{};
    for (int j = 0; j < L; ++j) {
        std::memset(hist, 0, sizeof(int32_t) * (s.T + 1));
        for (int64_t c = 0; c < s.C; ++c) hist[(int64_t)counts[c][j]] += 1;
        float total = 0.f;
        for (int64_t v = 0; v <= s.T; ++v) total += (float)hist[v] * share[v];
        out[j] = total;
    }
    return out;
}

}  // namespace

extern "C" {

// Scores rows [0, n) of x (float32 [n, T, C], C-contiguous) into out[n]; NaN marks a bad row.
// Returns 0, or -1 when the scratch cannot be allocated (nothing written then).
int poolscore_score(int strategy, int kind, const float* x, int64_t n, int64_t T, int64_t C, float inv_t,
                    float* out) {
    const Shape s{T, C, inv_t, (Kind)kind};
    const int64_t tc = T * C;
    const size_t vec = sizeof(vf);
    const size_t bytes = vec * (2 * tc + C + T) + sizeof(float) * (T + 1) + sizeof(int32_t) * (T + 1);
    char* scratch = (char*)std::aligned_alloc(vec, (bytes + vec - 1) / vec * vec);
    if (scratch == nullptr) return -1;
    vf* z = (vf*)scratch;
    vf* e = z + tc;
    vf* pbar = e + tc;
    vf* sums = pbar + C;
    float* share = (float*)(sums + T);
    int32_t* hist = (int32_t*)(share + T + 1);
    for (int64_t v = 0; v <= T; ++v) {  // committee.py: -xlogy(v/T, v/T) in float64, then float32
        double q = (double)v / (double)T;
        share[v] = v == 0 ? 0.f : (float)(-q * std::log(q));
    }
    const Strategy which = (Strategy)strategy;
    for (int64_t r0 = 0; r0 < n; r0 += L) {
        const int64_t rows = n - r0 < L ? n - r0 : L;
        gather(x + r0 * tc, rows, tc, (float*)z);
        const int64_t next_rows = n - r0 - L < 0 ? 0 : (n - r0 - L < L ? n - r0 - L : L);
        Prefetch pf(next_rows ? x + (r0 + L) * tc : x, next_rows * tc, T);
        vi bad = vi{};
        vf score = which >= LEAST_CONFIDENCE ? pointwise_block(which, z, e, s, bad, pf)
                   : which == VARIATION_RATIOS || which == VOTE_ENTROPY
                       ? argmax_block(which, z, pbar, share, hist, s, bad, pf)
                       : mean_softmax_block(which, z, e, pbar, sums, s, bad, pf);
        score = sel(bad, splat(__builtin_nanf("")), score);
        for (int j = 0; j < rows; ++j) out[r0 + j] = score[j];
    }
    std::free(scratch);
    return 0;
}

}  // extern "C"
