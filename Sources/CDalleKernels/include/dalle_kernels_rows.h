// Streaming rows through one weight panel of libdalle's Linear with AVX-512 (x86-64 only).
// The panel layout is Linear's (Sources/DalleCore/Layers/Linear.swift): 32 output columns,
// [inputs][32] for f32/f16/bf16, blocks of 32 inputs (32 f16 scales, then 32 rows of 32 int8
// or 32 nibbles) for q8_0/q4_0. Every output starts at its bias (or 0) and adds x[p] · w[p]
// with one fused multiply-add per input in ascending p: the same chain as the portable kernel,
// so the results are bit for bit the same.
#ifndef DALLE_KERNELS_ROWS_H
#define DALLE_KERNELS_ROWS_H

#include <stddef.h>

// How a panel's weights are stored.
enum {
    DALLE_PANEL_F32 = 0,
    DALLE_PANEL_F16 = 1,
    DALLE_PANEL_BF16 = 2,
    DALLE_PANEL_Q8_0 = 3,
    DALLE_PANEL_Q4_0 = 4,
};

// y[r][j] = bias[j] (or 0) + Σ_p x[r][p] · w[p][j] for r < rows, j < width (≤ 32), with x rows
// k apart and y rows ldy apart. `bias`, when not NULL, holds 32 floats (zero-padded past
// width); k is a multiple of 32 for the quantized formats. Only for a CPU with AVX-512 F, BW
// and VL, F16C and FMA; the panel is widened once for up to eight rows. (Named libdalle_, not
// dalle_: libdalle.so exports the C API's dalle_* names only.)
void libdalle_linear_rows_avx512(int format, const float *x, ptrdiff_t rows, ptrdiff_t k, const void *panel,
                              const float *bias, ptrdiff_t width, float *y, ptrdiff_t ldy);

#endif
