#pragma once
// Runtime choice of the instruction set for the fused-loss CPU loops. The loop
// templates (*_loops.h) are compiled twice (cpu_isa_variants.h): for the baseline x86-64 target
// (SSE2) in namespace cpu_base, and, with GCC on x86-64, for AVX2+FMA+F16C in
// namespace cpu_avx2 (the build passes no -march, so the package still runs on
// any x86-64 CPU); the kernels take the AVX2 copy when the CPU has it.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NFI_CPU_AVX2 1
#endif

namespace nfinpaint {

inline bool cpu_has_avx2() {
#ifdef NFI_CPU_AVX2
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

}  // namespace nfinpaint

// The call `f<...>(args)` in the copy of the loops this CPU runs (cpu_isa_variants.h).
#define NFI_CPU_CALL(...) (::nfinpaint::cpu_has_avx2() ? cpu_avx2::__VA_ARGS__ : cpu_base::__VA_ARGS__)
