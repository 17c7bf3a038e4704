// Host-side pieces of the fused losses exposed as small ops, so Python shares
// one definition with the kernels:
// - _check_loss_inputs: the input rules of prepare_loss_inputs() (loss_inputs.h),
//   which nfinpaint/ops.py's fake kernels run on meta copies of their inputs;
// - _loss_launch_plan, _loss_chunk: the CUDA launch plan (loss_launch.h) and the
//   chunk mapping (loss_math.h), computed by the CPU build so the CPU tests check
//   them, at sizes over 2^31 elements without allocating them.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "nfinpaint/loss_inputs.h"
#include "nfinpaint/loss_launch.h"
#include "nfinpaint/loss_math.h"

namespace nfinpaint {
namespace {

void check_loss_inputs(c10::string_view op, c10::string_view a_name, c10::string_view b_name, c10::string_view w_name,
                       const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& w) {
  const std::string o(op), an(a_name), bn(b_name), wn(w_name);
  prepare_loss_inputs(o.c_str(), an.c_str(), bn.c_str(), wn.c_str(), a, b, w);
}

// [nchunk, blocks, vec] for n samples of s elements of elem_size bytes at the given addresses.
std::vector<int64_t> loss_launch_plan_op(int64_t n, int64_t s, int64_t elem_size, std::vector<int64_t> addresses) {
  std::vector<const void*> ptrs;
  for (const int64_t a : addresses) ptrs.push_back(reinterpret_cast<const void*>(static_cast<uintptr_t>(a)));
  const LaunchPlan plan = loss_launch_plan("nfinpaint::_loss_launch_plan", n, s, elem_size, ptrs);
  return {plan.nchunk, plan.blocks, plan.vec ? 1 : 0};
}

// [sample, begin, len, base] of work item `item` (chunk_at), and the chunk count.
std::vector<int64_t> loss_chunk_op(int64_t item, int64_t n, int64_t s, int64_t chunk) {
  // chunk_count divides by chunk: a 0 here was a SIGFPE that killed the process
  TORCH_CHECK(chunk > 0 && n >= 0 && s >= 0, "nfinpaint::_loss_chunk: need chunk > 0, n >= 0, s >= 0, got chunk ",
              chunk, ", n ", n, ", s ", s);
  const int64_t nchunk = chunk_count(s, chunk);
  TORCH_CHECK(item >= 0 && item < n * nchunk, "nfinpaint::_loss_chunk: item ", item, " out of range");
  const Chunk c = chunk_at(item, nchunk, s, chunk);
  return {c.sample, c.begin, c.len, c.base, nchunk};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(nfinpaint, m) {
  m.def("_check_loss_inputs(str op, str a_name, str b_name, str w_name, Tensor a, Tensor b, Tensor? w) -> ()");
  m.def("_loss_launch_plan(int n, int s, int elem_size, int[] addresses) -> int[]", &loss_launch_plan_op);
  m.def("_loss_chunk(int item, int n, int s, int chunk) -> int[]", &loss_chunk_op);
}

TORCH_LIBRARY_IMPL(nfinpaint, CompositeExplicitAutograd, m) {
  m.impl("_check_loss_inputs", &check_loss_inputs);
}

}  // namespace nfinpaint
