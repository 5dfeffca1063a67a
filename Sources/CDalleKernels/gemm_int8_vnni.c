// q8_0 / q4_0 weights × q8_0 activations (int32 block dots, f32 sums) on Linear panels with
// AVX-512 VNNI (see dalle_kernels_gemm.h): the packed GEMM for many rows and the streaming
// kernel for a few. vpdpbusd multiplies unsigned by signed bytes, so activations are stored as
// q + 128, weights as signed bytes (q4_0's nibbles minus 8), and each block's dot is corrected
// by -128 · Σ q_w, exactly, in int32.
#include "lane_mask.h"
#include "dalle_kernels_gemm.h"
#include "dalle_kernels_rows.h"

enum {
    GROUP = LIBDALLE_DOT_GROUP_ROWS, PANEL = 32, BLOCK = 32,
    // The streaming kernel's rows per pass over a panel: 8 rows × 2 int32 and 2 f32 accumulators.
    STREAM_ROWS = 8,
    // A quantized Linear panel's block: 32 f16 scales, then 32 rows of 32 int8 (q8_0) or 16 bytes
    // of nibbles (q4_0).
    Q8_ROW_BYTES = 32, Q4_ROW_BYTES = 16,
    // The same block in the GEMM's scratch: 8 quads × 32 words (4 inputs of one output each), the
    // 32 outputs' corrections (int32), then their scales (f32).
    PACKED_BLOCK_BYTES = 8 * 128 + 128 + 128,
    // How far ahead of the weights being read a pass of two or more rows prefetches (as
    // linear_rows_avx512.c).
    PREFETCH_BYTES = 2048,
};

static inline ptrdiff_t row_bytes(int format) { return format == DALLE_PANEL_Q4_0 ? Q4_ROW_BYTES : Q8_ROW_BYTES; }
static inline ptrdiff_t stored_block_bytes(int format) { return 64 + BLOCK * row_bytes(format); }
static ptrdiff_t groups_of(ptrdiff_t rows) { return (rows + GROUP - 1) / GROUP; }

size_t libdalle_q8_packed_words(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(groups_of(rows) * GROUP * (k / 4)); }
size_t libdalle_q8_scale_count(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(groups_of(rows) * GROUP * (k / BLOCK)); }
size_t libdalle_q8_panel_scratch_bytes(ptrdiff_t k) { return (size_t)((k / BLOCK) * PACKED_BLOCK_BYTES); }
// The f32 sums of one tile.
size_t libdalle_q8_gemm_scratch_bytes(void) { return GROUP * PANEL * 4; }
size_t libdalle_q8_stream_words(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(rows * (k / 4)); }
size_t libdalle_q8_stream_scale_count(ptrdiff_t rows, ptrdiff_t k) { return (size_t)(rows * (k / BLOCK)); }

#if defined(__x86_64__)
#include <immintrin.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)

// Quantizes the 32 floats at src as ggml's quantize_row_q8_0 (see dalle_kernels_gemm.h): their
// 8 words of q + 128 go to out[0], out[stride], …, out[7 · stride]; returns the block's scale d
// (NaN when a value is not finite).
static inline float quantize_block(const float *src, uint32_t *out, ptrdiff_t stride) {
    const __m512 zero = _mm512_setzero_ps();
    uint32_t words[8];
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
    for (int u = 0; u < 8; u++) out[u * stride] = words[u];
    return amax / 127.0f + nonfinite;
}

void libdalle_q8_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                        uint32_t *quants, float *scales) {
    const ptrdiff_t blocks = k / BLOCK;
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
                sbase[b * GROUP + r] = quantize_block(x + row * k + b * BLOCK, out, GROUP);
            }
        }
    }
}

void libdalle_q8_quantize_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, uint32_t *quants, float *scales) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        for (ptrdiff_t b = 0; b < k / BLOCK; b++) {
            scales[b * rows + r] = quantize_block(x + r * k + b * BLOCK, quants + b * 8 * rows + r, rows);
        }
    }
}

