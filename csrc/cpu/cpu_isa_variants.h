// Compiles the CPU loop templates of the header named by NFI_CPU_LOOPS twice,
// into namespaces cpu_base (baseline x86-64) and cpu_avx2 (AVX2+FMA+F16C, GCC on
// x86-64 only; see cpu_isa.h); NFI_CPU_CALL(f<...>(args)) runs the copy this
// CPU supports. Include inside the op's namespace after
// `#define NFI_CPU_LOOPS "x_loops.h"`: no include guard, on purpose.
// NOLINT(build/header_guard)
namespace cpu_base {
#include NFI_CPU_LOOPS
}  // namespace cpu_base
#ifdef NFI_CPU_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace cpu_avx2 {
#include NFI_CPU_LOOPS
}  // namespace cpu_avx2
#pragma GCC pop_options
#else
namespace cpu_avx2 = cpu_base;  // cpu_has_avx2() is false
#endif
#undef NFI_CPU_LOOPS
