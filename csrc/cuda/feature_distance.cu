// CUDA kernels of nfinpaint::feature_distance (equation 2, per sample) and
// feature_distance_backward. Same scheme as composite_l2.cu: one pass with
// vector loads and a block reduction into per-chunk partials, a tiny second
// kernel adding each sample's partials in order (deterministic); backward one
// elementwise pass. The math is the shared nfinpaint/loss_math.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: that needs cuSPARSE/cuBLAS headers
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "nfinpaint/loss_cuda.cuh"
#include "nfinpaint/loss_inputs.h"
#include "nfinpaint/loss_math.h"

namespace nfinpaint {
namespace {

constexpr const char* kOp = "nfinpaint::feature_distance";
constexpr const char* kOpBwd = "nfinpaint::feature_distance_backward";

template <typename scalar_t, MaskLayout L, int VEC>
__global__ void __launch_bounds__(kThreads)
    feature_distance_forward_kernel(const scalar_t* __restrict__ f, const scalar_t* __restrict__ r,
                                    const scalar_t* __restrict__ w, at::opmath_type<scalar_t>* __restrict__ part,
                                    int64_t s, int64_t hw, int64_t c, int64_t w_per_sample, int64_t nchunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = blockIdx.x;
  const int64_t i = item / nchunk;
  const int64_t begin = (item % nchunk) * kCudaChunk;
  const int64_t len = s - begin < kCudaChunk ? s - begin : kCudaChunk;
  const int64_t base = i * s + begin;
  const scalar_t* ws = w + i * w_per_sample;
  acc_t sum = 0;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < len; j += kThreads * VEC) {
    acc_t fv[VEC], rv[VEC], wv[VEC];
    load_vec<VEC>(f + base + j, fv);
    load_vec<VEC>(r + base + j, rv);
    load_weights<L, VEC>(ws, begin + j, hw, c, wv);
#pragma unroll
    for (int e = 0; e < VEC; ++e) sum += weighted_sq_diff(fv[e], rv[e], wv[e]);
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) part[item] = sum;
}

template <typename scalar_t, MaskLayout L, int VEC>
__global__ void __launch_bounds__(kThreads)
    feature_distance_backward_kernel(const at::opmath_type<scalar_t>* __restrict__ gd, const scalar_t* __restrict__ f,
                                     const scalar_t* __restrict__ r, const scalar_t* __restrict__ w,
                                     scalar_t* __restrict__ out, int64_t s, int64_t hw, int64_t c,
                                     int64_t w_per_sample, int64_t nchunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = blockIdx.x;
  const int64_t i = item / nchunk;
  const int64_t begin = (item % nchunk) * kCudaChunk;
  const int64_t len = s - begin < kCudaChunk ? s - begin : kCudaChunk;
  const int64_t base = i * s + begin;
  const scalar_t* ws = w + i * w_per_sample;
  const acc_t gdv = gd[i];
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < len; j += kThreads * VEC) {
    acc_t fv[VEC], rv[VEC], wv[VEC], ov[VEC];
    load_vec<VEC>(f + base + j, fv);
    load_vec<VEC>(r + base + j, rv);
    load_weights<L, VEC>(ws, begin + j, hw, c, wv);
#pragma unroll
    for (int e = 0; e < VEC; ++e) ov[e] = feature_distance_grad(gdv, fv[e], rv[e], wv[e]);
    store_vec<VEC>(out + base + j, ov);
  }
}

template <typename scalar_t>
bool can_vectorise(const LossInputs& in, std::initializer_list<const void*> ptrs) {
  constexpr int vec = 16 / sizeof(scalar_t);
  if (in.s % vec != 0) return false;
  for (const void* p : ptrs)
    if (p != nullptr && !is_aligned(p, 16)) return false;
  return true;
}

at::Tensor feature_distance_cuda(const at::Tensor& fake, const at::Tensor& real, const c10::optional<at::Tensor>& weight) {
  const c10::cuda::CUDAGuard guard(fake.device());
  const LossInputs in = prepare_loss_inputs(kOp, "fake", "real", "weight", fake, real, weight);
  const auto acc_opts = in.a.options().dtype(loss_accumulate_dtype(in.a.scalar_type()));
  auto dist = at::zeros({in.n}, acc_opts);
  const int64_t nchunk = (in.s + kCudaChunk - 1) / kCudaChunk;
  if (in.n * nchunk == 0) return dist;
  TORCH_CHECK(in.n * nchunk < (int64_t{1} << 31), kOp, ": input too large (", in.n * nchunk, " blocks)");
  auto part = at::empty({in.n * nchunk}, acc_opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = in.a.const_data_ptr<scalar_t>();
    const scalar_t* r = in.b.const_data_ptr<scalar_t>();
    const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
    const bool vec = can_vectorise<scalar_t>(in, {f, r, in.layout == MaskLayout::kFull ? w : nullptr});
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      auto launch = [&](auto kernel) {
        kernel<<<in.n * nchunk, kThreads, 0, stream>>>(f, r, w, part.mutable_data_ptr<acc_t>(), in.s, in.hw, in.c,
                                                       in.w_per_sample, nchunk);
      };
      if (vec)
        launch(feature_distance_forward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>);
      else
        launch(feature_distance_forward_kernel<scalar_t, L, 1>);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    sum_chunks_kernel<acc_t><<<(in.n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        part.const_data_ptr<acc_t>(), in.n, nchunk, in.n, dist.mutable_data_ptr<acc_t>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dist;
}

at::Tensor feature_distance_backward_cuda(const at::Tensor& grad_dist, const at::Tensor& fake, const at::Tensor& real,
                                          const c10::optional<at::Tensor>& weight) {
  const c10::cuda::CUDAGuard guard(fake.device());
  const LossInputs in = prepare_loss_inputs(kOpBwd, "fake", "real", "weight", fake, real, weight);
  const at::Tensor gd = prepare_sample_grad(kOpBwd, "grad_dist", grad_dist, in);
  auto grad = at::empty(fake.sizes(), in.a.options().memory_format(in.format));
  const int64_t nchunk = (in.s + kCudaChunk - 1) / kCudaChunk;
  if (in.n * nchunk == 0) return grad;
  TORCH_CHECK(in.n * nchunk < (int64_t{1} << 31), kOpBwd, ": input too large (", in.n * nchunk, " blocks)");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = in.a.const_data_ptr<scalar_t>();
    const scalar_t* r = in.b.const_data_ptr<scalar_t>();
    const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = grad.mutable_data_ptr<scalar_t>();
    const bool vec = can_vectorise<scalar_t>(in, {f, r, out, in.layout == MaskLayout::kFull ? w : nullptr});
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      auto launch = [&](auto kernel) {
        kernel<<<in.n * nchunk, kThreads, 0, stream>>>(gd.const_data_ptr<acc_t>(), f, r, w, out, in.s, in.hw, in.c,
                                                       in.w_per_sample, nchunk);
      };
      if (vec)
        launch(feature_distance_backward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>);
      else
        launch(feature_distance_backward_kernel<scalar_t, L, 1>);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CUDA, m) {
  m.impl("feature_distance", &feature_distance_cuda);
  m.impl("feature_distance_backward", &feature_distance_backward_cuda);
}

}  // namespace nfinpaint
