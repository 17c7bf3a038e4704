#pragma once
// Shared by the CPU (.cpp) and CUDA (.cu) translation units: the per-element
// math headers mark their functions NFI_HD so both backends run the same code.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define NFI_HD __host__ __device__ __forceinline__
#else
#define NFI_HD inline
#endif
