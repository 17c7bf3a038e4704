// nfinpaint::biharmonic_cg on the CPU: each (image, channel) plane is an independent system, solved
// start to end by one thread (at::parallel_for over planes), in cache, by the loops of
// biharmonic_loops.h. The tensor version (nfinpaint/initial_fill.py) makes ~25 operator calls a step,
// each a pass over memory; this makes six passes a step over a plane in cache, and no calls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "nfinpaint/biharmonic.h"
#include "nfinpaint/biharmonic_inputs.h"
#include "cpu_isa.h"

namespace nfinpaint::biharmonic {
namespace {

#define NFI_CPU_LOOPS "biharmonic_loops.h"
#include "cpu_isa_variants.h"

at::Tensor biharmonic_cg_cpu(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
  check_inputs(x, mask, iterations);
  auto out = x.clone(at::MemoryFormat::Contiguous);   // one copy, whatever the strides
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
