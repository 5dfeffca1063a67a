// Linear's streaming kernel for AVX-512 (see include/dalle_kernels_rows.h). Up to eight rows
// share one pass over a panel: 8 rows × 32 columns = 16 zmm accumulators, each weight row of
// the panel read and widened once per pass. Only these functions are compiled for AVX-512;
// Swift calls them after checking the CPU's features.
#include "lane_mask.h"
#include "dalle_kernels_rows.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
#define INLINE static inline __attribute__((always_inline))
enum { PANEL_WIDTH = 32, BLOCK = 32, MAX_ROWS = 8 };
// How far ahead of the weight row being read a pass of two or more rows prefetches: at 16 or
// more multiply-adds per 64 bytes the hardware prefetcher alone falls behind (measured from
// memory with eight rows of f16: 31 → 49 GMAC/s on one core); a lone row streams at the read
// bandwidth without it, and a little slower with it.
enum { PREFETCH_BYTES = 2048 };

// The 32 weights of input p of a floating-point panel, widened to two f32 vectors.
INLINE AVX512 void widen_row(int format, const char *row, __m512 *lo, __m512 *hi) {
    switch (format) {
    case DALLE_PANEL_F32:
        *lo = _mm512_loadu_ps(row);
        *hi = _mm512_loadu_ps(row + 64);
        break;
    case DALLE_PANEL_F16:
        *lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)row));
        *hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 32)));
        break;
    default:  // bf16: the upper half of an f32
        *lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)row)), 16));
        *hi = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 32))), 16));
        break;
    }
}

// Adds x[r][p] · (lo, hi) to row r's accumulators for every r < R.
#define ACCUMULATE(R, x, k, p, acc, lo, hi)                                    \
    for (int r = 0; r < (R); r++) {                                            \
        const __m512 s = _mm512_set1_ps((x)[r * (k) + (p)]);                   \
        acc[r][0] = _mm512_fmadd_ps(s, lo, acc[r][0]);                         \
        acc[r][1] = _mm512_fmadd_ps(s, hi, acc[r][1]);                         \
    }

// R rows (a compile-time constant after inlining) of one panel.
INLINE AVX512 void panel_rows(int format, int R, const float *x, ptrdiff_t k, const char *w, const float *bias,
                              ptrdiff_t width, float *y, ptrdiff_t ldy) {
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    __m512 acc[MAX_ROWS][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    if (format == DALLE_PANEL_Q8_0 || format == DALLE_PANEL_Q4_0) {
        // Per block: 32 f16 scales d, then 32 rows; each weight is (q + offset) · d, made exact by
        // one fused multiply-add q · d + offset · d, as the portable kernel makes it.
        const int q8 = format == DALLE_PANEL_Q8_0;
        const ptrdiff_t rowBytes = q8 ? 32 : 16, blockBytes = 64 + BLOCK * rowBytes;
        const __m512 offset = _mm512_set1_ps(q8 ? 0.0f : -8.0f);
        for (ptrdiff_t block = 0; block < k / BLOCK; block++) {
            const char *base = w + block * blockBytes;
            const __m512 s0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)base));
            const __m512 s1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + 32)));
            const __m512 m0 = _mm512_mul_ps(offset, s0), m1 = _mm512_mul_ps(offset, s1);
            for (int j = 0; j < BLOCK; j++) {
                const char *row = base + 64 + j * rowBytes;
                if (R > 1) _mm_prefetch(row + PREFETCH_BYTES, _MM_HINT_T0);
                __m512 q0, q1;
                if (q8) {
                    q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)row)));
                    q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 16))));
                } else {
                    // Output j in the low nibble of byte j, output j + 16 in its high nibble.
                    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)row));
                    q0 = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)));
                    q1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
                }
                const __m512 lo = _mm512_fmadd_ps(q0, s0, m0), hi = _mm512_fmadd_ps(q1, s1, m1);
                ACCUMULATE(R, x, k, block * BLOCK + j, acc, lo, hi)
            }
        }
    } else {
        const ptrdiff_t rowBytes = PANEL_WIDTH * (format == DALLE_PANEL_F32 ? 4 : 2);
        for (ptrdiff_t p = 0; p < k; p++) {
            const char *row = w + p * rowBytes;
            if (R > 1) {
                _mm_prefetch(row + PREFETCH_BYTES, _MM_HINT_T0);
                if (format == DALLE_PANEL_F32) _mm_prefetch(row + PREFETCH_BYTES + 64, _MM_HINT_T0);
            }
            __m512 lo, hi;
            widen_row(format, row, &lo, &hi);
            ACCUMULATE(R, x, k, p, acc, lo, hi)
        }
    }
    const __mmask16 m0 = lane_mask(width), m1 = lane_mask(width - 16);
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, m0, acc[r][0]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, acc[r][1]);
    }
}

// panel_rows for one format, with the row count made a constant.
#define FORMAT_KERNEL(name, format)                                                                           \
    static AVX512 void name(int R, const float *x, ptrdiff_t k, const char *w, const float *bias,             \
                            ptrdiff_t width, float *y, ptrdiff_t ldy) {                                       \
        switch (R) {                                                                                          \
        case 1: panel_rows(format, 1, x, k, w, bias, width, y, ldy); break;                                   \
        case 2: panel_rows(format, 2, x, k, w, bias, width, y, ldy); break;                                   \
        case 3: panel_rows(format, 3, x, k, w, bias, width, y, ldy); break;                                   \
        case 4: panel_rows(format, 4, x, k, w, bias, width, y, ldy); break;                                   \
        case 5: panel_rows(format, 5, x, k, w, bias, width, y, ldy); break;                                   \
        case 6: panel_rows(format, 6, x, k, w, bias, width, y, ldy); break;                                   \
        case 7: panel_rows(format, 7, x, k, w, bias, width, y, ldy); break;                                   \
        default: panel_rows(format, 8, x, k, w, bias, width, y, ldy); break;                                  \
        }                                                                                                     \
    }

FORMAT_KERNEL(rows_f32, DALLE_PANEL_F32)
FORMAT_KERNEL(rows_f16, DALLE_PANEL_F16)
FORMAT_KERNEL(rows_bf16, DALLE_PANEL_BF16)
FORMAT_KERNEL(rows_q8_0, DALLE_PANEL_Q8_0)
FORMAT_KERNEL(rows_q4_0, DALLE_PANEL_Q4_0)

void libdalle_linear_rows_avx512(int format, const float *x, ptrdiff_t rows, ptrdiff_t k, const void *panel,
                              const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy) {
    // Rows in as few passes of at most eight as possible, split evenly (9 rows: 5 + 4), so
    // every pass keeps enough accumulator chains in flight.
    const ptrdiff_t passes = (rows + MAX_ROWS - 1) / MAX_ROWS;
    for (ptrdiff_t done = 0, pass = 0; pass < passes; pass++) {
        const int R = (int)((rows - done + (passes - pass) - 1) / (passes - pass));
        const float *xr = x + done * k;
        float *yr = y + done * ldy;
        switch (format) {
        case DALLE_PANEL_F32: rows_f32(R, xr, k, panel, bias, width, yr, ldy); break;
        case DALLE_PANEL_F16: rows_f16(R, xr, k, panel, bias, width, yr, ldy); break;
        case DALLE_PANEL_BF16: rows_bf16(R, xr, k, panel, bias, width, yr, ldy); break;
        case DALLE_PANEL_Q8_0: rows_q8_0(R, xr, k, panel, bias, width, yr, ldy); break;
        default: rows_q4_0(R, xr, k, panel, bias, width, yr, ldy); break;
        }
        done += R;
    }
}
#endif
