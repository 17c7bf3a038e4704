// CPU kernels of nfinpaint::composite_l2 (forward) and composite_l2_backward.
// One pass each over the data: at::parallel_for over fixed chunks of each
// sample, plain vectorisable inner loops calling the shared per-element math
// (nfinpaint/loss_math.h); per-chunk partial sums added in chunk order, so the
// result is the same for any number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "nfinpaint/loss_inputs.h"
#include "nfinpaint/loss_math.h"

namespace nfinpaint {
namespace {

constexpr const char* kOp = "nfinpaint::composite_l2";
constexpr const char* kOpBwd = "nfinpaint::composite_l2_backward";
// Chunks one task takes at least: small batches stay on one thread.
constexpr int64_t kGrainChunks = 4;

template <typename scalar_t, MaskLayout L>
void forward_loop(const LossInputs& in, at::Tensor& composite, at::Tensor& sq_err, at::Tensor& count) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = (s + kChunk - 1) / kChunk;
  std::vector<acc_t> part_sq(n * nchunk), part_cnt(n * nchunk);
  const scalar_t* g = in.a.const_data_ptr<scalar_t>();
  const scalar_t* t = in.b.const_data_ptr<scalar_t>();
  const scalar_t* m = in.w.const_data_ptr<scalar_t>();
  scalar_t* out = composite.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / nchunk, k = item % nchunk;
      const scalar_t* gs = g + i * s;
      const scalar_t* ts = t + i * s;
      scalar_t* os = out + i * s;
      acc_t sq = 0, cnt = 0;
      for_each_segment<L>(k * kChunk, std::min(s, (k + 1) * kChunk), in.hw, in.c, m + i * in.w_per_sample,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t mc = static_cast<acc_t>(wc);
                            const scalar_t* gp = gs + b;
                            const scalar_t* tp = ts + b;
                            scalar_t* op = os + b;
                            acc_t seg_sq = 0, seg_cnt = 0;
#pragma omp simd reduction(+ : seg_sq, seg_cnt)
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t gv = static_cast<acc_t>(gp[j]);
                              const acc_t tv = static_cast<acc_t>(tp[j]);
                              const acc_t mv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : mc;
                              op[j] = static_cast<scalar_t>(composite_value(gv, tv, mv));
                              seg_sq += masked_sq_err(gv, tv, mv);
                              seg_cnt += mv;
                            }
                            sq += seg_sq;
                            cnt += seg_cnt;
                          });
      part_sq[item] = sq;
      part_cnt[item] = cnt;
    }
  });
  acc_t* sq_out = sq_err.mutable_data_ptr<acc_t>();
  acc_t* cnt_out = count.mutable_data_ptr<acc_t>();
  for (int64_t i = 0; i < n; ++i) {
    double a = 0, c = 0;
    for (int64_t k = 0; k < nchunk; ++k) {
      a += part_sq[i * nchunk + k];
      c += part_cnt[i * nchunk + k];
    }
    sq_out[i] = static_cast<acc_t>(a);
    cnt_out[i] = static_cast<acc_t>(c);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_l2_cpu(const at::Tensor& generated,
                                                                const at::Tensor& target,
                                                                const at::Tensor& mask) {
  const LossInputs in = prepare_loss_inputs(kOp, "generated", "target", "mask", generated, target, mask);
  auto composite = at::empty(generated.sizes(), in.a.options().memory_format(in.format));
  const auto acc_opts = in.a.options().dtype(loss_accumulate_dtype(in.a.scalar_type()));
  auto sq_err = at::empty({in.n}, acc_opts);
  auto count = at::empty({in.n}, acc_opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "composite_l2_cpu", [&] {
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      if constexpr (L != MaskLayout::kNone) forward_loop<scalar_t, L>(in, composite, sq_err, count);
    });
  });
  return {composite, sq_err, count};
}

template <typename scalar_t, MaskLayout L, bool kHasGradComposite>
void backward_loop(const LossInputs& in, const scalar_t* gc, const at::opmath_type<scalar_t>* gsq,
                   at::Tensor& grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = (s + kChunk - 1) / kChunk;
  const scalar_t* g = in.a.const_data_ptr<scalar_t>();
  const scalar_t* t = in.b.const_data_ptr<scalar_t>();
  const scalar_t* m = in.w.const_data_ptr<scalar_t>();
  scalar_t* out = grad.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / nchunk, k = item % nchunk;
      const acc_t gs = gsq ? gsq[i] : acc_t(0);
      const int64_t base = i * s;
      for_each_segment<L>(k * kChunk, std::min(s, (k + 1) * kChunk), in.hw, in.c, m + i * in.w_per_sample,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t mc = static_cast<acc_t>(wc);
                            const scalar_t* gp = g + base + b;
                            const scalar_t* tp = t + base + b;
                            const scalar_t* gcp = kHasGradComposite ? gc + base + b : nullptr;
                            scalar_t* op = out + base + b;
#pragma omp simd
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t mv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : mc;
                              const acc_t gcv = kHasGradComposite ? static_cast<acc_t>(gcp[j]) : acc_t(0);
                              op[j] = static_cast<scalar_t>(composite_l2_grad(
                                  gcv, gs, static_cast<acc_t>(gp[j]), static_cast<acc_t>(tp[j]), mv));
                            }
                          });
    }
  });
}

at::Tensor composite_l2_backward_cpu(const c10::optional<at::Tensor>& grad_composite,
                                     const c10::optional<at::Tensor>& grad_sq_err, const at::Tensor& generated,
                                     const at::Tensor& target, const at::Tensor& mask) {
  const LossInputs in = prepare_loss_inputs(kOpBwd, "generated", "target", "mask", generated, target, mask);
  at::Tensor gc, gsq;
  if (grad_composite.has_value() && grad_composite->defined()) {
    TORCH_CHECK(grad_composite->sizes() == generated.sizes() && grad_composite->scalar_type() == generated.scalar_type(),
                kOpBwd, ": expected grad_composite of the shape and dtype of generated ", shape_str(generated), " ",
                generated.scalar_type(), ", got ", shape_str(*grad_composite), " ", grad_composite->scalar_type());
    gc = grad_composite->contiguous(in.format);
  }
  if (grad_sq_err.has_value() && grad_sq_err->defined()) gsq = prepare_sample_grad(kOpBwd, "grad_sq_err", *grad_sq_err, in);
  auto grad = at::empty(generated.sizes(), in.a.options().memory_format(in.format));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "composite_l2_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gcp = gc.defined() ? gc.const_data_ptr<scalar_t>() : nullptr;
    const acc_t* gsp = gsq.defined() ? gsq.const_data_ptr<acc_t>() : nullptr;
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      if constexpr (L != MaskLayout::kNone) {
        if (gcp)
          backward_loop<scalar_t, L, true>(in, gcp, gsp, grad);
        else
          backward_loop<scalar_t, L, false>(in, nullptr, gsp, grad);
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CPU, m) {
  m.impl("composite_l2", &composite_l2_cpu);
  m.impl("composite_l2_backward", &composite_l2_backward_cpu);
}

}  // namespace nfinpaint
