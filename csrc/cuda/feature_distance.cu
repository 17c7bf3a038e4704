// CUDA kernels of nfinpaint::feature_distance (equation 2, per sample) and
// feature_distance_backward. Same scheme as composite_l2.cu: one pass with
// vector loads and a block reduction into per-chunk partials, a tiny second
// kernel adding each sample's partials in order (deterministic); backward one
// elementwise pass. The math is the shared nfinpaint/loss_math.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
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
  const Chunk ch = chunk_at(item, nchunk, s, kCudaChunk);
  const int64_t i = ch.sample, begin = ch.begin, len = ch.len, base = ch.base;
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
  const Chunk ch = chunk_at(item, nchunk, s, kCudaChunk);
  const int64_t i = ch.sample, begin = ch.begin, len = ch.len, base = ch.base;
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

at::Tensor feature_distance_cuda(const at::Tensor& fake, const at::Tensor& real, const c10::optional<at::Tensor>& weight) {
  check_one_cuda_device(kOp, {{"fake", &fake}, {"real", &real}, {"weight", opt_ptr(weight)}});
  const c10::cuda::CUDAGuard guard(fake.device());
  const LossInputs in = prepare_loss_inputs(kOp, "fake", "real", "weight", fake, real, weight);
  const auto acc_opts = in.a.options().dtype(loss_accumulate_dtype(in.a.scalar_type()));
  auto dist = at::zeros({in.n}, acc_opts);
  if (in.n * in.s == 0) return dist;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = in.a.const_data_ptr<scalar_t>();
    const scalar_t* r = in.b.const_data_ptr<scalar_t>();
    const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
    const LaunchPlan plan = loss_launch_plan(kOp, in.n, in.s, sizeof(scalar_t),
                                             {f, r, in.layout == MaskLayout::kFull ? w : nullptr});
    auto part = at::empty({plan.blocks}, acc_opts);
    acc_t* pp = part.mutable_data_ptr<acc_t>();
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      launch_chunks(plan, feature_distance_forward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>,
                    feature_distance_forward_kernel<scalar_t, L, 1>, f, r, w, pp, in.s, in.hw, in.c,
                    in.w_per_sample, plan.nchunk);
    });
    launch_sum_chunks<acc_t>(part.const_data_ptr<acc_t>(), in.n, plan.nchunk, in.n,
                             dist.mutable_data_ptr<acc_t>(), nullptr);
  });
  return dist;
}

at::Tensor feature_distance_backward_cuda(const at::Tensor& grad_dist, const at::Tensor& fake, const at::Tensor& real,
                                          const c10::optional<at::Tensor>& weight) {
  check_one_cuda_device(kOpBwd,
                        {{"grad_dist", &grad_dist}, {"fake", &fake}, {"real", &real}, {"weight", opt_ptr(weight)}});
  const c10::cuda::CUDAGuard guard(fake.device());
  const LossInputs in = prepare_loss_inputs(kOpBwd, "fake", "real", "weight", fake, real, weight);
  const at::Tensor gd = prepare_sample_grad(kOpBwd, "grad_dist", grad_dist, in);
  auto grad = at::empty(fake.sizes(), in.a.options().memory_format(in.format));
  if (in.n * in.s == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = in.a.const_data_ptr<scalar_t>();
    const scalar_t* r = in.b.const_data_ptr<scalar_t>();
    const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = grad.mutable_data_ptr<scalar_t>();
    const LaunchPlan plan = loss_launch_plan(kOpBwd, in.n, in.s, sizeof(scalar_t),
                                             {f, r, out, in.layout == MaskLayout::kFull ? w : nullptr});
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      launch_chunks(plan, feature_distance_backward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>,
                    feature_distance_backward_kernel<scalar_t, L, 1>, gd.const_data_ptr<acc_t>(), f, r, w, out,
                    in.s, in.hw, in.c, in.w_per_sample, plan.nchunk);
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