// The 16 weights of outputs 16h … 16h + 15 of input row `row` of a stored block, as signed bytes.
static inline __m128i stored_half_row(int format, const uint8_t *row, int h) {
    if (format != DALLE_PANEL_Q4_0) return _mm_loadu_si128((const __m128i *)(row + 16 * h));
    // Output j in the low nibble of byte j, output j + 16 in its high nibble; stored as q + 8.
    const __m128i bytes = _mm_loadu_si128((const __m128i *)row);
    const __m128i nibbles = _mm_and_si128(h ? _mm_srli_epi16(bytes, 4) : bytes, _mm_set1_epi8(15));
    return _mm_sub_epi8(nibbles, _mm_set1_epi8(8));
}

// Rearranges a stored panel into PACKED_BLOCK_BYTES blocks (see the enum).
static void pack_panel(int format, const uint8_t *panel, ptrdiff_t k, uint8_t *out) {
    const __m512i ones = _mm512_set1_epi8(1);
    const ptrdiff_t rb = row_bytes(format);
    for (ptrdiff_t b = 0; b < k / BLOCK; b++) {
        const uint8_t *src = panel + b * stored_block_bytes(format), *rows = src + 64;
        uint8_t *dst = out + b * PACKED_BLOCK_BYTES;
        for (int h = 0; h < 2; h++) {
            __m512i sum = _mm512_setzero_si512();
            for (int u = 0; u < 8; u++) {
                const uint8_t *r0 = rows + 4 * u * rb;
                __m512i word = _mm512_cvtepu8_epi32(stored_half_row(format, r0, h));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(stored_half_row(format, r0 + rb, h)), 8));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(stored_half_row(format, r0 + 2 * rb, h)), 16));
                word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(stored_half_row(format, r0 + 3 * rb, h)), 24));
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
void libdalle_q8_gemm(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                   const uint8_t *panels, ptrdiff_t panel_count, const float *bias, void *scratch, float *y,
                   ptrdiff_t ldy, ptrdiff_t width) {
    const ptrdiff_t blocks = k / BLOCK, panel_bytes = blocks * PACKED_BLOCK_BYTES;
    uint8_t *w = (uint8_t *)scratch;
    float *acc = (float *)(w + panel_count * panel_bytes);
    for (ptrdiff_t p = 0; p < panel_count; p++) pack_panel(format, panels + p * blocks * stored_block_bytes(format), k, w + p * panel_bytes);
    for (ptrdiff_t g = 0; g < groups_of(rows); g++) {
        const ptrdiff_t valid = rows - g * GROUP < GROUP ? rows - g * GROUP : GROUP;
        for (ptrdiff_t p = 0; p < panel_count; p++) {
            const ptrdiff_t cols = width - p * PANEL;
            const __mmask16 m0 = lane_mask(cols), m1 = lane_mask(cols - 16);
            tile(quants + g * GROUP * (k / 4), scales + g * GROUP * blocks, w + p * panel_bytes, blocks, acc,
                 bias ? bias + p * PANEL : NULL, y + g * GROUP * ldy + p * PANEL, ldy, valid, m0, m1);
        }
    }
}

// ---- The streaming kernel: a few rows through the stored panel, rearranged in registers ----

// Four input rows of 32 outputs, as X = [rows 0 | 2] and Y = [rows 1 | 3] (32 signed bytes each),
// → the words of vpdpbusd (each the 4 inputs of one output, input 0 in the low byte): w0 holds
// outputs 0–3, 16–19, 8–11, 24–27 and w1 outputs 4–7, 20–23, 12–15, 28–31 (`lane_outputs`).
static inline __attribute__((always_inline)) void transpose_quad(__m512i x, __m512i y, __m512i *w0, __m512i *w1) {
    const __m512i lo = _mm512_unpacklo_epi8(x, y), hi = _mm512_unpackhi_epi8(x, y);
    const __m512i rows01 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i rows23 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
    *w0 = _mm512_unpacklo_epi16(rows01, rows23);
    *w1 = _mm512_unpackhi_epi16(rows01, rows23);
}

