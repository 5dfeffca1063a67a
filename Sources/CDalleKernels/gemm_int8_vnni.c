// q8_0 × q8_0 GEMM (int32 block dots, f32 sums) on one Linear panel with AVX-512 VNNI (see
// dalle_kernels_gemm.h). vpdpbusd multiplies unsigned by signed bytes, so activations are
// stored as q + 128 and each block's dot is corrected by -128 · Σ q_w, exactly, in int32.
#include "dalle_kernels_gemm.h"

enum {
    GROUP = LIBDALLE_DOT_GROUP_ROWS, PANEL = 32, BLOCK = 32,
    // A q8_0 Linear panel's block: 32 f16 scales, then 32 rows of 32 int8.
    STORED_BLOCK_BYTES = 64 + 32 * 32,
    // The same block in the scratch: 8 quads × 32 words (4 inputs of one output each), the
    // 32 outputs' corrections (int32), then their scales (f32).
    PACKED_BLOCK_BYTES = 8 * 128 + 128 + 128,
};

static ptrdiff_t groups_of(ptrdiff_t rows) { return (rows + GROUP - 1) / GROUP; }

size_t libdalle_q8_packed_words(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(groups_of(rows) * GROUP * (k / 4)); }
size_t libdalle_q8_scale_count(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(groups_of(rows) * GROUP * (k / BLOCK)); }
size_t libdalle_q8_panel_scratch_bytes(ptrdiff_t k) { return (size_t)((k / BLOCK) * PACKED_BLOCK_BYTES); }
// The f32 sums of one tile.
size_t libdalle_q8_gemm_scratch_bytes(void) { return GROUP * PANEL * 4; }

#if defined(__x86_64__)
#include <immintrin.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)

void libdalle_q8_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                        uint32_t *quants, float *scales) {
    const ptrdiff_t blocks = k / BLOCK;
    const __m512 zero = _mm512_setzero_ps();
    uint32_t words[8];
    for (ptrdiff_t g = first_group; g < first_group + groups; g++) {
        uint32_t *qbase = quants + g * GROUP * (k / 4);
        float *sbase = scales + g * GROUP * blocks;
        for (ptrdiff_t r = 0; r < GROUP; r++) {
            const ptrdiff_t row = g * GROUP + r;
            for (ptrdiff_t b = 0; b < blocks; b++) {
                uint32_t *out = qbase + b * 8 * GROUP + r;
                if (row >= rows) {
                    for (int u = 0; u < 8; u++) out[u * GROUP] = 0;
                    sbase[b * GROUP + r] = 0;
                    continue;
                }
                const float *src = x + row * k + b * BLOCK;
                const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
                const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
                // 0 when every value is finite, NaN otherwise.
                const float nonfinite = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_mul_ps(v0, zero), _mm512_mul_ps(v1, zero)));
                const float inverse = amax >= 0x1p-100f ? 127.0f / amax : 0.0f;
                const __m512 id = _mm512_set1_ps(inverse);
                const __m512i offset = _mm512_set1_epi32(128);
                const __m512i q0 = _mm512_add_epi32(_mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), offset);
                const __m512i q1 = _mm512_add_epi32(_mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), offset);
                _mm_storeu_si128((__m128i *)words, _mm512_cvtepi32_epi8(q0));
                _mm_storeu_si128((__m128i *)(words + 4), _mm512_cvtepi32_epi8(q1));
                for (int u = 0; u < 8; u++) out[u * GROUP] = words[u];
                sbase[b * GROUP + r] = amax / 127.0f + nonfinite;
            }
        }
    }
}

// Rearranges a stored panel into PACKED_BLOCK_BYTES blocks (see the enum).
static void pack_panel(const uint8_t *panel, ptrdiff_t k, uint8_t *out) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (ptrdiff_t b = 0; b < k / BLOCK; b++) {
        const uint8_t *src = panel + b * STORED_BLOCK_BYTES, *rows = src + 64;
        uint8_t *dst = out + b * PACKED_BLOCK_BYTES;
        for (int h = 0; h < 2; h++) {
            __m512i sum = _mm512_setzero_si512();
            for (int u = 0; u < 8; u++) {
                const uint8_t *r0 = rows + 4 * u * PANEL + 16 * h;
                __m512i word = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)r0));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(r0 + PANEL))), 8));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(r0 + 2 * PANEL))), 16));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(r0 + 3 * PANEL))), 24));
                _mm512_storeu_si512(dst + u * 128 + h * 64, word);
                sum = _mm512_dpbusd_epi32(sum, ones, word);
            }
            _mm512_storeu_si512(dst + 1024 + h * 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
            _mm512_storeu_ps(dst + 1152 + h * 64, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 32 * h))));
        }
    }
}

