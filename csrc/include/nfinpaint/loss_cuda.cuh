#pragma once
// CUDA building blocks of the fused-loss kernels (csrc/cuda/composite_l2.cu,
// feature_distance.cu): vector loads, a deterministic block sum, and the tiny
// second pass that adds each sample's chunk partials in order.
// What stays CUDA-only, and so is covered by the GPU tests alone: the vector
// loads/stores, the warp-shuffle block sum and the launches. The chunk mapping,
// the second-pass sum and the launch plan are shared with the CPU build
// (loss_math.h, loss_launch.h).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: that needs cuSPARSE/cuBLAS headers

#include <cstdint>

#include "nfinpaint/loss_launch.h"
#include "nfinpaint/loss_math.h"

namespace nfinpaint {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// VEC elements at p into float/double registers; VEC > 1 needs p aligned to sizeof(T)*VEC.
template <int VEC, typename T, typename A>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, A (&out)[VEC]) {
  if constexpr (VEC == 1) {
    out[0] = static_cast<A>(p[0]);
  } else {
    const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p);
#pragma unroll
    for (int e = 0; e < VEC; ++e) out[e] = static_cast<A>(pk.v[e]);
  }
}

template <int VEC, typename T, typename A>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const A (&in)[VEC]) {
  if constexpr (VEC == 1) {
    p[0] = static_cast<T>(in[0]);
  } else {
    Pack<T, VEC> pk;
#pragma unroll
    for (int e = 0; e < VEC; ++e) pk.v[e] = static_cast<T>(in[e]);
    *reinterpret_cast<Pack<T, VEC>*>(p) = pk;
  }
}

// Weights of the VEC elements starting at flat index i of a sample whose
// weights start at w (layout L; w unused for kNone).
template <MaskLayout L, int VEC, typename T, typename A>
__device__ __forceinline__ void load_weights(const T* __restrict__ w, int64_t i, int64_t hw, int64_t c,
                                             A (&out)[VEC]) {
  if constexpr (L == MaskLayout::kNone) {
#pragma unroll
    for (int e = 0; e < VEC; ++e) out[e] = A(1);
  } else if constexpr (L == MaskLayout::kFull) {
    load_vec<VEC>(w + i, out);
  } else {
#pragma unroll
    for (int e = 0; e < VEC; ++e) out[e] = static_cast<A>(w[mask_index<L>(i + e, hw, c)]);
  }
}

template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
  return x;
}

// Sum of x over the block, valid in thread 0; a fixed tree, so deterministic.
// May be called several times in a row (the leading barrier protects the scratch).
template <typename A>
__device__ __forceinline__ A block_sum(A x) {
  __shared__ A warp_sums[kThreads / 32];
  __syncthreads();
  x = warp_sum(x);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = x;
  __syncthreads();
  x = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : A(0);
  if (warp == 0) x = warp_sum(x);
  return x;
}

// Second pass: one block a row r of `rows`. Each thread adds every kThreads-th
// partial of the row in double, then block_sum's fixed tree adds the threads'
// sums: deterministic, and nchunk / kThreads dependent adds a thread instead of
// nchunk (one thread a row took 259,200 for a 4K input). The row's sum goes to
// out_a[r] for r < split, else out_b[r - split]. The CPU adds its partials in
// chunk order (sum_chunk_partials), but of kChunk-element chunks, not
// kCudaChunk: the partials differ, and the two agree to float32 rounding.
template <typename A>
__global__ void sum_chunks_kernel(const A* __restrict__ part, int64_t nchunk, int64_t split,
                                  A* __restrict__ out_a, A* __restrict__ out_b) {
  const int64_t r = blockIdx.x;
  double s = 0;
  for (int64_t k = threadIdx.x; k < nchunk; k += kThreads) s += static_cast<double>(part[r * nchunk + k]);
  s = block_sum(s);
  if (threadIdx.x == 0) {
    if (r < split)
      out_a[r] = static_cast<A>(s);
    else
      out_b[r - split] = static_cast<A>(s);
  }
}

// Launch one block a chunk, with the vector-load kernel when the plan allows,
// on the current stream (a kernel on the default stream gave wrong results
// under torch.compile's CUDA graphs).
template <typename KernelVec, typename KernelScalar, typename... Args>
void launch_chunks(const LaunchPlan& plan, KernelVec vec_kernel, KernelScalar scalar_kernel, Args... args) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (plan.vec)
    vec_kernel<<<plan.blocks, kThreads, 0, stream>>>(args...);
  else
    scalar_kernel<<<plan.blocks, kThreads, 0, stream>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename A>
void launch_sum_chunks(const A* part, int64_t rows, int64_t nchunk, int64_t split, A* out_a, A* out_b) {
  TORCH_CHECK(rows < (int64_t{1} << 31), "nfinpaint: ", rows, " per-sample sums exceed the CUDA grid limit; split the batch");
  sum_chunks_kernel<A><<<static_cast<unsigned int>(rows), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      part, nchunk, split, out_a, out_b);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace nfinpaint
