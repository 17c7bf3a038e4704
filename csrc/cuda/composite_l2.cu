// CUDA kernels of nfinpaint::composite_l2 and composite_l2_backward.
// Forward: one pass; each block covers one chunk of one sample, writes the
// composite with vector stores and leaves its block-reduced partial sums in a
// buffer; a tiny second kernel adds each sample's partials in chunk order
// (deterministic, no atomics). Backward: one elementwise pass. The math is the
// shared nfinpaint/loss_math.h the CPU kernels run.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "nfinpaint/loss_cuda.cuh"
#include "nfinpaint/loss_inputs.h"
#include "nfinpaint/loss_math.h"

namespace nfinpaint {
namespace {

constexpr const char* kOp = "nfinpaint::composite_l2";
constexpr const char* kOpBwd = "nfinpaint::composite_l2_backward";

template <typename scalar_t, MaskLayout L, int VEC>
__global__ void __launch_bounds__(kThreads)
    composite_l2_forward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ t,
                                const scalar_t* __restrict__ m, scalar_t* __restrict__ out,
                                at::opmath_type<scalar_t>* __restrict__ part, int64_t n, int64_t s, int64_t hw,
                                int64_t c, int64_t m_per_sample, int64_t nchunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = blockIdx.x;
  const Chunk ch = chunk_at(item, nchunk, s, kCudaChunk);
  const int64_t i = ch.sample, begin = ch.begin, len = ch.len, base = ch.base;
  const scalar_t* ms = m + i * m_per_sample;
  acc_t sq = 0, cnt = 0;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < len; j += kThreads * VEC) {
    acc_t gv[VEC], tv[VEC], mv[VEC], ov[VEC];
    load_vec<VEC>(g + base + j, gv);
    load_vec<VEC>(t + base + j, tv);
    load_weights<L, VEC>(ms, begin + j, hw, c, mv);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      ov[e] = composite_value(gv[e], tv[e], mv[e]);
      sq += masked_sq_err(gv[e], tv[e], mv[e]);
      cnt += mv[e];
    }
    store_vec<VEC>(out + base + j, ov);
  }
  sq = block_sum(sq);
  cnt = block_sum(cnt);
  if (threadIdx.x == 0) {
    part[item] = sq;               // rows 0..n-1: squared error
    part[n * nchunk + item] = cnt;  // rows n..2n-1: hole count
  }
}

template <typename scalar_t, MaskLayout L, int VEC>
__global__ void __launch_bounds__(kThreads)
    composite_l2_backward_kernel(const scalar_t* __restrict__ gc, const at::opmath_type<scalar_t>* __restrict__ gsq,
                                 const scalar_t* __restrict__ g, const scalar_t* __restrict__ t,
                                 const scalar_t* __restrict__ m, scalar_t* __restrict__ out, int64_t s, int64_t hw,
                                 int64_t c, int64_t m_per_sample, int64_t nchunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = blockIdx.x;
  const Chunk ch = chunk_at(item, nchunk, s, kCudaChunk);
  const int64_t i = ch.sample, begin = ch.begin, len = ch.len, base = ch.base;
  const scalar_t* ms = m + i * m_per_sample;
  const acc_t gs = gsq != nullptr ? gsq[i] : acc_t(0);
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < len; j += kThreads * VEC) {
    acc_t gv[VEC], tv[VEC], mv[VEC], gcv[VEC], ov[VEC];
    load_vec<VEC>(g + base + j, gv);
    load_vec<VEC>(t + base + j, tv);
    load_weights<L, VEC>(ms, begin + j, hw, c, mv);
    if (gc != nullptr) {
      load_vec<VEC>(gc + base + j, gcv);
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) gcv[e] = acc_t(0);
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e)
      ov[e] = gsq != nullptr ? composite_l2_grad(gcv[e], gs, gv[e], tv[e], mv[e]) : composite_grad(gcv[e], mv[e]);
    store_vec<VEC>(out + base + j, ov);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_l2_cuda(const at::Tensor& generated,
                                                                 const at::Tensor& target,
                                                                 const at::Tensor& mask) {
  check_one_cuda_device(kOp, {{"generated", &generated}, {"target", &target}, {"mask", &mask}});
  const c10::cuda::CUDAGuard guard(generated.device());
  const LossInputs in = prepare_loss_inputs(kOp, "generated", "target", "mask", generated, target, mask);
  auto composite = at::empty(generated.sizes(), in.a.options().memory_format(in.format));
  const auto acc_opts = in.a.options().dtype(loss_accumulate_dtype(in.a.scalar_type()));
  auto sq_err = at::zeros({in.n}, acc_opts);
  auto count = at::zeros({in.n}, acc_opts);
  if (in.n * in.s == 0) return {composite, sq_err, count};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "composite_l2_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = in.a.const_data_ptr<scalar_t>();
    const scalar_t* t = in.b.const_data_ptr<scalar_t>();
    const scalar_t* m = in.w.const_data_ptr<scalar_t>();
    scalar_t* out = composite.mutable_data_ptr<scalar_t>();
    const LaunchPlan plan = loss_launch_plan(kOp, in.n, in.s, sizeof(scalar_t),
                                             {g, t, out, in.layout == MaskLayout::kFull ? m : nullptr});
    auto part = at::empty({2 * plan.blocks}, acc_opts);
    acc_t* pp = part.mutable_data_ptr<acc_t>();
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      if constexpr (L != MaskLayout::kNone) {
        launch_chunks(plan, composite_l2_forward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>,
                      composite_l2_forward_kernel<scalar_t, L, 1>, g, t, m, out, pp, in.n, in.s, in.hw, in.c,
                      in.w_per_sample, plan.nchunk);
      }
    });
    // rows 0..n-1 of the partials: squared error; rows n..2n-1: hole count
    launch_sum_chunks<acc_t>(part.const_data_ptr<acc_t>(), 2 * in.n, plan.nchunk, in.n,
                             sq_err.mutable_data_ptr<acc_t>(), count.mutable_data_ptr<acc_t>());
  });
  return {composite, sq_err, count};
}