// One group of 12 rows × 32 outputs: per block, 24 int32 accumulators (starting at the
// correction), then added to the f32 sums in `acc` [12][32].
static void tile(const uint32_t *a, const float *as, const uint8_t *w, ptrdiff_t blocks, float *acc,
                 const float *bias, float *y, ptrdiff_t ldy, ptrdiff_t valid_rows, __mmask16 m0, __mmask16 m1) {
    for (int i = 0; i < GROUP * PANEL; i += 16) _mm512_storeu_ps(acc + i, _mm512_setzero_ps());
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const uint8_t *wb = w + b * PACKED_BLOCK_BYTES;
        const uint32_t *ab = a + b * 8 * GROUP;
        const __m512i corr0 = _mm512_loadu_si512(wb + 1024), corr1 = _mm512_loadu_si512(wb + 1088);
        __m512i c[GROUP][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < GROUP; r++) { c[r][0] = corr0; c[r][1] = corr1; }
#pragma clang loop unroll(full)
        for (int u = 0; u < 8; u++) {
            const __m512i w0 = _mm512_loadu_si512(wb + u * 128), w1 = _mm512_loadu_si512(wb + u * 128 + 64);
#pragma clang loop unroll(full)
            for (int r = 0; r < GROUP; r++) {
                const __m512i s = _mm512_set1_epi32((int)ab[u * GROUP + r]);
                c[r][0] = _mm512_dpbusd_epi32(c[r][0], s, w0);
                c[r][1] = _mm512_dpbusd_epi32(c[r][1], s, w1);
            }
        }
        const __m512 d0 = _mm512_loadu_ps((const float *)(wb + 1152)), d1 = _mm512_loadu_ps((const float *)(wb + 1216));
#pragma clang loop unroll(full)
        for (int r = 0; r < GROUP; r++) {
            const __m512 dx = _mm512_set1_ps(as[b * GROUP + r]);
            float *sum = acc + r * PANEL;
            _mm512_storeu_ps(sum, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c[r][0]), _mm512_mul_ps(d0, dx), _mm512_loadu_ps(sum)));
            _mm512_storeu_ps(sum + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c[r][1]), _mm512_mul_ps(d1, dx), _mm512_loadu_ps(sum + 16)));
        }
    }
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (ptrdiff_t r = 0; r < valid_rows; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_add_ps(_mm512_loadu_ps(acc + r * PANEL), b0));
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, _mm512_add_ps(_mm512_loadu_ps(acc + r * PANEL + 16), b1));
    }
}

// Every panel is packed first; then each group of rows runs over all of them while it is in
// L1, so the activations are read once per call rather than once per panel.
void libdalle_q8_gemm(const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                   const uint8_t *panels, ptrdiff_t panel_count, const float *bias, void *scratch, float *y,
                   ptrdiff_t ldy, ptrdiff_t width) {
    const ptrdiff_t blocks = k / BLOCK, panel_bytes = blocks * PACKED_BLOCK_BYTES;
    uint8_t *w = (uint8_t *)scratch;
    float *acc = (float *)(w + panel_count * panel_bytes);
    for (ptrdiff_t p = 0; p < panel_count; p++) pack_panel(panels + p * blocks * STORED_BLOCK_BYTES, k, w + p * panel_bytes);
    for (ptrdiff_t g = 0; g < groups_of(rows); g++) {
        const ptrdiff_t valid = rows - g * GROUP < GROUP ? rows - g * GROUP : GROUP;
        for (ptrdiff_t p = 0; p < panel_count; p++) {
            const ptrdiff_t cols = width - p * PANEL;
            const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
            tile(quants + g * GROUP * (k / 4), scales + g * GROUP * blocks, w + p * panel_bytes, blocks, acc,
                 bias ? bias + p * PANEL : NULL, y + g * GROUP * ldy + p * PANEL, ldy, valid, m0, m1);
        }
    }
}

#pragma clang attribute pop

#else

void libdalle_q8_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                        uint32_t *quants, float *scales) {
    (void)x, (void)rows, (void)k, (void)first_group, (void)groups, (void)quants, (void)scales;
}

void libdalle_q8_gemm(const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                   const uint8_t *panels, ptrdiff_t panel_count, const float *bias, void *scratch, float *y,
                   ptrdiff_t ldy, ptrdiff_t width) {
    (void)quants, (void)scales, (void)rows, (void)k, (void)panels, (void)panel_count, (void)bias, (void)scratch,
        (void)y, (void)ldy, (void)width;
}

#endif