// The outputs of transpose_quad's lanes, as indices into 32 values (two vectors). The
// permutation is its own inverse: the same indices put the lanes back in output order.
static inline __attribute__((always_inline)) void lane_outputs(__m512i *i0, __m512i *i1) {
    *i0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    *i1 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
}

// R rows (a constant after inlining) of one panel; a and as point at the pass's first row of
// activations quantized for `stride` rows (libdalle_q8_quantize_rows' layout).
static inline __attribute__((always_inline)) void stream_rows(int format, int R, const uint32_t *a, const float *as,
                                                             ptrdiff_t stride, ptrdiff_t k, const uint8_t *w,
                                                             const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy) {
    const int q4 = format == DALLE_PANEL_Q4_0;
    const ptrdiff_t block_bytes = stored_block_bytes(format);
    const __m512i ones = _mm512_set1_epi8(1), low_nibbles = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    // q4_0: qword indices that gather [rows 0 | 2] and [rows 1 | 3] from the low and high nibbles.
    const __m512i rows02 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), rows13 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    __m512i i0, i1;
    lane_outputs(&i0, &i1);
    __m512 sum[STREAM_ROWS][2];
    for (int r = 0; r < R; r++) sum[r][0] = sum[r][1] = _mm512_setzero_ps();
    for (ptrdiff_t b = 0; b < k / BLOCK; b++) {
        const uint8_t *base = w + b * block_bytes, *rows = base + 64;
        const uint32_t *ab = a + b * 8 * stride;
        __m512i dot[STREAM_ROWS][2], weight_sum0 = _mm512_setzero_si512(), weight_sum1 = _mm512_setzero_si512();
        for (int r = 0; r < R; r++) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
        for (int u = 0; u < 8; u++) {
            __m512i x, y4;
            if (q4) {
                const uint8_t *quad = rows + u * 4 * Q4_ROW_BYTES;
                if (R > 1) _mm_prefetch((const char *)quad + PREFETCH_BYTES, _MM_HINT_T0);
                // Lane t: row t's 16 bytes; its low nibbles are outputs 0–15, its high ones 16–31.
                const __m512i bytes = _mm512_loadu_si512(quad);
                const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(bytes, low_nibbles), eight);
                const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(bytes, 4), low_nibbles), eight);
                x = _mm512_permutex2var_epi64(lo, rows02, hi);
                y4 = _mm512_permutex2var_epi64(lo, rows13, hi);
            } else {
                const uint8_t *quad = rows + u * 4 * Q8_ROW_BYTES;
                if (R > 1) {
                    _mm_prefetch((const char *)quad + PREFETCH_BYTES, _MM_HINT_T0);
                    _mm_prefetch((const char *)quad + PREFETCH_BYTES + 64, _MM_HINT_T0);
                }
                const __m512i r01 = _mm512_loadu_si512(quad), r23 = _mm512_loadu_si512(quad + 64);
                x = _mm512_shuffle_i64x2(r01, r23, _MM_SHUFFLE(1, 0, 1, 0));
                y4 = _mm512_shuffle_i64x2(r01, r23, _MM_SHUFFLE(3, 2, 3, 2));
            }
            __m512i w0, w1;
            transpose_quad(x, y4, &w0, &w1);
            weight_sum0 = _mm512_dpbusd_epi32(weight_sum0, ones, w0);
            weight_sum1 = _mm512_dpbusd_epi32(weight_sum1, ones, w1);
            for (int r = 0; r < R; r++) {
                const __m512i s = _mm512_set1_epi32((int)ab[u * stride + r]);
                dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], s, w0);
                dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], s, w1);
            }
        }
        const __m512 s0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)base));
        const __m512 s1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + 32)));
        const __m512 d0 = _mm512_permutex2var_ps(s0, i0, s1), d1 = _mm512_permutex2var_ps(s0, i1, s1);
        const __m512i corr0 = _mm512_slli_epi32(weight_sum0, 7), corr1 = _mm512_slli_epi32(weight_sum1, 7);
        for (int r = 0; r < R; r++) {
            const __m512 dx = _mm512_set1_ps(as[b * stride + r]);
            sum[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][0], corr0)), _mm512_mul_ps(d0, dx), sum[r][0]);
            sum[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][1], corr1)), _mm512_mul_ps(d1, dx), sum[r][1]);
        }
    }
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    const __mmask16 m0 = lane_mask(width), m1 = lane_mask(width - 16);
    for (int r = 0; r < R; r++) {
        const __m512 y0 = _mm512_permutex2var_ps(sum[r][0], i0, sum[r][1]), y1 = _mm512_permutex2var_ps(sum[r][0], i1, sum[r][1]);
        _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_add_ps(y0, b0));
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, _mm512_add_ps(y1, b1));
    }
}