at::Tensor composite_l2_backward_cuda(const c10::optional<at::Tensor>& grad_composite,
                                      const c10::optional<at::Tensor>& grad_sq_err, const at::Tensor& generated,
                                      const at::Tensor& target, const at::Tensor& mask) {
  check_one_cuda_device(kOpBwd, {{"grad_composite", opt_ptr(grad_composite)}, {"grad_sq_err", opt_ptr(grad_sq_err)},
                                 {"generated", &generated}, {"target", &target}, {"mask", &mask}});
  const c10::cuda::CUDAGuard guard(generated.device());
  const LossInputs in = prepare_loss_inputs(kOpBwd, "generated", "target", "mask", generated, target, mask);
  at::Tensor gc, gsq;
  if (grad_composite.has_value() && grad_composite->defined()) {
    TORCH_CHECK(grad_composite->sizes() == generated.sizes() && grad_composite->scalar_type() == generated.scalar_type(),
                kOpBwd, ": expected grad_composite of the shape and dtype of generated ", shape_str(generated), " ",
                generated.scalar_type(), ", got ", shape_str(*grad_composite), " ", grad_composite->scalar_type());
    TORCH_CHECK(grad_composite->device() == generated.device(), kOpBwd, ": expected grad_composite on ",
                generated.device(), ", got ", grad_composite->device());
    gc = grad_composite->contiguous(in.format);
  }
  if (grad_sq_err.has_value() && grad_sq_err->defined()) gsq = prepare_sample_grad(kOpBwd, "grad_sq_err", *grad_sq_err, in);
  auto grad = at::empty(generated.sizes(), in.a.options().memory_format(in.format));
  if (in.n * in.s == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "composite_l2_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gcp = gc.defined() ? gc.const_data_ptr<scalar_t>() : nullptr;
    const acc_t* gsp = gsq.defined() ? gsq.const_data_ptr<acc_t>() : nullptr;
    const scalar_t* g = in.a.const_data_ptr<scalar_t>();
    const scalar_t* t = in.b.const_data_ptr<scalar_t>();
    const scalar_t* m = in.w.const_data_ptr<scalar_t>();
    scalar_t* out = grad.mutable_data_ptr<scalar_t>();
    const LaunchPlan plan = loss_launch_plan(kOpBwd, in.n, in.s, sizeof(scalar_t),
                                             {g, t, out, gcp, in.layout == MaskLayout::kFull ? m : nullptr});
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      if constexpr (L != MaskLayout::kNone) {
        launch_chunks(plan, composite_l2_backward_kernel<scalar_t, L, 16 / sizeof(scalar_t)>,
                      composite_l2_backward_kernel<scalar_t, L, 1>, gcp, gsp, g, t, m, out, in.s, in.hw, in.c,
                      in.w_per_sample, plan.nchunk);
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CUDA, m) {
  m.impl("composite_l2", &composite_l2_cuda);
  m.impl("composite_l2_backward", &composite_l2_backward_cuda);
}

}  // namespace nfinpaint
