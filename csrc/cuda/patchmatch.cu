// PatchMatch on CUDA: one thread per (active) target pixel running the
// per-pixel steps of nfinpaint/patchmatch.h, on the same schedule as the CPU
// loop (csrc/cpu/patchmatch.cpp), so both give the same field for a seed.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <utility>

#include "nfinpaint/patchmatch.h"

namespace nfinpaint::patchmatch {
namespace {

constexpr int kThreads = 128;

unsigned int blocks_for(int64_t n) { return static_cast<unsigned int>((n + kThreads - 1) / kThreads); }

__global__ void init_kernel(Problem p, int32_t n, const int32_t* init, const bool* active, int32_t* field,
                            float* cost) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) init_pixel(p, static_cast<int32_t>(i), init, active[i], field, cost);
}

// search_iteration >= 0: the random search of that iteration follows the
// propagation, per pixel (it touches only the pixel's own output entries).
__global__ void propagate_kernel(Problem p, const int32_t* list, int32_t n, int32_t step, int32_t search_iteration,
                                 const int32_t* field_in, const float* cost_in, int32_t* field_out, float* cost_out) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  propagate_pixel(p, list[k], step, field_in, cost_in, field_out, cost_out);
  if (search_iteration >= 0) search_pixel(p, list[k], search_iteration, field_out, cost_out);
}

__global__ void normalise_kernel(Problem p, int32_t n, const float* cost, float* dist) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dist[i] = normalised_cost(p, static_cast<int32_t>(i), cost[i]);
}

__global__ void vote_kernel(const float* image, int32_t h, int32_t w, int32_t channels, int32_t radius,
                            const int32_t* field, const float* weight, const bool* hole, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < static_cast<int64_t>(h) * w) vote_pixel(image, h, w, channels, radius, field, weight, hole,
                                                   static_cast<int32_t>(i), out);
}

std::tuple<at::Tensor, at::Tensor> nnf_cuda(const at::Tensor& target, const at::Tensor& source,
                                            const at::Tensor& source_allowed, const at::Tensor& active,
                                            const std::optional<at::Tensor>& init_field, int64_t patch_size,
                                            int64_t iterations, int64_t seed) {
  TORCH_CHECK(target.is_cuda(), "patchmatch_nnf (CUDA): target must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(target.device());
  const Prepared prep = prepare_nnf(target, source, source_allowed, active, init_field, patch_size, iterations, seed);
  const Problem p = prep.problem;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t ht = target.size(0), wt = target.size(1);
  const auto n_pixels = static_cast<int32_t>(ht * wt);
  at::Tensor field = at::empty({ht, wt, 2}, target.options().dtype(at::kInt));
  at::Tensor cost = at::empty({ht, wt}, target.options());
  const at::Tensor active_c = active.contiguous();
  const int32_t* init = prep.init.defined() ? prep.init.data_ptr<int32_t>() : nullptr;
  init_kernel<<<blocks_for(n_pixels), kThreads, 0, stream>>>(p, n_pixels, init, active_c.data_ptr<bool>(),
                                                             field.data_ptr<int32_t>(), cost.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto n_active = static_cast<int32_t>(prep.active_list.numel());
  const int32_t* list = prep.active_list.data_ptr<int32_t>();
  at::Tensor field_next = field.clone(), cost_next = cost.clone();
  for (int64_t it = 0; it < iterations && n_active > 0; ++it) {
    for (const int32_t step : jump_steps(it, prep.active_extent, !prep.init.defined())) {
      const int32_t search_iteration = step == 1 ? static_cast<int32_t>(it) : -1;
      propagate_kernel<<<blocks_for(n_active), kThreads, 0, stream>>>(
          p, list, n_active, step, search_iteration, field.data_ptr<int32_t>(), cost.data_ptr<float>(),
          field_next.data_ptr<int32_t>(), cost_next.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      std::swap(field, field_next);
      std::swap(cost, cost_next);
    }
  }
  at::Tensor dist = at::empty_like(cost);
  normalise_kernel<<<blocks_for(n_pixels), kThreads, 0, stream>>>(p, n_pixels, cost.data_ptr<float>(),
                                                                  dist.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {field, dist};
}

at::Tensor vote_cuda(const at::Tensor& image, const at::Tensor& field, const at::Tensor& weight,
                     const at::Tensor& hole, int64_t patch_size) {
  TORCH_CHECK(image.is_cuda(), "patchmatch_vote (CUDA): image must be a CUDA tensor");
  check_vote(image, field, weight, hole, patch_size);
  const c10::cuda::CUDAGuard guard(image.device());
  const at::Tensor img = image.contiguous(), f = field.contiguous(), w = weight.contiguous(), m = hole.contiguous();
  at::Tensor out = at::empty_like(img);
  const auto h = static_cast<int32_t>(img.size(0)), wd = static_cast<int32_t>(img.size(1));
  vote_kernel<<<blocks_for(static_cast<int64_t>(h) * wd), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      img.data_ptr<float>(), h, wd, static_cast<int32_t>(img.size(2)), static_cast<int32_t>(patch_size / 2),
      f.data_ptr<int32_t>(), w.data_ptr<float>(), m.data_ptr<bool>(), out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace nfinpaint::patchmatch

TORCH_LIBRARY_IMPL(nfinpaint, CUDA, m) {
  m.impl("patchmatch_nnf", &nfinpaint::patchmatch::nnf_cuda);
  m.impl("patchmatch_vote", &nfinpaint::patchmatch::vote_cuda);
}