// stream_rows for one format, with the row count made a constant.
#define STREAM_KERNEL(name, format)                                                                            \
    static void name(int R, const uint32_t *a, const float *as, ptrdiff_t stride, ptrdiff_t k, const uint8_t *w, \
                     const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy) {                             \
        switch (R) {                                                                                           \
        case 1: stream_rows(format, 1, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 2: stream_rows(format, 2, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 3: stream_rows(format, 3, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 4: stream_rows(format, 4, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 5: stream_rows(format, 5, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 6: stream_rows(format, 6, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        case 7: stream_rows(format, 7, a, as, stride, k, w, bias, width, y, ldy); break;                       \
        default: stream_rows(format, 8, a, as, stride, k, w, bias, width, y, ldy); break;                      \
        }                                                                                                      \
    }

STREAM_KERNEL(stream_q8_0, DALLE_PANEL_Q8_0)
STREAM_KERNEL(stream_q4_0, DALLE_PANEL_Q4_0)

void libdalle_q8_stream(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                     const uint8_t *panel, const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy) {
    // Rows in as few passes of at most eight as possible, split evenly (as linear_rows_avx512.c).
    const ptrdiff_t passes = (rows + STREAM_ROWS - 1) / STREAM_ROWS;
    for (ptrdiff_t done = 0, pass = 0; pass < passes; pass++) {
        const int R = (int)((rows - done + (passes - pass) - 1) / (passes - pass));
        if (format == DALLE_PANEL_Q4_0) {
            stream_q4_0(R, quants + done, scales + done, rows, k, panel, bias, width, y + done * ldy, ldy);
        } else {
            stream_q8_0(R, quants + done, scales + done, rows, k, panel, bias, width, y + done * ldy, ldy);
        }
        done += R;
    }
}

#pragma clang attribute pop

#else

void libdalle_q8_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                        uint32_t *quants, float *scales) {
    (void)x, (void)rows, (void)k, (void)first_group, (void)groups, (void)quants, (void)scales;
}

void libdalle_q8_quantize_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, uint32_t *quants, float *scales) {
    (void)x, (void)rows, (void)k, (void)quants, (void)scales;
}

void libdalle_q8_gemm(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                   const uint8_t *panels, ptrdiff_t panel_count, const float *bias, void *scratch, float *y,
                   ptrdiff_t ldy, ptrdiff_t width) {
    (void)format, (void)quants, (void)scales, (void)rows, (void)k, (void)panels, (void)panel_count, (void)bias,
        (void)scratch, (void)y, (void)ldy, (void)width;
}

void libdalle_q8_stream(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                     const uint8_t *panel, const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy) {
    (void)format, (void)quants, (void)scales, (void)rows, (void)k, (void)panel, (void)bias, (void)width, (void)y,
        (void)ldy;
}

#endif
