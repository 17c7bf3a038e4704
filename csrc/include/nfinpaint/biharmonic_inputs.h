#pragma once
// Host-side input checks of nfinpaint::biharmonic_cg, shared by the CPU (csrc/cpu/biharmonic.cpp) and
// CUDA (csrc/cuda/biharmonic.cu) kernels, so both refuse the same inputs with the same line.
#include <ATen/ATen.h>

namespace nfinpaint::biharmonic {

constexpr const char* kOp = "nfinpaint::biharmonic_cg";

inline void check_inputs(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
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
}

}  // namespace nfinpaint::biharmonic
