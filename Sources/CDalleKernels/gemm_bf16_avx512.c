// bf16 × bf16 → f32 GEMM on one Linear panel with AVX-512 BF16 (see dalle_kernels_gemm.h).
#include "lane_mask.h"
#include "dalle_kernels_gemm.h"

enum { GROUP = LIBDALLE_DOT_GROUP_ROWS, PANEL = 32 };

static ptrdiff_t pairs_of(ptrdiff_t k) { return (k + 1) / 2; }
static ptrdiff_t groups_of(ptrdiff_t rows) { return (rows + GROUP - 1) / GROUP; }

size_t libdalle_bf16_packed_words(ptrdiff_t rows, ptrdiff_t k) {
    return (size_t)(groups_of(rows) * pairs_of(k) * GROUP);
}

size_t libdalle_bf16_panel_scratch_bytes(ptrdiff_t k) { return (size_t)(pairs_of(k) * PANEL * 4); }

#if defined(__x86_64__)
#include <immintrin.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))), apply_to = function)

void libdalle_bf16_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                          uint32_t *packed) {
    const ptrdiff_t pairs = pairs_of(k);
    uint32_t words[16];
    for (ptrdiff_t g = first_group; g < first_group + groups; g++) {
        uint32_t *base = packed + g * pairs * GROUP;
        for (ptrdiff_t r = 0; r < GROUP; r++) {
            const ptrdiff_t row = g * GROUP + r;
            if (row >= rows) {
                for (ptrdiff_t q = 0; q < pairs; q++) base[q * GROUP + r] = 0;
                continue;
            }
            const float *src = x + row * k;
            // 32 inputs (16 pairs) at a time; past k the masked loads give zeros.
            for (ptrdiff_t i = 0; i < k; i += 32) {
                const ptrdiff_t left = k - i;
                const __mmask16 lo = lane_mask(left), hi = lane_mask(left - 16);
                const __m512 a = _mm512_maskz_loadu_ps(lo, src + i), b = _mm512_maskz_loadu_ps(hi, src + i + 16);
                _mm512_storeu_si512(words, (__m512i)_mm512_cvtne2ps_pbh(b, a));
                const ptrdiff_t q0 = i / 2, n = pairs - q0 < 16 ? pairs - q0 : 16;
                for (ptrdiff_t t = 0; t < n; t++) base[(q0 + t) * GROUP + r] = words[t];
            }
        }
    }
}

// Interleaves the panel's input rows in pairs: word j of pair q holds w[2q][j] (low half) and
// w[2q + 1][j] (high half), a missing last row zero.
static void pack_panel(const uint16_t *panel, ptrdiff_t k, uint32_t *out) {
    const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                           39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i second = _mm512_add_epi16(first, _mm512_set1_epi16(16));
    for (ptrdiff_t q = 0; q < pairs_of(k); q++) {
        const __m512i even = _mm512_loadu_si512(panel + 2 * q * PANEL);
        const __m512i odd = 2 * q + 1 < k ? _mm512_loadu_si512(panel + (2 * q + 1) * PANEL) : _mm512_setzero_si512();
        _mm512_storeu_si512(out + q * PANEL, _mm512_permutex2var_epi16(even, first, odd));
        _mm512_storeu_si512(out + q * PANEL + 16, _mm512_permutex2var_epi16(even, second, odd));
    }
}

// One group of 12 rows × 32 outputs: 24 accumulators over every input pair, then stored.
static void tile(const uint32_t *a, const uint32_t *w, ptrdiff_t pairs, const float *bias, float *y,
                 ptrdiff_t ldy, ptrdiff_t valid_rows, __mmask16 m0, __mmask16 m1) {
    __m512 c[GROUP][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < GROUP; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (ptrdiff_t q = 0; q < pairs; q++) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w + q * PANEL);
        const __m512bh w1 = (__m512bh)_mm512_loadu_si512(w + q * PANEL + 16);
        const uint32_t *ap = a + q * GROUP;
#pragma clang loop unroll(full)
        for (int r = 0; r < GROUP; r++) {
            const __m512bh s = (__m512bh)_mm512_set1_epi32((int)ap[r]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], s, w0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], s, w1);
        }
    }
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
    for (int r = 0; r < GROUP; r++) {
        if (r < valid_rows) {
            _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_add_ps(c[r][0], b0));
            _mm512_mask_storeu_ps(y + r * ldy + 16, m1, _mm512_add_ps(c[r][1], b1));
        }
    }
}

// Every panel is packed first; then each group of rows runs over all of them while it is in
// L1, so the activations are read once per call rather than once per panel.
void libdalle_bf16_gemm(const uint32_t *packed, ptrdiff_t rows, ptrdiff_t k, const uint16_t *panels,
                     ptrdiff_t panel_count, const float *bias, void *scratch, float *y, ptrdiff_t ldy,
                     ptrdiff_t width) {
    const ptrdiff_t pairs = pairs_of(k), panel_words = pairs * PANEL;
    uint32_t *w = (uint32_t *)scratch;
    for (ptrdiff_t p = 0; p < panel_count; p++) pack_panel(panels + p * k * PANEL, k, w + p * panel_words);
    for (ptrdiff_t g = 0; g < groups_of(rows); g++) {
        const ptrdiff_t valid = rows - g * GROUP < GROUP ? rows - g * GROUP : GROUP;
        for (ptrdiff_t p = 0; p < panel_count; p++) {
            const ptrdiff_t cols = width - p * PANEL;
            const __mmask16 m0 = lane_mask(cols), m1 = lane_mask(cols - 16);
            tile(packed + g * pairs * GROUP, w + p * panel_words, pairs, bias ? bias + p * PANEL : NULL,
                 y + g * GROUP * ldy + p * PANEL, ldy, valid, m0, m1);
        }
    }
}

#pragma clang attribute pop

#else

void libdalle_bf16_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                          uint32_t *packed) {
    (void)x, (void)rows, (void)k, (void)first_group, (void)groups, (void)packed;
}

void libdalle_bf16_gemm(const uint32_t *packed, ptrdiff_t rows, ptrdiff_t k, const uint16_t *panels,
                     ptrdiff_t panel_count, const float *bias, void *scratch, float *y, ptrdiff_t ldy,
                     ptrdiff_t width) {
    (void)packed, (void)rows, (void)k, (void)panels, (void)panel_count, (void)bias, (void)scratch, (void)y,
        (void)ldy, (void)width;
}

#endif
