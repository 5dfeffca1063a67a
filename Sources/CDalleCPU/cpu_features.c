#include "dalle_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

// XGETBV without needing the XSAVE target feature at compile time.
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

uint32_t libdalle_cpu_features(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
    const int fma = (ecx >> 12) & 1, f16c = (ecx >> 29) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // XMM and YMM state
    const int zmm = (xcr0 & 0xe6) == 0xe6;  // and opmask, ZMM0-15 upper halves, ZMM16-31

    uint32_t features = 0;
    if (fma) features |= DALLE_CPU_FMA;
    if (f16c) features |= DALLE_CPU_F16C;
    if (__get_cpuid_max(0, 0) < 7) return features;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    if ((ebx >> 5) & 1) features |= DALLE_CPU_AVX2;
    if (zmm) {
        if ((ebx >> 16) & 1) features |= DALLE_CPU_AVX512F;
        if ((ebx >> 30) & 1) features |= DALLE_CPU_AVX512BW;
        if ((ebx >> 31) & 1) features |= DALLE_CPU_AVX512VL;
        if ((ecx >> 11) & 1) features |= DALLE_CPU_AVX512_VNNI;
        unsigned int eax1, ebx1, ecx1, edx1;
        __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
        if ((eax1 >> 5) & 1) features |= DALLE_CPU_AVX512_BF16;
    }
    return features;
}
#else
uint32_t libdalle_cpu_features(void) { return 0; }
#endif
