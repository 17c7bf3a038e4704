// CPU kernels of nfinpaint::feature_distance (equation 2 of the paper, per
// sample) and feature_distance_backward. Same scheme as composite_l2.cpp:
// fixed chunks per sample under at::parallel_for, vectorisable inner loops over
// the shared math (nfinpaint/loss_math.h), chunk partials added in order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "nfinpaint/loss_inputs.h"
#include "nfinpaint/loss_math.h"
#include "cpu_isa.h"

namespace nfinpaint {
namespace {

constexpr const char* kOp = "nfinpaint::feature_distance";
constexpr const char* kOpBwd = "nfinpaint::feature_distance_backward";
constexpr int64_t kGrainChunks = 4;

#define NFI_CPU_LOOPS "feature_distance_loops.h"
#include "cpu_isa_variants.h"

at::Tensor feature_distance_cpu(const at::Tensor& fake, const at::Tensor& real, const c10::optional<at::Tensor>& weight) {
  const LossInputs in = prepare_loss_inputs(kOp, "fake", "real", "weight", fake, real, weight);
  auto dist = at::empty({in.n}, in.a.options().dtype(loss_accumulate_dtype(in.a.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_cpu", [&] {
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      NFI_CPU_CALL(forward_loop<scalar_t, L>(in, dist));
    });
  });
  return dist;
}

at::Tensor feature_distance_backward_cpu(const at::Tensor& grad_dist, const at::Tensor& fake, const at::Tensor& real,
                                         const c10::optional<at::Tensor>& weight) {
  const LossInputs in = prepare_loss_inputs(kOpBwd, "fake", "real", "weight", fake, real, weight);
  const at::Tensor gd = prepare_sample_grad(kOpBwd, "grad_dist", grad_dist, in);
  auto grad = at::empty(fake.sizes(), in.a.options().memory_format(in.format));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "feature_distance_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_mask_layout(in.layout, [&](auto layout) {
      constexpr MaskLayout L = decltype(layout)::value;
      NFI_CPU_CALL(backward_loop<scalar_t, L>(in, gd.const_data_ptr<acc_t>(), grad));
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CPU, m) {
  m.impl("feature_distance", &feature_distance_cpu);
  m.impl("feature_distance_backward", &feature_distance_backward_cpu);
}

}  // namespace nfinpaint
