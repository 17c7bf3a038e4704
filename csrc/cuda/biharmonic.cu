// nfinpaint::biharmonic_cg on CUDA: one block per (image, channel) plane runs that plane's conjugate gradients
// start to end, the passes of a step separated by __syncthreads and the dot products summed in float64 by a
// fixed warp-shuffle tree. The per-pixel math is the CPU loops' (nfinpaint/biharmonic.h), and nvcc builds
// with --fmad=false, so every float32 value rounds as on the CPU; only the order in which the float64 dot
// products add differs. One launch replaces the tensor steps' ~25 launches a step (thousands a window).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "nfinpaint/biharmonic.h"
#include "nfinpaint/biharmonic_inputs.h"

namespace nfinpaint::biharmonic {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

// The block's sum of every thread's `value`, returned to every thread. `shared` holds kWarps + 1 doubles;
// the trailing barrier lets the next call reuse it.
__device__ double block_sum(double value, double* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w) total += shared[w];
    shared[kWarps] = total;
  }
  __syncthreads();
  const double total = shared[kWarps];
  __syncthreads();
  return total;
}

// L(v) at flat index i of an (h, w) plane, borders replicated.
__device__ __forceinline__ float laplacian_at(const float* v, int64_t i, int64_t h, int64_t w) {
  const int64_t y = i / w, x = i - y * w;
  return laplacian5(v[clamped(y, -1, h) * w + x], v[clamped(y, 1, h) * w + x], v[y * w + clamped(x, -1, w)],
                    v[y * w + clamped(x, 1, w)], v[i]);
}

__global__ void __launch_bounds__(kThreads) solve_planes(float* x, const float* mask, float* work, int64_t channels,
                                                         int64_t h, int64_t w, int64_t iterations) {
  __shared__ double shared[kWarps + 1];
  const int64_t n = h * w, plane = blockIdx.x;
  float* xp = x + plane * n;
  const float* m = mask + (plane / channels) * n;
  float* r = work + plane * 4 * n;
  float* p = r + n;
  float* t = p + n;
  float* ap = t + n;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) t[i] = laplacian_at(xp, i, h, w);
  __syncthreads();
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {     // residual of L L x = 0 in the hole
    const float ri = -laplacian_at(t, i, h, w) * m[i];
    r[i] = ri;
    p[i] = ri;
    part += static_cast<double>(ri * ri);
  }
  double rs = block_sum(part, shared);
  const double rs_first = rs;
  for (int64_t step = 0; step < iterations; ++step) {
    for (int64_t i = threadIdx.x; i < n; i += kThreads) ap[i] = p[i] * m[i];     // ap = P L L P p
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kThreads) t[i] = laplacian_at(ap, i, h, w);
    __syncthreads();
    part = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const float a = laplacian_at(t, i, h, w) * m[i];
      ap[i] = a;
      part += static_cast<double>(p[i] * a);
    }
    const double pap = block_sum(part, shared);
    if (converged(rs, rs_first, pap)) return;     // the same values in every thread: the whole block leaves
    const float alpha = step_ratio(rs, pap);
    part = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      xp[i] = xp[i] + alpha * p[i];
      const float ri = r[i] - alpha * ap[i];
      r[i] = ri;
      part += static_cast<double>(ri * ri);
    }
    const double rs_new = block_sum(part, shared);
    const float beta = step_ratio(rs_new, rs);
    for (int64_t i = threadIdx.x; i < n; i += kThreads) p[i] = r[i] + beta * p[i];
    __syncthreads();
    rs = rs_new;
  }
}

at::Tensor biharmonic_cg_cuda(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
  check_inputs(x, mask, iterations);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = x.clone(at::MemoryFormat::Contiguous);
  const auto m = mask.contiguous();
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  if (out.numel() == 0 || iterations == 0) return out;
  TORCH_CHECK(planes <= std::numeric_limits<int32_t>::max(), kOp, ": too many planes (", planes, ")");
  auto work = at::empty({planes, 4, h, w}, out.options());
  solve_planes<<<static_cast<unsigned int>(planes), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      out.data_ptr<float>(), m.const_data_ptr<float>(), work.data_ptr<float>(), x.size(1), h, w, iterations);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CUDA, m) { m.impl("biharmonic_cg", &biharmonic_cg_cuda); }

}  // namespace nfinpaint::biharmonic
