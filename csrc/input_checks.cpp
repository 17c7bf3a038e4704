// The input rules of the smooth fill's solver and of PatchMatch exposed as small ops, so that the fake
// kernels (nfinpaint/initial_fill.py, nfinpaint/patchmatch.py) run the kernels' own checks on meta copies
// of their inputs and refuse a call in the kernel's words (loss_host.cpp does the same for the losses).
// CompositeExplicitAutograd: they run on meta tensors and read nothing but shapes, dtypes and devices.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "nfinpaint/biharmonic_inputs.h"
#include "nfinpaint/patchmatch.h"

namespace nfinpaint {
namespace {

void check_biharmonic(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
  biharmonic::check_inputs(x, mask, iterations);
}

void check_nnf(const at::Tensor& target, const at::Tensor& source, const at::Tensor& source_allowed,
               const at::Tensor& active, const std::optional<at::Tensor>& init_field, int64_t patch_size,
               int64_t iterations) {
  patchmatch::check_nnf(target, source, source_allowed, active, init_field, patch_size, iterations);
}

void check_vote(const at::Tensor& image, const at::Tensor& field, const at::Tensor& weight, const at::Tensor& hole,
                int64_t patch_size) {
  patchmatch::check_vote(image, field, weight, hole, patch_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CompositeExplicitAutograd, m) {
  m.impl("_check_biharmonic_inputs", &check_biharmonic);
  m.impl("_check_patchmatch_nnf_inputs", &check_nnf);
  m.impl("_check_patchmatch_vote_inputs", &check_vote);
}

}  // namespace nfinpaint
