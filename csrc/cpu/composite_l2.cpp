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
#include "cpu_isa.h"

namespace nfinpaint {
namespace {

constexpr const char* kOp = "nfinpaint::composite_l2";
constexpr const char* kOpBwd = "nfinpaint::composite_l2_backward";
// Chunks one task takes at least: small batches stay on one thread.
constexpr int64_t kGrainChunks = 4;

#define NFI_CPU_LOOPS "composite_l2_loops.h"
#include "cpu_isa_variants.h"

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
      if constexpr (L != MaskLayout::kNone) {
        NFI_CPU_CALL(forward_loop<scalar_t, L>(in, composite, sq_err, count));
      }
    });
  });
  return {composite, sq_err, count};
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
        if (gcp && gsp)
          NFI_CPU_CALL(backward_loop<scalar_t, L, true, true>(in, gcp, gsp, grad));
        else if (gcp)
          NFI_CPU_CALL(backward_loop<scalar_t, L, true, false>(in, gcp, nullptr, grad));
        else if (gsp)
          NFI_CPU_CALL(backward_loop<scalar_t, L, false, true>(in, nullptr, gsp, grad));
        else
          NFI_CPU_CALL(backward_loop<scalar_t, L, false, false>(in, nullptr, nullptr, grad));
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
