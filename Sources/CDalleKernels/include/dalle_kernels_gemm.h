// Dot-product kernels for Linear: bf16 weights with AVX-512 BF16 (vdpbf16ps) for its packed path
// (more than 16 rows), and q8_0 / q4_0 weights with AVX-512 VNNI (vpdpbusd) for both its packed
// and its streaming path. The files are compiled for the baseline CPU and each function carries
// its own target attributes: call them only when libdalle_cpu_features() reports AVX512F, BW, VL
// and BF16 (bf16) or VNNI (q8). Elsewhere (another architecture) the functions exist and do nothing.
//
// They work on 32-output weight panels of Linear (see Linear.swift), over every row of x, and
// sum each output in a fixed order that depends only on k: a result never depends on how rows
// are grouped, which kernel runs them, or how panels are shared among threads. Named libdalle_*, not
// dalle_*, so that libdalle.so does not export them (exports.map).
#ifndef DALLE_KERNELS_GEMM_H
#define DALLE_KERNELS_GEMM_H

#include <stddef.h>
#include <stdint.h>

// Rows of x per micro-tile: packed activations come in groups of this many rows (the last
// group zero-padded).
enum { LIBDALLE_DOT_GROUP_ROWS = 12 };

// ---- bf16 weights × bf16 activations, f32 sums ----
// Packed activations of one group: for each pair of inputs (2q, 2q + 1), one 32-bit word per
// row holding both inputs rounded to bf16 (to nearest even; the even input in the low half).
// An odd k's last pair and rows past `rows` are zero.

// 32-bit words of packed activations for `rows` rows of `k` inputs.
size_t libdalle_bf16_packed_words(ptrdiff_t rows, ptrdiff_t k);
// Packs groups [first_group, first_group + groups) of x [rows][k] (row-major) into `packed`
// (laid out for every group, as libdalle_bf16_packed_words counts).
void libdalle_bf16_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                          uint32_t *packed);
// Bytes of the scratch libdalle_bf16_gemm needs per panel.
size_t libdalle_bf16_panel_scratch_bytes(ptrdiff_t k);
// y[r][j] = Σ_i x[r][i] · w[i][j] (+ bias[j]) for j < width, every row r < rows: w is
// `panel_count` consecutive Linear panels [k][32] of bf16 (32 columns of w each; width ≤
// 32 · panel_count), x the packed activations. Each output is one f32 sum over the input pairs
// in ascending order, a pair adding its odd input's product and then its even input's (the
// products of two bf16 values are exact); bias is added last.
void libdalle_bf16_gemm(const uint32_t *packed, ptrdiff_t rows, ptrdiff_t k, const uint16_t *panels,
                     ptrdiff_t panel_count, const float *bias, void *scratch, float *y, ptrdiff_t ldy,
                     ptrdiff_t width);

// ---- q8_0 / q4_0 weights × q8_0 activations, int32 block dots, f32 sums ----
// Activations are quantized per row and block of 32 inputs as ggml's quantize_row_q8_0 does:
// d = max|x| / 127, q = x · (127 / max|x|) rounded to nearest even (0 for an all-zero block);
// a block holding a NaN or an infinity gets d = NaN. Packed, per group: for each block and
// each of its 8 quads of inputs, one 32-bit word per row holding the 4 values as q + 128
// (unsigned bytes); the scales per group as [blocks][12] floats. k is a multiple of 32.

// 32-bit words of packed quants, and floats of scales, for `rows` rows of `k` inputs.
size_t libdalle_q8_packed_words(ptrdiff_t rows, ptrdiff_t k);
size_t libdalle_q8_scale_count(ptrdiff_t rows, ptrdiff_t k);
// Quantizes and packs groups [first_group, first_group + groups) of x [rows][k].
void libdalle_q8_pack_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, ptrdiff_t first_group, ptrdiff_t groups,
                        uint32_t *quants, float *scales);
// Bytes of the scratch libdalle_q8_gemm needs per panel, and once more for any number of panels.
size_t libdalle_q8_panel_scratch_bytes(ptrdiff_t k);
size_t libdalle_q8_gemm_scratch_bytes(void);
// y[r][j] = Σ_b (Σ_{i in b} qx[r][i] · qw[i][j]) · (dw[b][j] · dx[r][b]) (+ bias[j]) for
// j < width: each block's dot is exact in int32, then added to the f32 sum as
// fma(dot, dw · dx, sum), blocks in ascending order from 0; bias is added last. panels are
// `panel_count` consecutive Linear panels of `format` (DALLE_PANEL_Q8_0 or DALLE_PANEL_Q4_0, see
// dalle_kernels_rows.h: per block of 32 inputs, 32 f16 scales, then 32 rows of 32 int8 or of
// 32 nibbles holding q + 8).
void libdalle_q8_gemm(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                   const uint8_t *panels, ptrdiff_t panel_count, const float *bias, void *scratch, float *y,
                   ptrdiff_t ldy, ptrdiff_t width);

// The streaming kernel's activations: quantized as above, laid out as one group of all `rows`
// rows (quants [blocks][8][rows] words, scales [blocks][rows]); sizes for `rows` rows of `k`.
size_t libdalle_q8_stream_words(ptrdiff_t rows, ptrdiff_t k);
size_t libdalle_q8_stream_scale_count(ptrdiff_t rows, ptrdiff_t k);
void libdalle_q8_quantize_rows(const float *x, ptrdiff_t rows, ptrdiff_t k, uint32_t *quants, float *scales);
// libdalle_q8_gemm's y for one panel of `format` and a few rows (up to eight per pass over it;
// the weights are rearranged in registers, not packed): the same sums, so the same bits. bias,
// when not NULL, holds 32 floats (zero-padded past width).
void libdalle_q8_stream(int format, const uint32_t *quants, const float *scales, ptrdiff_t rows, ptrdiff_t k,
                     const uint8_t *panel, const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy);

#endif
