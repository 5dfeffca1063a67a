// CPU feature detection for libdalle's kernels. This target is compiled for the compiler's
// baseline CPU (not the kernels' AVX2 target), so it runs on any x86-64 and can report what
// is missing instead of the process dying of an illegal instruction.
#ifndef DALLE_CPU_H
#define DALLE_CPU_H

#include <stdint.h>

// Bits of libdalle_cpu_features(): each set only when the CPU has the feature and the operating
// system saves the registers it needs (XCR0).
enum {
    DALLE_CPU_AVX2 = 1u << 0,
    DALLE_CPU_FMA = 1u << 1,
    DALLE_CPU_F16C = 1u << 2,
    DALLE_CPU_AVX512F = 1u << 3,
    DALLE_CPU_AVX512BW = 1u << 4,
    DALLE_CPU_AVX512VL = 1u << 5,
    DALLE_CPU_AVX512_BF16 = 1u << 6,
    DALLE_CPU_AVX512_VNNI = 1u << 7,
};

// The DALLE_CPU_* features of the CPU this runs on (0 on other architectures).
uint32_t libdalle_cpu_features(void);

#endif
