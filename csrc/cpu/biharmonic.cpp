// nfinpaint::biharmonic_cg on the CPU: each (image, channel) plane is an independent system, solved
// start to end by one thread (at::parallel_for over planes), in cache, by the loops of
// biharmonic_loops.h. The tensor version (nfinpaint/initial_fill.py) makes ~25 operator calls a step,
// each a pass over memory; this makes four passes a step and no calls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "nfinpaint/biharmonic.h"
#include "cpu_isa.h"

namespace nfinpaint::biharmonic {
namespace {

constexpr const char* kOp = "nfinpaint::biharmonic_cg";

#define NFI_CPU_LOOPS "biharmonic_loops.h"
#include "cpu_isa_variants.h"

at::Tensor biharmonic_cg_cpu(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
  TORCH_CHECK(x.dim() == 4, kOp, ": expected x of shape (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(mask.dim() == 4 && mask.size(0) == x.size(0) && mask.size(1) == 1 && mask.size(2) == x.size(2) &&
                  mask.size(3) == x.size(3),
              kOp, ": expected mask of shape (N, 1, H, W) = (", x.size(0), ", 1, ", x.size(2), ", ", x.size(3),
              ") to match x ", x.sizes(), ", got ", mask.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && mask.scalar_type() == at::kFloat, kOp,
              ": expected float32 x and mask, got ", x.scalar_type(), " and ", mask.scalar_type());
  TORCH_CHECK(x.device() == mask.device(), kOp, ": expected x and mask on one device, got ", x.device(), " and ",
              mask.device());
  TORCH_CHECK(iterations >= 0, kOp, ": iterations must be >= 0, got ", iterations);
  auto out = x.contiguous().clone();
  const auto m = mask.contiguous();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), hw = h * w;
  if (out.numel() == 0) return out;
  float* xp = out.data_ptr<float>();
  const float* mp = m.const_data_ptr<float>();
  at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> work(static_cast<size_t>(4 * hw));
    for (int64_t plane = begin; plane < end; ++plane) {
      NFI_CPU_CALL(solve_plane(xp + plane * hw, mp + (plane / c) * hw, h, w, iterations, work.data()));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CPU, m) { m.impl("biharmonic_cg", &biharmonic_cg_cpu); }

}  // namespace nfinpaint::biharmonic
